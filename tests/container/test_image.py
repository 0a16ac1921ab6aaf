"""The SageMaker images for real: docker/Dockerfile (or, with CIFAR100_IMAGE=cuda, docker/Dockerfile.cuda) built
with podman (scripts/image.sh) and run the way SageMaker runs it, on a fake /opt/ml holding a few thousand real
CIFAR-100 images. The CPU image gets every check below; the CUDA image, on this machine without a GPU, the
training job (device=cpu), serve until /ping answers, its contents and its libraries (every one resolved inside
the image, the binary built with CUDA and NCCL).
  - train: string hyperparameters, `train`/`test` channels (test read-only, as FastFile mounts are), the
    artifact in /opt/ml/model (its own mount, as on SageMaker), results in output/data, and every
    MetricDefinitions regex matching the job's log lines;
  - spot interruption: `podman stop` (SIGTERM) mid-epoch exits 0 with a checkpoint; the same container run
    again resumes and ends with the uninterrupted run's metrics and weights, byte for byte;
  - failures: an unknown hyperparameter, a value out of range, a missing channel and a corrupt channel file
    each exit non-zero with output/failure naming the problem;
  - serve: /ping, a PNG /invocations (same answer as the host's `predict`), /execution-parameters, and
    `podman stop` ending the server within 30 s; WRN-28-10's time to a healthy /ping is measured;
  - the runtime image holds no compiler, no -dev package and no Python.
Needs podman (scripts/setup-debian.sh installs it) and the real archive (CIFAR100_ARCHIVE); exits 77 (skipped)
without them unless CIFAR100_REQUIRE_REAL=1."""
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import BIN, SOURCE, read_json, read_jsonl  # noqa: E402

FLAVOUR = os.environ.get("CIFAR100_IMAGE", "cpu")
IMAGE = f"localhost/cifar100:test-{FLAVOUR}"
# The checks the CUDA image gets here (no GPU: the job runs with device=cpu, as `train --device cpu`).
CUDA_TESTS = ["test_1_train", "test_3_serve", "test_5_runtime_image_contents", "test_6_libraries"]
DUMP = os.environ.get("ARTIFACT_DUMP", "build/tests/artifact_dump")
RECORD = 3074
HPS = {"depth": "16", "width": "2", "epochs": "3", "batch_size": "64", "lr_reference_batch": "64",
       "warmup_epochs": "0.5", "val_size": "500", "dropout": "0", "mixup_alpha": "0", "augment": "standard",
       "log_interval": "5", "threads": "2", "sagemaker_submit_directory": "s3://bucket/x"}
if FLAVOUR == "cuda":
    HPS["device"] = "cpu"
TIMING = {"epoch_seconds", "train_seconds", "images_per_second"}


def podman(*args, check=True, timeout=600, **kw):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


