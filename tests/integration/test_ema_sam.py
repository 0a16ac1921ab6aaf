"""EMA of the weights and SAM through the binary: the average is validated every epoch beside the raw weights,
the better one becomes best.pt (and the best checkpoint holds both), the final weights are the average's, a
run with EMA and SAM stopped by SIGTERM resumes to the uninterrupted run's weights byte for byte,
precision=fp16 without CUDA is a clear configuration error, and augmentation on the device trains exactly
the CPU loader's run."""
import glob
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json, read_jsonl, run  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

SETTINGS = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr=0.2",
            "--set", "lr_reference_batch=64", "--set", "warmup_epochs=0.5", "--set", "val_size=500",
            "--set", "eval_batch_size=250", "--set", "log_interval=5", "--set", "threads=2", "--set", "epochs=3",
            "--set", "mixup_alpha=0", "--set", "dropout=0", "--set", "checkpoint_keep=5",
            "--set", "checkpoint_every_epochs=1"]
TIMING = {"epoch_seconds", "train_seconds", "images_per_second", "wall_seconds", "runtime", "resumed"}
DTYPES = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "BF16": np.uint16, "U8": np.uint8, "I32": np.int32}


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


def strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def read_safetensors(path):
    """An independent reader of the format: 8-byte little-endian header size, JSON header, raw data."""
    raw = slurp(path)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def read_pt(path):
    return {k: v.numpy() for k, v in torch.load(io.BytesIO(slurp(path))).items()}


