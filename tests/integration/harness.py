"""Shared helpers for the integration tests: run the cifar100 binary, make synthetic data sets."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("CIFAR100_BIN", "build/cifar100")
FAKE = os.environ.get("MAKE_FAKE_CIFAR", "build/tests/make_fake_cifar")
SOURCE = os.environ.get("SOURCE_DIR", ".")


def run(args, env=None, timeout=900):
    # The variables that would change what a test asks for are dropped; CIFAR100_AUTO_PRECISION is kept on
    # purpose: CI runs the tests labelled `precision` under both CIFAR100_AUTO_PRECISION=fp32 and =bf16.
    e = dict(os.environ)
    for k in ("CIFAR100_ARCHIVE", "CIFAR100_DATA_DIR", "CIFAR100_DEVICE", "CIFAR100_THREADS", "CIFAR100_PRECISION"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([BIN] + args, env=e, capture_output=True, text=True, timeout=timeout)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path):
    with open(path) as f:
        return json.load(f)


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cifar100-it-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fake_data(self, name="data", train=2000, test=500, classes=10, archive=None):
        d = os.path.join(self.tmp, name)
        cmd = [FAKE, d, "--train", str(train), "--test", str(test), "--classes", str(classes)]
        if archive:
            cmd += ["--archive", archive]
        subprocess.run(cmd, check=True)
        return d

    def assertOk(self, r):
        self.assertEqual(r.returncode, 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
