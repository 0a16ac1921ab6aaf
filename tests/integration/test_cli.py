"""The command line: help on every command, usage errors on stderr with exit 2, configuration errors that
name the key, data errors that name the file and record (exit 1)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import TempDirTest, run  # noqa: E402


class Help(TempDirTest):
    def test_help_on_every_command(self):
        for args in (["--help"], ["train", "--help"], ["eval", "--help"], ["data", "--help"],
                     ["data", "download", "--help"], ["data", "verify", "--help"], ["data", "info", "--help"]):
            r = run(args)
            self.assertOk(r)
            self.assertIn("Usage:", r.stdout, args)
        r = run(["--help"])
        for cmd in ("train", "eval", "data"):
            self.assertIn(cmd, r.stdout)

    def test_version(self):
        r = run(["--version"])
        self.assertOk(r)
        self.assertIn("cifar100", r.stdout)

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
