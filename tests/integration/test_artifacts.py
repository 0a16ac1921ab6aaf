"""Model artifacts through the binary: training writes OUT/model, export turns a checkpoint into the same
artifact, eval writes its full report (JSON, CSV, heat map) with self-consistent numbers, predict handles
PNG and JPEG files of any size and gives a per-file error for every kind of bad file."""
import csv
import json
import os
import struct
import sys
import unittest
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from harness import TempDirTest, read_json, run  # noqa: E402
import safetensors_spec  # noqa: E402

TINY = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr=0.1",
        "--set", "lr_reference_batch=64", "--set", "warmup_epochs=0.5", "--set", "val_size=200",
        "--set", "eval_batch_size=128", "--set", "log_interval=0", "--set", "threads=2", "--set", "epochs=2",
        "--set", "mixup_alpha=0", "--set", "dropout=0"]


def png_with_size(path, width, height):
    """A PNG whose header claims width x height (CRC correct) with a tiny, incomplete image stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    data += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    with open(path, "wb") as f:
        f.write(data)


class Artifacts(TempDirTest):
    @classmethod
    def setUpClass(cls):
        # One small training run shared by every test (read-only for them).
        import tempfile
        cls.shared = tempfile.mkdtemp(prefix="cifar100-art-")
        t = TempDirTest()
        t.tmp = cls.shared
        cls.data = t.fake_data(train=1500, test=400, classes=10)
        cls.out = os.path.join(cls.shared, "run")
        r = run(["train", "--data-dir", cls.data, "--out", cls.out] + TINY)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.train_log = r.stdout

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.shared, ignore_errors=True)

    def images(self):
        """Good PNG and JPEG files of several sizes and modes."""
        rng = np.random.default_rng(1)
        files = []
        for i, (w, h, mode, ext) in enumerate([(32, 32, "RGB", "png"), (640, 480, "RGB", "jpg"), (50, 120, "L", "png"),
                                               (33, 33, "RGBA", "png"), (200, 100, "L", "jpg")]):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            im = Image.fromarray(arr).convert(mode)
            p = os.path.join(self.tmp, f"good{i}.{ext}")
            im.save(p)
            files.append(p)
        return files

    def test_training_writes_the_artifact(self):
        model = os.path.join(self.out, "model")
        self.assertEqual(sorted(os.listdir(model)), ["config.json", "model.pt", "model.safetensors"])
        cfg = read_json(os.path.join(model, "config.json"))
        results = read_json(os.path.join(self.out, "results.json"))
        self.assertEqual((cfg["depth"], cfg["width"], cfg["num_classes"]), (10, 1, 100))
        self.assertEqual(cfg["class_names"][3], "class_3")  # the names of the data set it was trained on
        self.assertEqual(cfg["training"]["metrics"]["test_top1"], results["test_top1"])
        self.assertEqual(cfg["training"]["config"]["epochs"], 2)
        self.assertIn("model artifact in", self.train_log)
        tensors, meta = safetensors_spec.read(os.path.join(model, "model.safetensors"))
        self.assertEqual(meta["format"], "pt")
        self.assertEqual(tensors["stem.weight"].shape, (16, 3, 3, 3))
        self.assertEqual(tensors["fc.weight"].dtype.__repr__(), "torch.float32")

    def test_export_from_a_checkpoint_gives_the_same_model(self):
        exported = os.path.join(self.tmp, "exported")
        r = run(["export", "--checkpoint", self.out, "--out", exported, "--data-dir", self.data])
        self.assertOk(r)
        self.assertIn("best-", r.stdout)  # a run directory exports its best checkpoint
        a, _ = safetensors_spec.read(os.path.join(self.out, "model", "model.safetensors"))
        b, _ = safetensors_spec.read(os.path.join(exported, "model.safetensors"))
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            self.assertTrue(bool((a[k] == b[k]).all()), k)
        cfg = read_json(os.path.join(exported, "config.json"))
        self.assertEqual(cfg["class_names"][0], "class_0")
        self.assertIn("checkpoint", cfg["training"]["source"])
        # Predictions of both artifacts are identical.
        imgs = self.images()
        p1 = run(["predict", "--model", os.path.join(self.out, "model"), "--json"] + imgs)
        p2 = run(["predict", "--model", exported, "--json"] + imgs)
        self.assertOk(p1)
        self.assertEqual(json.loads(p1.stdout)["predictions"], json.loads(p2.stdout)["predictions"])
        # Exporting again replaces the artifact; a specific checkpoint directory works too; no data set: official names.
        ckpts = sorted(os.listdir(os.path.join(self.out, "checkpoints")))
        ck = os.path.join(self.out, "checkpoints", [c for c in ckpts if c.startswith("ckpt-")][-1])
        r = run(["export", "--checkpoint", ck, "--out", exported, "--data-dir", os.path.join(self.tmp, "none")])
        self.assertOk(r)
        self.assertEqual(read_json(os.path.join(exported, "config.json"))["class_names"][0], "apple")
        # Bad inputs: not a checkpoint, a directory holding other files.
        r = run(["export", "--checkpoint", self.tmp + "/missing", "--out", os.path.join(self.tmp, "x")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)
        os.makedirs(os.path.join(self.tmp, "busy"))
        open(os.path.join(self.tmp, "busy", "keep.txt"), "w").write("mine")
        r = run(["export", "--checkpoint", self.out, "--out", os.path.join(self.tmp, "busy")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds other files", r.stderr)

    def test_eval_report_is_complete_and_consistent(self):
        js = os.path.join(self.tmp, "eval.json")
        rep = os.path.join(self.tmp, "report")
        r = run(["eval", "--model", self.out, "--data-dir", self.data, "--json", js, "--report-dir", rep,
                 "--precision", "fp32"])
        self.assertOk(r)
        ev = read_json(js)
        n = ev["images"]
        self.assertEqual(n, 400)
        conf = np.array(ev["confusion_matrix"])
        self.assertEqual(conf.shape, (100, 100))
        self.assertEqual(conf.sum(), n)
        self.assertAlmostEqual(np.trace(conf) / n, ev["top1"], places=9)
        self.assertLessEqual(ev["top1"], ev["top5"])
        self.assertGreaterEqual(ev["coarse_top1"], ev["top1"])  # a right class is a right superclass
        self.assertTrue(0 <= ev["ece"] <= 1)
        bins = ev["calibration_bins"]
        self.assertEqual(sum(b["images"] for b in bins), n)
        ece = sum(b["images"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins)
        self.assertAlmostEqual(ece, ev["ece"], places=9)
        per = ev["per_class"]
        self.assertEqual(sum(p["correct"] for p in per), round(ev["top1"] * n))
        self.assertEqual([p["images"] for p in per][:10], list(conf.sum(1)[:10]))
        # The files: CSVs agree with the JSON, the PNG is a real image with a row and column per class.
        with open(os.path.join(rep, "confusion.csv")) as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0][1], "class_0")
        self.assertEqual([[int(v) for v in row[1:]] for row in rows[1:]], conf.tolist())
        with open(os.path.join(rep, "per_class.csv")) as f:
            self.assertEqual(len(list(csv.reader(f))), 101)
        # The heat map decodes, has the size of its layout (8-pixel cells after a label margin of 6 pixels per
        # character of "class_99" + 4, plus 6; a 40-pixel title) and colours exactly the non-zero cells.
        im = Image.open(os.path.join(rep, "confusion.png"))
        im.load()
        self.assertEqual(im.mode, "RGB")
        label = (len("class_99") + 4) * 6 + 6
        self.assertEqual(im.size, (label + 100 * 8 + 10, 40 + label + 100 * 8 + 10))
        px = np.asarray(im)
        top = 40 + label
        for i in range(100):
            for j in range(100):
                cell = tuple(px[top + i * 8 + 3, label + j * 8 + 3])
                self.assertEqual(cell == (255, 255, 255), conf[i, j] == 0, (i, j, cell, conf[i, j]))
        self.assertEqual(read_json(os.path.join(rep, "metrics.json"))["top1"], ev["top1"])
        # Flip test-time augmentation runs and is recorded; on this tiny model its top-1 stays near the plain one
        # (both in float32: the difference is TTA's alone, whatever precision=auto picks on this CPU).
        r = run(["eval", "--model", self.out, "--data-dir", self.data, "--json", js, "--tta", "flip",
                 "--precision", "fp32"])
        self.assertOk(r)
        tta = read_json(js)
        self.assertEqual(tta["tta"], "flip")
        self.assertLess(abs(tta["top1"] - ev["top1"]), 0.1)
        for line in ("test_top1=", "test_ece=", "best classes:"):
            self.assertIn(line, r.stdout)

    def test_predict_png_and_jpeg(self):
        imgs = self.images()
        r = run(["predict", "--model", self.out, "--json", "--top-k", "3"] + imgs)
        self.assertOk(r)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["failed"], 0)
        self.assertEqual(len(doc["predictions"]), len(imgs))
        for p, f in zip(doc["predictions"], imgs):
            self.assertEqual(p["file"], f)
            self.assertEqual(len(p["top_k"]), 3)
            probs = [t["probability"] for t in p["top_k"]]
            self.assertEqual(probs, sorted(probs, reverse=True))
            self.assertLessEqual(sum(probs), 1.0 + 1e-6)
            self.assertTrue(all(t["name"] == f"class_{t['class']}" for t in p["top_k"]))
        self.assertEqual((doc["predictions"][1]["width"], doc["predictions"][1]["height"]), (640, 480))
        self.assertEqual(doc["predictions"][1]["format"], "JPEG")
        # The table: one block per image with five ranked lines by default.
        r = run(["predict", "--model", self.out] + imgs[:2])
        self.assertOk(r)
        self.assertIn("good1.jpg  (640x480 JPEG)", r.stdout)
        self.assertEqual(len([l for l in r.stdout.splitlines() if l.strip().startswith(("1 ", "5 "))]), 4)

    def test_predict_bad_files_fail_alone(self):
        good = self.images()[:2]
        bad = {}
        bad["text.png"] = b"this is not an image\n"
        with open(good[0], "rb") as f:
            png = f.read()
        with open(good[1], "rb") as f:
            jpg = f.read()
        bad["truncated.png"] = png[: len(png) // 2]
        bad["truncated.jpg"] = jpg[: len(jpg) // 2]
        bad["corrupt.png"] = png[:8] + bytes(range(256)) * 4
        bad["anim.gif"] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
        bad["empty.jpg"] = b""
        paths = []
        for name, data in bad.items():
            p = os.path.join(self.tmp, name)
            with open(p, "wb") as f:
                f.write(data)
            paths.append(p)
        huge = os.path.join(self.tmp, "huge.png")
        png_with_size(huge, 100000, 100000)
        paths += [huge, os.path.join(self.tmp, "missing.png"), self.tmp]
        r = run(["predict", "--model", self.out, "--json"] + good + paths)
        self.assertEqual(r.returncode, 1, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["failed"], len(paths))
        by_file = {p["file"]: p for p in doc["predictions"]}
        for g in good:
            self.assertIn("top_k", by_file[g])
        expect = {"text.png": "not a PNG or JPEG", "truncated.png": "truncated", "truncated.jpg": "truncated",
                  "corrupt.png": "corrupt PNG", "anim.gif": "GIF images are not supported", "empty.jpg": "empty",
                  "huge.png": "100000x100000", "missing.png": "no such file"}
        for name, fragment in expect.items():
            err = by_file[os.path.join(self.tmp, name)]["error"]
            self.assertIn(fragment, err, name)
            self.assertIn(name, err)
        self.assertIn("error", by_file[self.tmp])
        # In table mode the errors go to stderr, the good files still to stdout.
        r = run(["predict", "--model", self.out] + good[:1] + paths[:1])
        self.assertEqual(r.returncode, 1)
        self.assertIn("good0.png", r.stdout)
        self.assertIn("not a PNG or JPEG", r.stderr)
        self.assertIn("1 of 2 images could not be predicted", r.stderr)

    def test_bad_model_directories_and_usage(self):
        img = self.images()[:1]
        r = run(["predict", "--model", self.tmp] + img)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not a model artifact", r.stderr)
        r = run(["eval", "--model", os.path.join(self.tmp, "nothing"), "--data-dir", self.data])
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)
        self.assertEqual(run(["predict", "--model", self.out]).returncode, 2)  # no images
        self.assertEqual(run(["predict", "--model", self.out, "--top-k", "0"] + img).returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
