"""docker/Dockerfile.cuda cannot be built on the CI machines (no CUDA base image, no CUDA LibTorch), so it
must stay the same file as docker/Dockerfile, which CI builds and runs: the same stages, the same steps in
the same order, the same runtime layout, entrypoint and labels. Only the lines that pick the base images
and the LibTorch may differ, and this test lists them."""
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


class Dockerfiles(unittest.TestCase):
    def setUp(self):
        self.cpu = instructions(os.path.join(SOURCE, "docker", "Dockerfile"))
        self.cuda = instructions(os.path.join(SOURCE, "docker", "Dockerfile.cuda"))

    def test_same_stages_and_layout(self):
        def runtime(ins):
            stage = [i for i, (k, _) in enumerate(ins) if k == "FROM"][-1]
            return [(k, t) for k, t in ins[stage + 1:]]
        cpu_rt, cuda_rt = runtime(self.cpu), runtime(self.cuda)
        # The CUDA runtime stage adds exactly the LibTorch copy and its library path.
        extra = [x for x in cuda_rt if x not in cpu_rt]
        self.assertEqual(extra, [("COPY", "--from=build /opt/libtorch/lib /opt/libtorch/lib"),
                                 ("ENV", "LD_LIBRARY_PATH=/opt/libtorch/lib")])
        self.assertEqual([x for x in cpu_rt if x not in cuda_rt], [])
        self.assertEqual([x for x in cuda_rt if x in cpu_rt], cpu_rt)  # same order
        for key in ("ENTRYPOINT", "CMD", "LABEL", "EXPOSE"):
            self.assertEqual([t for k, t in self.cpu if k == key], [t for k, t in self.cuda if k == key], key)

    def test_build_stage_differs_only_in_torch(self):
        def build(ins):
            stages = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
            return ins[stages[0]:stages[1]]
        cpu_b, cuda_b = build(self.cpu), build(self.cuda)
        self.assertEqual([k for k, _ in cpu_b], [k for k, _ in cuda_b])
        differ = [(a, b) for a, b in zip(cpu_b, cuda_b) if a != b]
        # Which ARG names the torch, how setup-debian.sh gets it, and -DTorch_DIR.
        self.assertEqual([a[0] for a, _ in differ], ["ARG", "RUN", "RUN"])
        self.assertIn("--external-torch", differ[1][1][1])
        self.assertIn("-DTorch_DIR=/opt/libtorch/share/cmake/Torch", differ[2][1][1])
        self.assertEqual(differ[2][1][1].replace(" -DTorch_DIR=/opt/libtorch/share/cmake/Torch", ""), differ[2][0][1])
        # Both build with the project's own scripts.
        for ins in (cpu_b, cuda_b):
            runs = " ".join(t for k, t in ins if k == "RUN")
            self.assertIn("./scripts/setup-debian.sh build", runs)
            self.assertIn("./scripts/build.sh", runs)
            self.assertIn("./docker/runtime-packages.sh build/cifar100", runs)

    def test_entrypoint_is_exec_form_outside_opt_ml(self):
        for ins in (self.cpu, self.cuda):
            ep = [t for k, t in ins if k == "ENTRYPOINT"]
            self.assertEqual(ep, ['["/usr/local/bin/cifar100"]'])
            copies = " ".join(t for k, t in ins if k == "COPY")
            self.assertNotIn("/opt/ml", copies)
            self.assertIn("com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true",
                          [t for k, t in ins if k == "LABEL"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
