"""Checkpoints and resume through the binary: a run stopped by SIGTERM (mid-epoch) or killed with SIGKILL
at random moments, then resumed with the same command, ends with weights and metrics identical to an
uninterrupted run; SIGTERM writes a checkpoint and exits 0 quickly; corrupt or missing checkpoint files
fall back to the previous checkpoint; a changed model/data configuration is refused."""
import filecmp
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json, read_jsonl, run  # noqa: E402

SETTINGS = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr_reference_batch=64",
            "--set", "warmup_epochs=0.5", "--set", "val_size=200", "--set", "eval_batch_size=100",
            "--set", "epochs=3", "--set", "mixup_alpha=0.2", "--set", "dropout=0.2", "--set", "threads=2",
            "--set", "log_interval=5", "--set", "checkpoint_every_epochs=1", "--set", "workers=2"]
TIMING = {"epoch_seconds", "train_seconds", "images_per_second", "wall_seconds", "runtime", "resumed"}
SIGTERM_BOUND = 30.0  # seconds from SIGTERM to exit, checkpoint included


def strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


class Resume(TempDirTest):
    reference = None  # the uninterrupted run, shared by the tests of this class

    def setUp(self):
        super().setUp()
        self.data = self.fake_data(train=2000, test=300, classes=10)
        if Resume.reference is None:
            out = os.path.join(self.tmp, "reference")
            r = self.train(out)
            self.assertOk(r)
            Resume.reference = {
                "final": open(os.path.join(out, "final.pt"), "rb").read(),
                "metrics": strip(read_jsonl(os.path.join(out, "metrics.jsonl"))),
                "results": strip([read_json(os.path.join(out, "results.json"))])[0],
            }

    def cmd(self, out, *extra):
        return ["train", "--data-dir", self.data, "--out", out] + SETTINGS + list(extra)

    def train(self, out, *extra):
        return run(self.cmd(out, *extra))

    def popen(self, out, *extra):
        env = dict(os.environ)
        env.pop("CIFAR100_ARCHIVE", None)
        return subprocess.Popen([BIN] + self.cmd(out, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)

    def assertSameAsReference(self, out):
        with open(os.path.join(out, "final.pt"), "rb") as f:
            self.assertTrue(f.read() == Resume.reference["final"], "final weights differ from the uninterrupted run")
        self.assertEqual(strip(read_jsonl(os.path.join(out, "metrics.jsonl"))), Resume.reference["metrics"])
        self.assertEqual(strip([read_json(os.path.join(out, "results.json"))])[0], Resume.reference["results"])

    def test_sigterm_mid_epoch_then_resume_is_bit_exact(self):
        out = os.path.join(self.tmp, "term")
        p = self.popen(out)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "progress: epoch 2/3 step 10/" in line:
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                break
        rest, _ = p.communicate(timeout=120)
        elapsed = time.monotonic() - t0
        log = "".join(lines) + rest
        self.assertEqual(p.returncode, 0, log)
        self.assertLess(elapsed, SIGTERM_BOUND, log)
        m = re.search(r"stopped by SIGTERM at epoch 2, batch (\d+)/28 \(step \d+\); checkpoint written", log)
        self.assertIsNotNone(m, log)
        self.assertTrue(0 < int(m.group(1)) < 28, m.group(0))  # mid-epoch
        self.assertFalse(os.path.exists(os.path.join(out, "results.json")))
        r = self.train(out)
        self.assertOk(r)
        self.assertIn(f"resuming at epoch 2, batch {m.group(1)}/28", r.stdout)
        self.assertSameAsReference(out)

    def test_sigkill_at_random_moments_then_resume_is_bit_exact(self):
        out = os.path.join(self.tmp, "kill")
        rng = random.Random(20261129)
        kills = 0
        for attempt in range(3):
            # Mid-epoch checkpoints every 0.3 s; kill right after one is reported, or after a random delay.
            p = self.popen(out, "--set", "checkpoint_every_minutes=0.005")
            target = rng.choice(["time", "delay"])
            deadline = time.monotonic() + rng.uniform(1.0, 3.0)
            for line in p.stdout:
                if (target == "time" and "(time, epoch" in line) or (target == "delay" and time.monotonic() > deadline):
                    break
            if p.poll() is None:
                p.kill()
                kills += 1
            p.communicate(timeout=60)
        self.assertGreater(kills, 0)
        r = self.train(out)
        self.assertOk(r)
        self.assertIn("resuming at epoch", r.stdout)
        self.assertSameAsReference(out)

    def test_full_disk_stops_the_run_and_the_same_command_resumes(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs")
        disk = os.path.join(self.tmp, "disk")
        os.makedirs(disk)
        # 1.5 MB: the first checkpoint (about 0.7 MB with momentum) and best.pt fit, the second does not.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", disk], check=True)
        try:
            out = os.path.join(disk, "run")
            r = self.train(out)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn("No space left on device", r.stderr)
            self.assertIn("run the same command again to resume", r.stderr)
            # It stopped at once instead of training the remaining epochs without checkpoints.
            self.assertLess(len(read_jsonl(os.path.join(out, "metrics.jsonl"))), 3, r.stderr)
            ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
            self.assertFalse([c for c in ckpts if c.startswith(".tmp-")], ckpts)  # no half-written checkpoint
            self.assertTrue([c for c in ckpts if c[:5] in ("ckpt-", "best-")], ckpts)
            # With space again, the same command resumes from the last complete checkpoint and ends as the
            # uninterrupted run does.
            subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
            r = self.train(out)
            self.assertOk(r)
            self.assertIn("resuming at epoch", r.stdout + r.stderr)
            self.assertSameAsReference(out)
        finally:
            subprocess.run(["umount", "-l", disk], check=False)

    def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(self):
        for damage in ("flip", "truncate", "remove"):
            with self.subTest(damage=damage):
                out = os.path.join(self.tmp, "corrupt-" + damage)
                p = self.popen(out, "--set", "checkpoint_keep=5")
                for line in p.stdout:  # stop during epoch 3, when epochs 1 and 2 have checkpoints
                    if "progress: epoch 3/3 step 5/" in line:
                        p.send_signal(signal.SIGTERM)
                        break
                p.communicate(timeout=120)
                self.assertEqual(p.returncode, 0)
                ckpts = sorted(glob.glob(os.path.join(out, "checkpoints", "*-0*")),
                               key=lambda d: (int(d[-9:]), "ckpt" in d), reverse=True)
                self.assertGreaterEqual(len(ckpts), 2, ckpts)
                newest = ckpts[0]
                state = os.path.join(newest, "state.safetensors")
                if damage == "flip":
                    with open(state, "r+b") as f:
                        f.seek(4000)
                        b = f.read(1)
                        f.seek(4000)
                        f.write(bytes([b[0] ^ 1]))
                elif damage == "truncate":
                    os.truncate(state, os.path.getsize(state) // 3)
                else:
                    os.remove(os.path.join(newest, "meta.json"))
                r = self.train(out)
                self.assertOk(r)
                self.assertIn("skipping an unusable checkpoint", r.stderr)
                self.assertIn(os.path.basename(newest), r.stderr)
                self.assertIn("resuming from checkpoint " + ckpts[1], r.stdout)
                self.assertSameAsReference(out)

    def test_no_valid_checkpoint_is_an_error_and_deletes_nothing(self):
        out = os.path.join(self.tmp, "allbad")
        self.assertOk(self.train(out, "--set", "epochs=1"))
        ckpts = glob.glob(os.path.join(out, "checkpoints", "*-0*"))
        self.assertTrue(ckpts)
        for d in ckpts:
            os.remove(os.path.join(d, "SHA256SUMS"))
        r = self.train(out, "--set", "epochs=1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("none of the", r.stderr)
        self.assertIn("nothing was deleted", r.stderr)
        for d in ckpts:
            self.assertTrue(os.path.exists(os.path.join(d, "state.safetensors")))

    def test_changed_model_or_data_configuration_is_refused(self):
        out = os.path.join(self.tmp, "mismatch")
        self.assertOk(self.train(out, "--set", "epochs=1"))
        r = self.train(out, "--set", "epochs=1", "--set", "dropout=0.1", "--set", "seed=5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("different model or data configuration", r.stderr)
        self.assertIn("dropout (0.2 -> 0.1)", r.stderr)
        self.assertIn("seed (42 -> 5)", r.stderr)
        # Explicitly allowed (fine-tuning): it continues from the checkpoint with the new settings.
        r = self.train(out, "--set", "epochs=2", "--set", "dropout=0.1", "--allow-config-change")
        self.assertOk(r)
        self.assertIn("resuming at epoch 2", r.stdout)
        self.assertEqual(len(read_jsonl(os.path.join(out, "metrics.jsonl"))), 2)

    def test_checkpoint_layout_and_contents(self):
        out = os.path.join(self.tmp, "layout")
        self.assertOk(self.train(out, "--set", "checkpoint_keep=1"))
        names = sorted(os.path.basename(d) for d in glob.glob(os.path.join(out, "checkpoints", "*-0*")))
        self.assertEqual(len([n for n in names if n.startswith("best-")]), 1, names)
        self.assertEqual(len([n for n in names if n.startswith("ckpt-")]), 1, names)
        final = os.path.join(out, "checkpoints", [n for n in names if n.startswith("ckpt-")][0])
        meta = read_json(os.path.join(final, "meta.json"))
        self.assertEqual(meta["format"], 1)
        self.assertEqual(meta["reason"], "final")
        self.assertEqual(meta["config"]["depth"], 10)
        self.assertEqual(len(meta["state"]["history"]), 3)
        self.assertTrue(meta["state"]["finished"])
        # state.safetensors follows the safetensors specification (read here without any safetensors library).
        code = r"""
import json, struct, sys, torch
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = header.pop("__metadata__")
assert meta["format"] == "cifar100-checkpoint", meta
sizes = {"F32": 4, "I64": 8, "U8": 1}
end = 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    b, e = t["data_offsets"]
    assert b == end, (name, b, end)
    numel = 1
    for d in t["shape"]:
        numel *= d
    assert e - b == numel * sizes[t["dtype"]], name
    end = e
assert end == len(data)
w = torch.frombuffer(bytearray(data[slice(*header["model/stem.weight"]["data_offsets"])]), dtype=torch.float32)
assert w.numel() == 16 * 3 * 9 and torch.isfinite(w).all()
assert "momentum/0" in header and "rng/cpu" in header
print(len(header))
"""
        r = subprocess.run(["/usr/bin/python3", "-c", code, os.path.join(final, "state.safetensors")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Resuming a finished run only redoes the final test, with the same numbers.
        before = read_json(os.path.join(out, "results.json"))
        r = self.train(out, "--set", "checkpoint_keep=1")
        self.assertOk(r)
        self.assertIn("training had finished", r.stdout)
        self.assertEqual(read_json(os.path.join(out, "results.json"))["test_top1"], before["test_top1"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