class Image(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cifar100-image-")
        if not os.environ.get("CONTAINERS_CONF"):
            # podman's defaults fail on these machines (rlimits, cgroups): see ../shared/CONTAINERS.md.
            conf = os.path.join(cls.tmp, "containers.conf")
            with open(conf, "w") as f:
                f.write('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n')
            os.environ["CONTAINERS_CONF"] = conf
        t0 = time.time()
        flavour = ["--cuda"] if FLAVOUR == "cuda" else []
        # The compiler cache of this checkout's builds (scripts/build.sh): the image compiles the same sources
        # with the same compiler, so its build stage takes the objects from there.
        cache = os.environ.get("CCACHE_DIR") or os.path.join(SOURCE, ".ccache")
        flavour += ["--ccache", cache] if os.path.isdir(cache) else []
        r = subprocess.run([os.path.join(SOURCE, "scripts", "image.sh"), *flavour, "--local-base", "--tag", IMAGE],
                           env=dict(os.environ, ENGINE="podman"), capture_output=True, text=True, timeout=3000)
        if r.returncode != 0:
            raise AssertionError(f"image build failed:\n{r.stdout[-5000:]}\n{r.stderr[-5000:]}")
        cls.build_seconds = time.time() - t0
        cls.size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout) / 1e6
        print(f"image {IMAGE}: built in {cls.build_seconds:.0f} s, {cls.size_mb:.0f} MB", flush=True)
        cls.data = os.path.join(cls.tmp, "real")
        cls.real_subset(cls.data, n_train=3000, n_test=1000)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def real_subset(out, n_train, n_test):
        """The first records of the real train.bin and test.bin, with the real label-name files."""
        os.makedirs(out)
        with tarfile.open(os.environ["CIFAR100_ARCHIVE"], "r:gz") as tar:
            for m in tar.getmembers():
                name = os.path.basename(m.name)
                limit = {"train.bin": n_train, "test.bin": n_test}.get(name)
                if limit is None and not name.endswith("_label_names.txt"):
                    continue
                data = tar.extractfile(m).read(limit * RECORD if limit else -1)
                with open(os.path.join(out, name), "wb") as f:
                    f.write(data)

    # ---- a fake /opt/ml and one job in the image ----------------------------------------------------------
    def layout(self, name, hps=HPS, channels=("train", "test")):
        base = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(base, "input", "config"))
        os.makedirs(os.path.join(base, "model"))
        os.makedirs(os.path.join(base, "checkpoints"))
        with open(os.path.join(base, "input", "config", "hyperparameters.json"), "w") as f:
            json.dump(hps, f)
        idc = {c: {"TrainingInputMode": "FastFile" if c == "test" else "File", "S3DistributionType": "FullyReplicated",
                   "RecordWrapperType": "None"} for c in ("train", "test")}
        with open(os.path.join(base, "input", "config", "inputdataconfig.json"), "w") as f:
            json.dump(idc, f)
        with open(os.path.join(base, "input", "config", "resourceconfig.json"), "w") as f:
            json.dump({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}, f)
        for ch, files in (("train", ["train.bin", "fine_label_names.txt", "coarse_label_names.txt"]),
                          ("test", ["test.bin"])):
            if ch in channels:
                os.makedirs(os.path.join(base, "input", "data", ch))
                for f in files:
                    shutil.copy(os.path.join(self.data, f), os.path.join(base, "input", "data", ch, f))
        return base

    def run_args(self, base, name=None, detach=False):
        args = ["run", "--network", "none", "-e", "TRAINING_JOB_NAME=cifar100-image-test",
                "-v", f"{base}:/opt/ml", "-v", f"{base}/model:/opt/ml/model"]
        if os.path.isdir(os.path.join(base, "input", "data", "test")):
            args += ["-v", f"{base}/input/data/test:/opt/ml/input/data/test:ro"]
        args += ["--name", name] if name else ["--rm"]
        if detach:
            args.append("-d")
        return args + [IMAGE, "train"]

    def train(self, base):
        return podman(*self.run_args(base), check=False, timeout=1200)

    def assertJob(self, r):
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-4000:])

    # ---- tests ----------------------------------------------------------------------------------------------
    def test_1_train(self):
        plain = self.layout("plain")
        r = self.train(plain)
        self.assertJob(r)
        log = r.stdout
        self.assertIn("SageMaker training layout found at /opt/ml: job cifar100-image-test", log)
        self.assertIn("ignoring platform hyperparameters: sagemaker_submit_directory", log)
        self.assertEqual(sorted(os.listdir(os.path.join(plain, "model"))), ["config.json", "model.pt", "model.safetensors"])
        out = os.path.join(plain, "output", "data")
        self.assertEqual(sorted(os.listdir(out)),
                         ["config.yaml", "metrics.jsonl", "report", "report.html", "results.json", "tensorboard"])
        self.assertEqual(sorted(os.listdir(os.path.join(out, "report"))),
                         ["augmented_samples.png", "confusion.csv", "confusion.png", "gallery.json", "metrics.json",
                          "per_class.csv"])
        self.assertTrue(os.listdir(os.path.join(out, "tensorboard"))[0].startswith("events.out.tfevents."))
        results = read_json(os.path.join(out, "results.json"))
        self.assertEqual(results["test_images"], 1000)
        self.assertEqual(results["sagemaker"]["job_name"], "cifar100-image-test")
        self.assertGreater(results["test_top1"], 0.02)  # 100 classes, 2,500 real training images, 3 epochs
        self.assertFalse(os.path.exists(os.path.join(plain, "output", "failure")))
        # The metric definitions the image prints read this job's log.
        defs = json.loads(podman("run", "--rm", IMAGE, "sagemaker", "metric-definitions").stdout)
        for d in defs:
            values = re.findall(d["Regex"], log)
            self.assertTrue(values, f"{d['Name']}: {d['Regex']} matches no line of the job's log")
            [float(v) for v in values]
        self.assertEqual(len(re.findall(next(d["Regex"] for d in defs if d["Name"] == "val_top1"), log)), 3)
        self.assertEqual(results["hardware"]["device"], "cpu")
        type(self).plain = plain
        type(self).plain_results = results

    def test_2_spot_interruption_then_resume(self):
        plain, results = getattr(type(self), "plain", None), getattr(type(self), "plain_results", None)
        if plain is None:
            self.fail("test_1_train did not finish its job: nothing to compare the resumed job with")
        # Spot interruption: SIGTERM in the middle of epoch 2, then the same job again.
        spot = self.layout("spot")
        name = "cifar100-spot-test"
        podman("rm", "-f", name, check=False)
        podman(*self.run_args(spot, name=name, detach=True))
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                logs = podman("logs", name).stdout
                if "progress: epoch 2/3 step 10/" in logs:
                    break
                time.sleep(0.2)
            else:
                self.fail("the job never reached epoch 2:\n" + podman("logs", name).stdout[-3000:])
            t0 = time.time()
            podman("stop", "-t", "110", name)
            stop_seconds = time.time() - t0
            code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)
            logs = podman("logs", name).stdout
        finally:
            podman("rm", "-f", name, check=False)
        self.assertEqual(code, 0, logs[-3000:])
        self.assertLess(stop_seconds, 110)
        self.assertRegex(logs, r"stopped by SIGTERM at epoch 2, batch \d+/\d+")
        self.assertTrue([n for n in os.listdir(os.path.join(spot, "checkpoints")) if n.startswith("ckpt-")])
        self.assertFalse(os.path.exists(os.path.join(spot, "model", "config.json")))
        print(f"spot stop: exit 0 after {stop_seconds:.1f} s", flush=True)
        r = self.train(spot)
        self.assertJob(r)
        self.assertIn("resuming from checkpoint /opt/ml/checkpoints/ckpt-", r.stdout)
        # Identical to the uninterrupted job: every metric but the timings, the test results, the weights.
        strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]  # noqa: E731
        read = lambda b: read_jsonl(os.path.join(b, "output", "data", "metrics.jsonl"))  # noqa: E731
        self.assertEqual(strip(read(spot)), strip(read(plain)))
        res = read_json(os.path.join(spot, "output", "data", "results.json"))
        for k in ("test_top1", "test_top5", "test_loss", "best_epoch", "best_val_top1"):
            self.assertEqual(res[k], results[k], k)
        self.assertTrue(res["resumed"])
        self.assertEqual(sha256(os.path.join(spot, "model", "model.safetensors")),
                         sha256(os.path.join(plain, "model", "model.safetensors")))

    def test_2b_failures_name_the_problem(self):
        cases = [
            ("unknown", dict(HPS, learning_rate="0.1"), ("train", "test"), "unknown config key 'learning_rate'"),
            ("range", dict(HPS, epochs="0"), ("train", "test"), "invalid value '0' for 'epochs': must be at least 1"),
            ("missing", HPS, ("train",), "channel 'test' is declared"),
            ("corrupt", HPS, ("train", "test"), "/opt/ml/input/data/train/train.bin' is 3001000 bytes"),
        ]
        for name, hps, channels, needle in cases:
            with self.subTest(name):
                base = self.layout("fail-" + name, hps=hps, channels=channels)
                if name == "corrupt":
                    with open(os.path.join(base, "input", "data", "train", "train.bin"), "r+b") as f:
                        f.truncate(3001000)
                r = self.train(base)
                self.assertNotEqual(r.returncode, 0)
                with open(os.path.join(base, "output", "failure")) as f:
                    reason = f.read()
                self.assertIn(needle, reason)
                self.assertLessEqual(len(reason.encode()), 1024)

    def test_3_serve(self):
        model = os.path.join(getattr(type(self), "plain", ""), "model")
        if not os.path.exists(os.path.join(model, "config.json")):
            model = os.path.join(self.tmp, "dumped")
            subprocess.run([DUMP, "model", "16", "2", model], check=True, capture_output=True)
            model = os.path.join(model, "model")
        name = "cifar100-serve-test"
        # Both sides in float32: the image and the host binary may be built against different LibTorch versions
        # (the CPU image has Debian's 1.13, the host binary either), whose bf16 kernels round differently, and
        # precision=auto picks bf16 on CPUs with native bf16. This compares the two programs, not bf16 kernels.
        port = self.start_endpoint(name, model, env={"CIFAR100_PRECISION": "fp32"})
        try:
            t_ready = self.wait_ping(port, name)
            # A real test image as PNG; the container answers what the host's `predict` says.
            png = self.png_of(0)
            st, body = http_get(port, "/invocations", png, {"Content-Type": "image/png"})
            self.assertEqual(st, 200, body)
            got = json.loads(body)["predictions"][0]["top_k"]
            self.assertEqual(len(got), 5)
            path = os.path.join(self.tmp, "img.png")
            with open(path, "wb") as f:
                f.write(png)
            host = subprocess.run([BIN, "predict", "--model", model, "--json", "--precision", "fp32", path],
                                  capture_output=True, text=True)
            self.assertEqual(host.returncode, 0, host.stderr)
            want = json.loads(host.stdout)["predictions"][0]["top_k"]
            self.assertEqual([c["class"] for c in got], [c["class"] for c in want])
            self.assertEqual([c["name"] for c in got], [c["name"] for c in want])
            for a, b in zip(got, want):  # float32 in another LibTorch: rounding far below 5e-5
                self.assertAlmostEqual(a["probability"], b["probability"], places=4)
            st, body = http_get(port, "/execution-parameters")
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body)["BatchStrategy"], "MULTI_RECORD")
            self.assertEqual(json.loads(body)["MaxPayloadInMB"], 6)
            t0 = time.time()
            podman("stop", "-t", "30", name)
            stop_seconds = time.time() - t0
            code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)
            logs = podman("logs", name).stdout
        finally:
            podman("rm", "-f", name, check=False)
        self.assertEqual(code, 0)
        self.assertLess(stop_seconds, 30)
        self.assertIn("on cpu, fp32,", logs, "serve in the image did not take CIFAR100_PRECISION=fp32")
        print(f"serve in the image: healthy {t_ready:.2f} s after start, stopped in {stop_seconds:.2f} s", flush=True)

    def test_4_wrn28_10_health_time(self):
        d = os.path.join(self.tmp, "wrn28")
        subprocess.run([DUMP, "model", "28", "10", d], check=True, capture_output=True)
        name = "cifar100-wrn28-test"
        port = self.start_endpoint(name, os.path.join(d, "model"))
        try:
            t_ready = self.wait_ping(port, name)
            logs = podman("logs", name).stdout
        finally:
            podman("rm", "-f", name, check=False)
        # SageMaker's default health-check limit is 4 minutes; a CPU instance is no slower than these 2 cores.
        self.assertLess(t_ready, 240, logs)
        print(f"WRN-28-10 in the image: /ping 200 after {t_ready:.2f} s "
              f"({re.search(r'model loaded and warmed up in [0-9.]+ s', logs).group(0)})", flush=True)

    def test_5_runtime_image_contents(self):
        r = podman("run", "--rm", "--entrypoint", "/bin/sh", IMAGE, "-c",
                   "ls /usr/bin | grep -E '^(gcc|g\\+\\+|cc|c\\+\\+|python3?|cmake|ninja)(-[0-9.]+)?$'; "
                   "dpkg-query -W -f '${Package}\\n' | grep -E -- '-dev$|^python3'", check=False)
        self.assertEqual(r.stdout.split(), [], "the runtime image holds build tools, -dev packages or Python")
        r = podman("run", "--rm", "--entrypoint", "/bin/ls", IMAGE, "/usr/local/bin/cifar100", "/opt/cifar100/configs")
        presets = sorted(f for f in os.listdir(os.path.join(SOURCE, "configs")) if f.endswith(".yaml"))
        self.assertEqual(r.stdout.split(), ["/usr/local/bin/cifar100", "/opt/cifar100/configs:"] + presets)
        inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
        cfg = inspect.get("Config", {})
        self.assertEqual(cfg.get("Entrypoint"), ["/usr/local/bin/cifar100"])
        self.assertEqual(cfg.get("Labels", {}).get("com.amazonaws.sagemaker.capabilities.accept-bind-to-port"), "true")
        # The entrypoint takes SageMaker's single argument; with none it prints the usage.
        r = podman("run", "--rm", IMAGE, check=False)
        self.assertEqual(r.returncode, 0)
        self.assertIn("train", r.stdout)
        print(f"image size {self.size_mb:.0f} MB", flush=True)

    def test_6_libraries(self):
        # Every shared library the binary needs resolves inside the image (a missing CUDA library would only
        # show on a GPU host otherwise), and the binary says what it was built with.
        r = podman("run", "--rm", "--entrypoint", "/usr/bin/ldd", IMAGE, "/usr/local/bin/cifar100-engine")
        self.assertNotIn("not found", r.stdout)
        libs = r.stdout
        r = podman("run", "--rm", IMAGE, "--version")
        if FLAVOUR == "cuda":
            for lib in ("libtorch_cuda.so", "libc10_cuda.so", "libcudart.so.13"):
                self.assertIn(f"/opt/cifar100/python/", libs.split(lib, 1)[1].split("\n", 1)[0], lib)
            self.assertRegex(r.stdout, r"\(LibTorch 2\.[0-9.]+, CUDA 13\.[0-9]+ with NCCL\)")
            # The libraries loaded only on a GPU (cuDNN's engines, NVRTC's builtins) are in the image too.
            r = podman("run", "--rm", "--entrypoint", "/bin/sh", IMAGE, "-c",
                       "ls /opt/cifar100/python/nvidia/cudnn/lib /opt/cifar100/python/nvidia/cu13/lib")
            for name in ("libcudnn_engines_precompiled.so.9", "libcudnn_cnn.so.9", "libnvrtc-builtins.so.13"):
                self.assertTrue([f for f in r.stdout.split() if f.startswith(name)], name)
        else:
            self.assertRegex(r.stdout, r"\(LibTorch 1\.13\.[0-9]+, CPU only\)")

    # ---- helpers --------------------------------------------------------------------------------------------
    def start_endpoint(self, name, model, env=None):
        """`serve` as SageMaker starts it: the model read-only at /opt/ml/model, the port from the variable (and
        `env`, as a model's Environment would set it)."""
        port = free_port()
        podman("rm", "-f", name, check=False)
        extra = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        podman("run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}", *extra,
               "-v", f"{model}:/opt/ml/model:ro", IMAGE, "serve")
        return port

    def wait_ping(self, port, name, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                if http_get(port, "/ping", timeout=2)[0] == 200:
                    return time.time() - t0
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("no healthy /ping:\n" + podman("logs", name, check=False).stdout[-3000:])

    def png_of(self, index):
        from PIL import Image as PILImage
        import numpy as np
        with open(os.path.join(self.data, "test.bin"), "rb") as f:
            f.seek(index * RECORD + 2)
            chw = np.frombuffer(f.read(3072), np.uint8).reshape(3, 32, 32)
        b = io.BytesIO()
        PILImage.fromarray(chw.transpose(1, 2, 0)).save(b, "PNG")
        return b.getvalue()


def main():
    archive = os.environ.get("CIFAR100_ARCHIVE", "")
    missing = [] if archive and os.path.exists(archive) else [f"no archive (CIFAR100_ARCHIVE={archive!r})"]
    if shutil.which("podman") is None:
        missing.append("no podman")
    if missing:
        msg = "container test: " + ", ".join(missing)
        if os.environ.get("CIFAR100_REQUIRE_REAL") == "1":
            print(msg + " but CIFAR100_REQUIRE_REAL=1: failing")
            return 1
        print(msg + ": skipped")
        return 77
    if FLAVOUR not in ("cpu", "cuda"):
        print(f"CIFAR100_IMAGE={FLAVOUR!r}: expected cpu or cuda")
        return 2
    names = CUDA_TESTS if FLAVOUR == "cuda" else None
    suite = (unittest.TestSuite(Image(n) for n in names) if names
             else unittest.defaultTestLoader.loadTestsFromTestCase(Image))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
