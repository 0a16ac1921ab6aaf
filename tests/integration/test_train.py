"""End-to-end training on generated data: the model learns, the run directory has every documented file
and key, the same seed gives identical metrics and weights, eval reproduces the reported test metrics,
early stopping stops, and log lines match the documented format."""
import filecmp
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import TempDirTest, read_json, read_jsonl, run  # noqa: E402

TINY = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr=0.1",
        "--set", "lr_reference_batch=64", "--set", "warmup_epochs=0.5", "--set", "val_size=200",
        "--set", "eval_batch_size=128", "--set", "log_interval=10", "--set", "threads=2"]
EPOCH_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO  epoch=(\d+); lr=([-+0-9.eE]+); train_loss=([-+0-9.eE]+); "
    r"train_acc=([-+0-9.eE]+); val_loss=([-+0-9.eE]+); val_top1=([-+0-9.eE]+); val_top5=([-+0-9.eE]+); "
    r"epoch_seconds=([-+0-9.eE]+); images_per_second=([-+0-9.eE]+);$")
TEST_LINE = re.compile(r"INFO  test_loss=([-+0-9.eE]+); test_top1=([-+0-9.eE]+); test_top5=([-+0-9.eE]+);")
TIMING = {"epoch_seconds", "train_seconds", "images_per_second", "wall_seconds", "runtime"}