class EmaSam(TempDirTest):
    def setUp(self):
        super().setUp()
        self.data = self.fake_data(train=3000, test=300, classes=100)

    def cmd(self, out, *extra):
        return ["train", "--data-dir", self.data, "--out", out] + SETTINGS + list(extra)

    def assertSameTensors(self, got, want, prefix, what):
        names = {k[len(prefix):] for k in want if k.startswith(prefix)}
        self.assertEqual(set(got), names, what)
        for k in names:
            self.assertTrue(np.array_equal(got[k], want[prefix + k]), f"{what}: {k} differs")

    def test_ema_is_validated_selected_as_best_and_is_the_final_model(self):
        out = os.path.join(self.tmp, "ema")
        # min_lr=0.2: a constant lr after the warmup keeps the raw weights noisy, so the average is ahead from
        # epoch 2 on by a wide margin in either precision (measured on 500 validation images: by 18 and 36 images
        # at epochs 2 and 3 in fp32, 14 and 31 in bf16). With the cosine schedule the average led by only 2
        # images in bf16, a lead that other bf16 kernels could reverse.
        ema = ["--set", "ema_decay=0.9", "--set", "min_lr=0.2"]
        r = run(self.cmd(out, *ema))
        self.assertOk(r)
        rows = read_jsonl(os.path.join(out, "metrics.jsonl"))
        for m in rows:
            for k in ("ema_loss", "ema_top1", "ema_top5", "selected"):
                self.assertIn(k, m)
            self.assertEqual(m["selected"], "ema" if m["ema_top1"] > m["val_top1"] else "raw", m)
        lines = re.findall(r"ema_top1=([0-9.]+); ema_top5=[0-9.]+; selected=(raw|ema);", r.stdout)
        self.assertEqual([(f"{m['ema_top1']:.4f}", m["selected"]) for m in rows], lines)
        # This recipe (constant lr 0.2, decay 0.9, 100 classes) has the average ahead after the first epoch.
        self.assertIn("ema", [m["selected"] for m in rows], rows)

        # best.pt holds the weights that won the best epoch; the best checkpoint holds both sets.
        best_epoch = max(rows, key=lambda m: max(m["val_top1"], m["ema_top1"]))
        results = read_json(os.path.join(out, "results.json"))
        ckpts = sorted(glob.glob(os.path.join(out, "checkpoints", "best-*")))
        self.assertTrue(ckpts)
        state = read_safetensors(os.path.join(ckpts[-1], "state.safetensors"))
        meta = read_json(os.path.join(ckpts[-1], "meta.json"))
        self.assertEqual(meta["state"]["best_epoch"], best_epoch["epoch"])
        self.assertAlmostEqual(meta["state"]["best_val_top1"], max(best_epoch["val_top1"], best_epoch["ema_top1"]))
        prefix = "ema/" if best_epoch["selected"] == "ema" else "model/"
        self.assertSameTensors(read_pt(os.path.join(out, "best.pt")), state, prefix, "best.pt")
        self.assertEqual(results["best_epoch"], best_epoch["epoch"])

        # The final weights are the average's, as the final checkpoint holds it.
        final = sorted(glob.glob(os.path.join(out, "checkpoints", "ckpt-*")))[-1]
        self.assertEqual(read_json(os.path.join(final, "meta.json"))["reason"], "final")
        self.assertSameTensors(read_pt(os.path.join(out, "final.pt")),
                               read_safetensors(os.path.join(final, "state.safetensors")), "ema/", "final.pt")

        # After a resume in a fresh place (best.pt gone), the best checkpoint's history picks the same weights.
        want = slurp(os.path.join(out, "best.pt"))
        os.remove(os.path.join(out, "best.pt"))
        r = run(self.cmd(out, *ema))
        self.assertOk(r)
        self.assertIn("best weights restored from checkpoint", r.stdout)
        self.assertEqual(slurp(os.path.join(out, "best.pt")), want)

    def test_ema_and_sam_sigterm_then_resume_is_bit_exact(self):
        extra = ["--set", "ema_decay=0.95", "--set", "sam_rho=0.1", "--set", "sam_adaptive=true"]
        ref = os.path.join(self.tmp, "ref")
        r = run(self.cmd(ref, *extra))
        self.assertOk(r)
        self.assertNotEqual(read_jsonl(os.path.join(ref, "metrics.jsonl"))[0]["val_top1"],
                            read_jsonl(os.path.join(ref, "metrics.jsonl"))[0]["ema_top1"])

        out = os.path.join(self.tmp, "term")
        env = dict(os.environ)
        env.pop("CIFAR100_ARCHIVE", None)
        p = subprocess.Popen([BIN] + self.cmd(out, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "progress: epoch 2/3 step 10/" in line:
                p.send_signal(signal.SIGTERM)
                break
        rest, _ = p.communicate(timeout=120)
        log = "".join(lines) + rest
        self.assertEqual(p.returncode, 0, log)
        m = re.search(r"stopped by SIGTERM at epoch 2, batch (\d+)/", log)
        self.assertIsNotNone(m, log)
        r = run(self.cmd(out, *extra))
        self.assertOk(r)
        self.assertIn(f"resuming at epoch 2, batch {m.group(1)}/", r.stdout)
        for f in ("final.pt", "best.pt"):
            self.assertEqual(slurp(os.path.join(out, f)), slurp(os.path.join(ref, f)), f)
        self.assertEqual(strip(read_jsonl(os.path.join(out, "metrics.jsonl"))),
                         strip(read_jsonl(os.path.join(ref, "metrics.jsonl"))))

    def test_sam_changes_the_update_and_fp16_needs_cuda(self):
        a, b = os.path.join(self.tmp, "plain"), os.path.join(self.tmp, "sam")
        one = ["--set", "epochs=1"]
        self.assertOk(run(self.cmd(a, *one)))
        r = run(self.cmd(b, *one, "--set", "sam_rho=0.05"))
        self.assertOk(r)
        self.assertNotEqual(slurp(os.path.join(a, "final.pt")), slurp(os.path.join(b, "final.pt")))

        r = run(self.cmd(os.path.join(self.tmp, "fp16"), "--set", "precision=fp16", "--set", "device=cpu"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("precision=fp16 needs a CUDA device", r.stdout + r.stderr)

    def test_augmentation_on_the_device_trains_the_cpu_loaders_run(self):
        spec = "augment=random_crop(padding=4); hflip; cutout(holes=2, size=12, p=0.7)"
        one = ["--set", "epochs=2", "--set", "train_limit=1000", "--set", spec]
        a, b = os.path.join(self.tmp, "cpu_loader"), os.path.join(self.tmp, "device")
        self.assertOk(run(self.cmd(a, *one, "--set", "augment_on_device=false")))
        r = run(self.cmd(b, *one, "--set", "augment_on_device=true"))
        self.assertOk(r)
        self.assertIn("augmentation runs on cpu", r.stdout)
        self.assertEqual(slurp(os.path.join(a, "final.pt")), slurp(os.path.join(b, "final.pt")))
        self.assertEqual(strip(read_jsonl(os.path.join(a, "metrics.jsonl"))),
                         strip(read_jsonl(os.path.join(b, "metrics.jsonl"))))
        r = run(self.cmd(os.path.join(self.tmp, "policy"), "--set", "augment=trivialaugment",
                         "--set", "augment_on_device=true"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("the pipeline's 'trivial_augment_wide' runs only in the CPU loader", r.stderr)


if __name__ == "__main__":
    unittest.main()
