"""docker/Dockerfile (CPU, Debian's LibTorch 1.13) and docker/Dockerfile.cuda (LibTorch 2.x and CUDA from the
pinned PyPI wheels) must stay the same file: the same base, stages, steps in the same order, runtime layout,
entrypoint and labels. Only the steps that choose and carry the LibTorch may differ, and this test lists them.
Both images are built and run in CI (container.image and container.cuda)."""
import os
import re
import sys
import unittest

SOURCE = os.environ.get("SOURCE_DIR", ".")


def instructions(path):
    """(keyword, text) of every instruction, continuation lines joined, comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        line = line.rstrip("\n")
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            kw, _, rest = cur.strip().partition(" ")
            out.append((kw.upper(), re.sub(r"\s+", " ", rest)))
            cur = ""
    return out


def stages(ins):
    starts = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
    return ins[:starts[0]], ins[starts[0]:starts[1]], ins[starts[1]:]


class Dockerfiles(unittest.TestCase):
    def setUp(self):
        self.cpu = instructions(os.path.join(SOURCE, "docker", "Dockerfile"))
        self.cuda = instructions(os.path.join(SOURCE, "docker", "Dockerfile.cuda"))

    def test_same_base_and_two_stages(self):
        for ins in (self.cpu, self.cuda):
            self.assertEqual([t for k, t in ins if k == "FROM"], ["${BASE} AS build", "${BASE}"])
        self.assertEqual(stages(self.cpu)[0], [("ARG", "BASE=debian:bookworm-slim")])
        self.assertEqual(stages(self.cuda)[0], stages(self.cpu)[0])

    def test_runtime_stage_adds_only_the_wheel_libraries(self):
        cpu_rt, cuda_rt = stages(self.cpu)[2], stages(self.cuda)[2]
        binaries_cpu = "--from=build /src/build-debian/cifar100 /src/build-debian/cifar100-engine /usr/local/bin/"
        binaries_cuda = "--from=build /src/build-cuda/cifar100 /src/build-cuda/cifar100-engine /usr/local/bin/"
        self.assertIn(("COPY", binaries_cpu), cpu_rt)
        cuda_as_cpu = [("COPY", binaries_cpu) if x == ("COPY", binaries_cuda) else x for x in cuda_rt]
        extra = [x for x in cuda_as_cpu if x not in cpu_rt]
        self.assertEqual(extra, [("COPY", "--from=build /opt/cifar100/python /opt/cifar100/python"),
                                 ("ENV", "NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility")])
        self.assertEqual([x for x in cpu_rt if x not in cuda_as_cpu], [])
        self.assertEqual([x for x in cuda_as_cpu if x in cpu_rt], cpu_rt)  # same order
        for key in ("ENTRYPOINT", "CMD", "LABEL", "EXPOSE"):
            self.assertEqual([t for k, t in self.cpu if k == key], [t for k, t in self.cuda if k == key], key)
        # No library path for the whole image: the binary's run path names the wheels' libraries.
        self.assertFalse([t for k, t in self.cuda if k == "ENV" and "LD_LIBRARY_PATH" in t])

    def test_build_stage_differs_only_in_the_libtorch(self):
        cpu_b, cuda_b = stages(self.cpu)[1], stages(self.cuda)[1]
        # The CPU image pins Debian's LibTorch; the CUDA image installs the wheels' instead.
        self.assertEqual([x for x in cpu_b if x not in cuda_b],
                         [("ARG", "TORCH_PIN=libtorch-dev=1.13.1+dfsg-4"),
                          ("RUN", "./scripts/setup-debian.sh build ${TORCH_PIN} && apt-get clean && "
                                  "rm -rf /var/lib/apt/lists/*"),
                          ("RUN", cpu_b[-1][1])])
        added = [x for x in cuda_b if x not in cpu_b]
        self.assertEqual(added[:5], [
            ("RUN", "./scripts/setup-debian.sh build --external-torch && apt-get clean && rm -rf /var/lib/apt/lists/*"),
            ("COPY", "scripts/setup-python.sh scripts/"),
            ("COPY", "tools/python/ tools/python/"),
            ("ARG", "PIP_CERT"),
            ("RUN", "./scripts/setup-python.sh --build-only && rm -rf /root/.cache/pip")])
        self.assertEqual(len(added), 6)
        # The same final step: the project's build script, then the Debian packages the binary links.
        cpu_build, cuda_build = cpu_b[-1][1], cuda_b[-1][1]
        self.assertIn("./scripts/build.sh --torch debian -DCIFAR100_BUILD_TESTS=OFF -DCIFAR100_BUILD_BENCH=OFF",
                      cpu_build)
        self.assertIn("./scripts/build.sh --torch venv -DCIFAR100_BUILD_TESTS=OFF -DCIFAR100_BUILD_BENCH=OFF",
                      cuda_build)
        self.assertIn("./docker/runtime-packages.sh build-debian/cifar100-engine > /runtime-packages.txt", cpu_build)
        self.assertIn("./docker/runtime-packages.sh build-cuda/cifar100-engine > /runtime-packages.txt", cuda_build)
        # The CUDA binary's run path is where the runtime stage puts the wheels' libraries, which it copies there.
        self.assertIn("-DCMAKE_INSTALL_RPATH=/opt/cifar100/python/torch/lib;/opt/cifar100/python/nvidia/cu13/lib",
                      cuda_build)
        self.assertIn("./docker/wheel-libs.sh build-cuda/cifar100-engine .venv/lib/python3.11/site-packages "
                      "/opt/cifar100/python", cuda_build)
        common = [x for x in cpu_b if x in cuda_b]
        self.assertEqual(common, [x for x in cuda_b if x in cpu_b])  # same order
        self.assertIn(("COPY", ". ."), common)

    def test_entrypoint_is_exec_form_outside_opt_ml(self):
        for ins in (self.cpu, self.cuda):
            ep = [t for k, t in ins if k == "ENTRYPOINT"]
            self.assertEqual(ep, ['["/usr/local/bin/cifar100"]'])
            copies = " ".join(t for k, t in ins if k == "COPY")
            self.assertNotIn("/opt/ml", copies)
            self.assertIn("com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true",
                          [t for k, t in ins if k == "LABEL"])

    def test_nothing_downloaded_from_outside_the_package_registries(self):
        # Debian's apt and PyPI (through the pinned scripts) only: no curl, wget, ADD of a URL or CUDA base image.
        for name, ins in (("Dockerfile", self.cpu), ("Dockerfile.cuda", self.cuda)):
            text = " ".join(t for _, t in ins)
            for word in ("curl ", "wget ", "http://", "https://", "nvidia/cuda"):
                self.assertNotIn(word, text, name)
            self.assertFalse([t for k, t in ins if k == "ADD"], name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