class Train(TempDirTest):
    def train(self, out, *extra, data=None):
        data = data or self.data
        return run(["train", "--data-dir", data, "--out", out] + TINY + list(extra))

    def setUp(self):
        super().setUp()
        self.data = self.fake_data(train=2000, test=500, classes=10)

    def test_learns_and_writes_the_run_directory(self):
        out = os.path.join(self.tmp, "run")
        r = self.train(out, "--set", "epochs=3", "--set", "mixup_alpha=0", "--set", "dropout=0")
        self.assertOk(r)
        for f in ("config.yaml", "metrics.jsonl", "results.json", "best.pt", "final.pt", "model/config.json",
                  "model/model.safetensors", "model/model.pt"):
            self.assertTrue(os.path.exists(os.path.join(out, f)), f)
        results = read_json(os.path.join(out, "results.json"))
        for k in ("test_top1", "test_top5", "best_epoch", "wall_seconds"):
            self.assertIn(k, results)
        # 10 classes present: chance is 10% top-1 and 50% top-5.
        self.assertGreater(results["test_top1"], 0.6, results)
        self.assertGreater(results["test_top5"], 0.95, results)
        self.assertLessEqual(results["test_top1"], results["test_top5"])
        metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertEqual([m["epoch"] for m in metrics], [1, 2, 3])
        for m in metrics:
            for k in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "epoch_seconds",
                      "images_per_second"):
                self.assertIn(k, m)
        self.assertLess(metrics[-1]["train_loss"], metrics[0]["train_loss"])
        # Log lines: one documented, regex-readable line per epoch and one for the test.
        lines = [l for l in r.stdout.splitlines() if EPOCH_LINE.match(l)]
        self.assertEqual(len(lines), 3, r.stdout)
        self.assertEqual(int(EPOCH_LINE.match(lines[2]).group(1)), 3)
        m = TEST_LINE.search(r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertAlmostEqual(float(m.group(2)), results["test_top1"], places=4)
        self.assertIn("progress: epoch 1/3 step 10/", r.stdout)  # plain progress lines in a pipe
        self.assertNotIn("\r", r.stdout)
        # The saved config reproduces the run's settings.
        with open(os.path.join(out, "config.yaml")) as f:
            text = f.read()
        self.assertIn("depth: 10", text)
        self.assertIn("epochs: 3", text)

        # eval on the run directory (its model/ artifact, the best weights) reproduces the reported test metrics
        # exactly when run as trained (--no-fold), and closely with batch norm folded.
        js = os.path.join(self.tmp, "eval.json")
        e = run(["eval", "--model", out, "--data-dir", self.data, "--json", js, "--no-fold", "--threads", "2",
                 "--batch-size", "128"])
        self.assertOk(e)
        ev = read_json(js)
        self.assertAlmostEqual(ev["top1"], results["test_top1"], places=6)
        self.assertAlmostEqual(ev["top5"], results["test_top5"], places=6)
        self.assertAlmostEqual(ev["loss"], results["test_loss"], places=3)
        e = run(["eval", "--model", os.path.join(out, "model"), "--data-dir", self.data, "--json", js])
        self.assertOk(e)
        self.assertAlmostEqual(read_json(js)["top1"], results["test_top1"], delta=0.01)
        best = metrics[results["best_epoch"] - 1]
        e = run(["eval", "--model", out, "--data-dir", self.data, "--split", "val", "--json", js, "--no-fold",
                 "--batch-size", "128"])
        self.assertOk(e)
        self.assertAlmostEqual(read_json(js)["top1"], best["val_top1"], places=6)
        self.assertIn("test_top1=", run(["eval", "--model", out, "--data-dir", self.data]).stdout)

        # Training again into the same directory resumes from its checkpoints: with a different model
        # configuration that is refused (exit 2, naming the key) and nothing is touched.
        again = self.train(out, "--set", "epochs=3", "--set", "mixup_alpha=0", "--set", "dropout=0.1")
        self.assertEqual(again.returncode, 2, again.stderr)
        self.assertIn("dropout (0 -> 0.1)", again.stderr)
        self.assertEqual(len(read_jsonl(os.path.join(out, "metrics.jsonl"))), 3)
        # Without checkpoints (resume=none) an existing run is refused unless --overwrite.
        again = self.train(out, "--set", "epochs=1", "--resume", "none")
        self.assertEqual(again.returncode, 1, again.stderr)
        self.assertIn("holds checkpoints and resume=none", again.stderr)
        self.assertEqual(len(read_jsonl(os.path.join(out, "metrics.jsonl"))), 3)

    def test_same_seed_same_metrics_and_weights(self):
        outs = []
        for i in range(2):
            out = os.path.join(self.tmp, f"det{i}")
            r = self.train(out, "--set", "epochs=2", "--set", "mixup_alpha=0.2", "--set", "dropout=0.2",
                           "--set", "workers=2", "--set", "train_limit=1000", "--set", "cutmix_alpha=1.0",
                           "--set", "augment=trivialaugment; random_erasing(p=0.5, value=random)")
            self.assertOk(r)
            outs.append(out)
        a, b = (read_jsonl(os.path.join(o, "metrics.jsonl")) for o in outs)
        strip = lambda rows: [{k: v for k, v in m.items() if k not in TIMING} for m in rows]  # noqa: E731
        self.assertEqual(strip(a), strip(b))
        ra, rb = (read_json(os.path.join(o, "results.json")) for o in outs)
        self.assertEqual({k: v for k, v in ra.items() if k not in TIMING}, {k: v for k, v in rb.items() if k not in TIMING})
        self.assertTrue(filecmp.cmp(os.path.join(outs[0], "final.pt"), os.path.join(outs[1], "final.pt"), shallow=False))
        # A different seed gives a different run.
        out = os.path.join(self.tmp, "det-other")
        r = self.train(out, "--set", "epochs=2", "--set", "mixup_alpha=0.2", "--set", "dropout=0.2",
                       "--set", "workers=2", "--set", "train_limit=1000", "--set", "cutmix_alpha=1.0",
                       "--set", "augment=trivialaugment; random_erasing(p=0.5, value=random)", "--set", "seed=7")
        self.assertOk(r)
        self.assertNotEqual(strip(read_jsonl(os.path.join(out, "metrics.jsonl"))), strip(a))

    def test_seed_pipeline_and_cutmix_learn(self):
        out = os.path.join(self.tmp, "augmented")
        r = self.train(out, "--set", "epochs=3", "--set", "augment=seed", "--set", "cutmix_alpha=1.0",
                       "--set", "mixup_alpha=0.2", "--set", "dropout=0")
        self.assertOk(r)
        res = read_json(os.path.join(out, "results.json"))
        self.assertGreater(res["test_top1"], 0.5, res)  # chance: 0.1
        with open(os.path.join(out, "config.yaml")) as f:
            self.assertIn('augment: "seed"', f.read())

    def test_synthetic_data_reuses_one_batch(self):
        out = os.path.join(self.tmp, "synthetic")
        r = self.train(out, "--set", "epochs=2", "--set", "synthetic_data=true", "--set", "train_limit=256",
                       "--set", "mixup_alpha=0", "--set", "dropout=0")
        self.assertOk(r)
        m = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertEqual(len(m), 2)
        self.assertGreater(m[1]["train_acc"], m[0]["train_acc"])  # memorising the one batch

    def test_early_stopping(self):
        out = os.path.join(self.tmp, "es")
        # The synthetic classes are easy: validation top-1 plateaus (at or near 1.0) within a few epochs, so
        # with patience 2 the run must stop two epochs after its best one, well before epoch 12.
        r = self.train(out, "--set", "epochs=12", "--set", "early_stopping_patience=2", "--set", "mixup_alpha=0",
                       "--set", "dropout=0")
        self.assertOk(r)
        res = read_json(os.path.join(out, "results.json"))
        metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertTrue(res["early_stopped"], metrics)
        self.assertLess(res["epochs_run"], 12)
        self.assertEqual(res["epochs_run"], res["best_epoch"] + 2)
        best = max(m["val_top1"] for m in metrics)
        self.assertEqual(metrics[res["best_epoch"] - 1]["val_top1"], best)
        self.assertTrue(all(m["val_top1"] < best for m in metrics[:res["best_epoch"] - 1]))
        self.assertIn("early stopping", r.stdout)

    def test_no_validation_split(self):
        out = os.path.join(self.tmp, "noval")
        r = self.train(out, "--set", "epochs=1", "--set", "val_size=0", "--set", "train_limit=256")
        self.assertOk(r)
        res = read_json(os.path.join(out, "results.json"))
        self.assertEqual(res["weights_tested"], "final")
        m = read_jsonl(os.path.join(out, "metrics.jsonl"))[0]
        self.assertNotIn("val_top1", m)


if __name__ == "__main__":
    unittest.main(verbosity=2)
