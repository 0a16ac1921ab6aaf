"""The command line: help on every command, usage errors on stderr with exit 2, configuration errors that
name the key, data errors that name the file and record (exit 1)."""
import glob
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SOURCE, TempDirTest, run  # noqa: E402


class Help(TempDirTest):
    def test_help_on_every_command(self):
        for args in (["--help"], ["train", "--help"], ["eval", "--help"], ["predict", "--help"], ["export", "--help"],
                     ["serve", "--help"], ["sagemaker", "--help"], ["sagemaker", "metric-definitions", "--help"],
                     ["data", "--help"],
                     ["data", "download", "--help"], ["data", "verify", "--help"], ["data", "info", "--help"]):
            r = run(args)
            self.assertOk(r)
            self.assertIn("Usage:", r.stdout, args)
        r = run(["--help"])
        for cmd in ("train", "eval", "predict", "export", "serve", "data", "sagemaker"):
            self.assertIn(cmd, r.stdout)

    def test_version(self):
        r = run(["--version"])
        self.assertOk(r)
        self.assertIn("cifar100", r.stdout)
        # The LibTorch and backends this build was configured with (CMake passes them), e.g. "LibTorch 2.15.0,
        # CUDA 13.2 with NCCL" or "LibTorch 1.13.1, CPU only".
        expect = os.environ.get("CIFAR100_EXPECT_VERSION")
        if expect:
            self.assertIn(f"({expect})", r.stdout)

    def test_help_config_lists_every_key(self):
        r = run(["train", "--help-config"])
        self.assertOk(r)
        for key in ("epochs", "batch_size", "lr", "depth", "width", "dropout", "mixup_alpha", "label_smoothing",
                    "seed", "val_size", "train_limit", "grad_clip", "early_stopping_patience", "CIFAR100_ARCHIVE",
                    "CIFAR100_DATA_DIR"):
            self.assertIn(key, r.stdout)


class UsageErrors(TempDirTest):
    def check_usage_error(self, args, *fragments):
        r = run(args)
        self.assertEqual(r.returncode, 2, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        for f in fragments:
            self.assertIn(f, r.stderr, args)
        return r

    def test_unknown_command(self):
        self.check_usage_error(["fly"], "unknown command 'fly'", "Usage:")

    def test_no_command(self):
        self.check_usage_error([], "Usage:")
        self.check_usage_error(["sagemaker"], "Usage:")

    def test_unknown_option(self):
        self.check_usage_error(["train", "--epochz", "3"], "--epochz", "Usage: cifar100 train")
        self.check_usage_error(["data", "verify", "--bogus"], "--bogus")
        self.check_usage_error(["data", "nothing"], "Usage:")

    def test_config_errors_name_the_key(self):
        self.check_usage_error(["train", "--set", "epoch=3"], "unknown config key 'epoch'", "did you mean 'epochs'")
        self.check_usage_error(["train", "--set", "depth=20"], "'depth'", "6n+4")
        self.check_usage_error(["train", "--set", "batch_size=-1"], "'batch_size'")
        self.check_usage_error(["train", "--set", "precision=fp8"], "'precision'", "auto, fp32, bf16")
        self.check_usage_error(["train", "--config", os.path.join(self.tmp, "missing.yaml")], "missing.yaml")
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("epochs: 3\nmixup: 0.2\n")
        self.check_usage_error(["train", "--config", bad], "bad.yaml", "line 2", "unknown config key 'mixup'",
                               "mixup_alpha")

    def test_environment_values_are_checked(self):
        r = run(["train", "--out", os.path.join(self.tmp, "r")], env={"CIFAR100_THREADS": "many"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("CIFAR100_THREADS", r.stderr)


class DataErrors(TempDirTest):
    def verify(self, data_dir):
        return run(["data", "verify", "--data-dir", data_dir])

    def test_missing_data_set(self):
        r = self.verify(os.path.join(self.tmp, "none"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)
        self.assertIn("cifar100 data download", r.stderr)

    def test_truncated_file(self):
        d = self.fake_data(train=100, test=20)
        with open(os.path.join(d, "test.bin"), "r+b") as f:
            f.truncate(20 * 3074 - 10)
        r = self.verify(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(d, "test.bin"), r.stderr)
        self.assertIn("record 19 is truncated", r.stderr)

    def test_label_out_of_range(self):
        d = self.fake_data(train=100, test=20)
        with open(os.path.join(d, "train.bin"), "r+b") as f:
            f.seek(3074 * 42 + 1)
            f.write(bytes([150]))
        r = self.verify(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("train.bin' record 42", r.stderr)
        self.assertIn("fine label 150 is out of range", r.stderr)

    def test_valid_but_not_official(self):
        d = self.fake_data(train=100, test=20)
        r = self.verify(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds 100 records; the official file holds 50000", r.stderr)

    def test_archive_with_wrong_checksum(self):
        archive = os.path.join(self.tmp, "a.tar.gz")
        self.fake_data(name="src", train=100, test=20, archive=archive)
        out = os.path.join(self.tmp, "extracted")
        r = run(["data", "download", "--archive", archive, "--data-dir", out, "--set",
                 "archive_md5=0123456789abcdef0123456789abcdef"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("archive_md5 expects 0123456789abcdef0123456789abcdef", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = run(["data", "download", "--data-dir", out, "--url", "file://" + archive])
        self.assertEqual(r.returncode, 1)
        self.assertIn("bytes, expected 168513733", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = run(["data", "download", "--archive", archive, "--data-dir", out])
        self.assertOk(r)
        self.assertIn("not the official", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(out, "train.bin")))


class Presets(TempDirTest):
    """Every shipped config file loads, and its augmentation pipeline runs (through `data preview`)."""

    def test_configs_load_and_preview(self):
        data = self.fake_data(train=200, test=50)
        configs = sorted(glob.glob(os.path.join(SOURCE, "configs", "*.yaml")))
        self.assertGreaterEqual(len(configs), 2)
        for cfg in configs:
            out = os.path.join(self.tmp, os.path.basename(cfg) + ".png")
            r = run(["data", "preview", "--config", cfg, "--data-dir", data, "--count", "6", "--columns", "3",
                     "--set", "val_size=100", "--out", out])
            self.assertOk(r)
            with open(out, "rb") as f:
                head = f.read(24)
            self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n", cfg)
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            self.assertEqual((width, height), (3 * 100 + 4, 2 * 110 + 4), cfg)  # 3x2 cells of 96+4 by 96+10+4

    def test_presets_by_name(self):
        """--config takes a preset's name (found beside the binary, as in the image's /opt/cifar100/configs)."""
        data = self.fake_data(train=200, test=50)
        for name in ("quick-cpu", "wrn28-10.yaml"):
            r = run(["data", "preview", "--config", name, "--data-dir", data, "--count", "2", "--set", "val_size=100",
                     "--out", os.path.join(self.tmp, name + ".png")])
            self.assertOk(r)
        r = run(["train", "--config", "quick-gpu"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("config 'quick-gpu' is neither a file nor a preset (presets: ", r.stderr)
        self.assertIn("quick-cpu", r.stderr)

    def test_bad_pipelines_fail_at_start_naming_the_key(self):
        for spec, fragment in (("random_crop; hflop", "unknown transform 'hflop'"),
                               ("rotate(angle=3)", "has no parameter 'angle'"),
                               ("cutout(size=99)", "'size' = 99 must be an integer in [1, 32]")):
            r = run(["train", "--set", "augment=" + spec, "--out", os.path.join(self.tmp, "x")])
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("config key 'augment'", r.stderr)
            self.assertIn(fragment, r.stderr)
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("augment:\n  - random_crop: {padding: 4}\n  - trivial_augment_wide: {bins: 1}\n")
        r = run(["train", "--config", bad, "--out", os.path.join(self.tmp, "y")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("transform 'trivial_augment_wide': parameter 'bins' = 1", r.stderr)


class Docs(TempDirTest):
    """The reference in docs/ documents every config key and every option of every command (help and docs agree)."""

    @staticmethod
    def doc(name):
        with open(os.path.join(SOURCE, "docs", name)) as f:
            return f.read()

    def test_docs_list_every_key_and_option(self):
        configuration, commands = self.doc("CONFIGURATION.md"), self.doc("COMMANDS.md")
        r = run(["train", "--help-config"])
        keys = re.findall(r"^  (\w+)\s+default", r.stdout, re.M)
        self.assertGreater(len(keys), 30)
        for k in keys:
            self.assertTrue(f"`{k}`" in configuration, f"config key {k} is not in docs/CONFIGURATION.md")
        for cmd in (["train"], ["eval"], ["predict"], ["export"], ["serve"], ["data", "download"], ["data", "verify"],
                    ["data", "info"], ["data", "preview"], ["data", "upload"], ["sagemaker", "metric-definitions"],
                    ["report"], ["push"], ["pull"]):
            r = run(cmd + ["--help"])
            for opt in re.findall(r"(--[a-z][a-z-]+)", r.stdout):
                if opt != "--help":
                    self.assertTrue(opt in commands, f"{' '.join(cmd)} {opt} is not in docs/COMMANDS.md")

    def test_docs_metric_definitions_are_the_programs(self):
        block = re.search(r"SageMaker `MetricDefinitions`.*?```json\n(.*?)```", self.doc("SAGEMAKER.md"), re.S)
        self.assertIsNotNone(block, "docs/SAGEMAKER.md has no MetricDefinitions block")
        r = run(["sagemaker", "metric-definitions", "--compact"])
        self.assertOk(r)
        self.assertEqual(json.loads(block.group(1)), json.loads(r.stdout))


class Terminal(TempDirTest):
    """On a terminal, training shows a redrawn progress bar with throughput and ETA."""

    def test_progress_bar_on_a_tty(self):
        import pty
        data = self.fake_data(train=600, test=100)
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(BIN, [BIN, "train", "--data-dir", data, "--out", os.path.join(self.tmp, "tty"),
                           "--set", "depth=10", "--set", "width=1", "--set", "epochs=1", "--set", "batch_size=32",
                           "--set", "val_size=100", "--set", "warmup_epochs=0"])
        out = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        text = out.decode(errors="replace")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text[-2000:])
        self.assertIn("\r\x1b[2Kepoch 1/1 [", text)
        self.assertIn("img/s ETA", text)
        self.assertNotIn("progress: epoch", text)
        self.assertIn("epoch=1;", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
