"""TensorBoard event files of training, read back by an independent reader (tfevents.py: TFRecord framing with
both CRC32Cs verified, the Event protocol buffer decoded by python3-protobuf from descriptors built there): one
file per process under OUT/tensorboard, a file_version event first, one event of scalars per epoch equal to that
epoch's metrics.jsonl line (tags train/loss, val/top1, ema/top5, lr, grad_norm, ...; nothing missing, nothing
extra), the final test's scalars equal to results.json, the confusion matrix PNG (byte for byte the report's)
and a grid of augmented training images; tensorboard=false writes nothing; a run stopped by SIGTERM and resumed
leaves two files that together hold every epoch."""
import io
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json, read_jsonl  # noqa: E402
import tfevents  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SETTINGS = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=32", "--set", "lr=0.1",
            "--set", "lr_reference_batch=32", "--set", "warmup_epochs=0.5", "--set", "val_size=100",
            "--set", "eval_batch_size=100", "--set", "log_interval=2", "--set", "threads=2",
            "--set", "checkpoint_every_epochs=1", "--set", "mixup_alpha=0", "--set", "dropout=0"]
NAME = re.compile(r"^events\.out\.tfevents\.(\d{10})\.(.+)\.(\d+)\.0$")
PREFIXES = ("train_", "val_", "ema_", "test_")
PLAIN = {"train_seconds"}  # a timing key, not a training metric: its tag is the key itself (as lr, epoch_seconds)
SLACK = 1e-3  # seconds: a run's window is measured around the process, the events are stamped inside it


def tag_of(key):
    """The TensorBoard tag of a metrics key: the first "_" of train_/val_/ema_/test_ keys becomes "/" (train_loss ->
    train/loss, val_top1 -> val/top1), other keys are tags as they are (lr, grad_norm, train_seconds)."""
    return key.replace("_", "/", 1) if key.startswith(PREFIXES) and key not in PLAIN else key


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def expected_scalars(line):
    """{tag: value} an epoch's event must hold: every numeric key of its metrics.jsonl line but "epoch"."""
    return {tag_of(k): v for k, v in line.items() if k != "epoch" and is_number(v)}


class Reader(TempDirTest):
    """The reader itself, against known vectors and files written here (no binary needed)."""

    def test_crc32c_known_vectors(self):
        self.assertEqual(tfevents.crc32c(b"123456789"), 0xE3069283)
        # RFC 3720 appendix B.4.
        self.assertEqual(tfevents.crc32c(bytes(32)), 0x8A9136AA)
        self.assertEqual(tfevents.crc32c(b"\xff" * 32), 0x62A8AB43)
        self.assertEqual(tfevents.crc32c(bytes(range(32))), 0x46DD794E)
        self.assertEqual(tfevents.crc32c(bytes(range(31, -1, -1))), 0x113FDB5C)
        # The masked CRC of a 24-byte record's length, the first 12 bytes of every TensorFlow event file.
        self.assertEqual(tfevents.frame_record(bytes(24))[:12].hex(), "1800000000000000a37f4b22")

    def sample(self, path):
        im = Image.fromarray(np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3, "RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        png = buf.getvalue()
        payloads = [tfevents.encode_event(1700000000.25, file_version="brain.Event:2"),
                    tfevents.encode_event(1700000001.5, step=1, scalars=[("train/loss", 2.25), ("skipped_steps", 0),
                                                                          ("lr", 0.1)]),
                    tfevents.encode_event(1700000002.5, step=1, images=[("grid", 4, 6, 3, png)])]
        tfevents.write_events(path, payloads)
        return png

    def test_round_trip(self):
        path = os.path.join(self.tmp, "events.out.tfevents.1700000000.host.1.0")
        png = self.sample(path)
        evs = tfevents.read_events(path)
        self.assertEqual(len(evs), 3)
        self.assertEqual(evs[0].WhichOneof("what"), "file_version")
        self.assertEqual(evs[0].file_version, "brain.Event:2")
        self.assertEqual(evs[0].wall_time, 1700000000.25)
        self.assertFalse(evs[0].HasField("summary"))
        self.assertEqual(evs[1].step, 1)
        self.assertEqual(tfevents.scalars(evs[1]), {"train/loss": 2.25, "skipped_steps": 0.0,
                                                    "lr": float(np.float32(0.1))})
        self.assertEqual(tfevents.images(evs[1]), {})
        img = tfevents.images(evs[2])["grid"]
        self.assertEqual((img.height, img.width, img.colorspace), (4, 6, 3))
        self.assertEqual(img.encoded_image_string, png)
        self.assertEqual(tfevents.png_size(png), (6, 4))

    def test_schema_field_numbers(self):
        # Wire bytes written out by hand from tensorboard's event.proto and summary.proto pin the descriptors:
        # Event{wall_time(1, double)=1.5, step(2, varint)=3, summary(5){value(1){tag(1)="lr", simple_value(2,
        # fixed32)=0.5}}}, and an image value(1){tag="i", image(4){height(1)=2, width(2)=3, colorspace(3)=3,
        # encoded_image_string(4)="png"}}.
        scalar = b"\x0a\x02lr" + b"\x15" + struct.pack("<f", 0.5)
        image = b"\x0a\x01i" + b"\x22\x0b" + b"\x08\x02\x10\x03\x18\x03\x22\x03png"
        summary = b"\x0a" + bytes([len(scalar)]) + scalar + b"\x0a" + bytes([len(image)]) + image
        raw = b"\x09" + struct.pack("<d", 1.5) + b"\x10\x03" + b"\x2a" + bytes([len(summary)]) + summary
        ev = tfevents.parse_event(raw)
        self.assertEqual((ev.wall_time, ev.step), (1.5, 3))
        self.assertEqual(tfevents.scalars(ev), {"lr": 0.5})
        img = tfevents.images(ev)["i"]
        self.assertEqual((img.height, img.width, img.colorspace, img.encoded_image_string), (2, 3, 3, b"png"))
        self.assertEqual(tfevents.encode_event(1.5, step=3, scalars=[("lr", 0.5)], images=[("i", 2, 3, 3, b"png")]),
                         raw)
        ev = tfevents.parse_event(b"\x09" + struct.pack("<d", 2.0) + b"\x1a\x0dbrain.Event:2")
        self.assertEqual(ev.file_version, "brain.Event:2")

    def test_damage_is_rejected(self):
        path = os.path.join(self.tmp, "events")
        self.sample(path)
        with open(path, "rb") as fh:
            raw = fh.read()
        first = 16 + 24  # the file_version record
        # A flipped bit in every byte of the first two records (length, its CRC, data, data CRC) is caught.
        for i in range(first + 30):
            bad = bytearray(raw)
            bad[i] ^= 0x10
            with self.assertRaises(tfevents.TFEventsError, msg=f"byte {i}"):
                tfevents.read_records(bytes(bad))
        # So is a flip in the PNG, deep in the last record, and every truncation.
        bad = bytearray(raw)
        bad[len(raw) - 30] ^= 1
        with self.assertRaisesRegex(tfevents.TFEventsError, "data CRC"):
            tfevents.read_records(bytes(bad))
        ends = [0]
        for r in tfevents.read_records(raw):
            ends.append(ends[-1] + 16 + len(r))
        self.assertEqual(ends[-1], len(raw))
        for n in range(1, len(raw)):
            if n not in ends:  # a cut at a record boundary is a shorter, valid file
                with self.assertRaises(tfevents.TFEventsError, msg=f"truncated to {n}"):
                    tfevents.read_records(raw[:n])
        # A field the schema does not define (here field 6 of Event) or a mistyped one is refused.
        with self.assertRaisesRegex(tfevents.TFEventsError, "does not define"):
            tfevents.parse_event(tfevents.encode_event(1.0) + bytes([6 << 3, 1]))
        value = bytes([1 << 3 | 2, 1]) + b"x" + bytes([2 << 3 | 0, 5])  # Value{tag="x", simple_value as a varint}
        summary = bytes([1 << 3 | 2, len(value)]) + value
        with self.assertRaisesRegex(tfevents.TFEventsError, "does not define"):
            tfevents.parse_event(bytes([5 << 3 | 2, len(summary)]) + summary)
        with self.assertRaises(tfevents.TFEventsError):
            tfevents.parse_event(b"\x0a\x05ab")  # a length past the end


class TensorBoard(TempDirTest):
    def setUp(self):
        super().setUp()
        self.data = self.fake_data(train=600, test=200, classes=10)

    def cmd(self, out, *extra):
        return [BIN, "train", "--data-dir", self.data, "--out", out] + SETTINGS + list(extra)

    def popen(self, out, *extra, **kw):
        env = dict(os.environ)
        for k in ("CIFAR100_ARCHIVE", "CIFAR100_DATA_DIR", "CIFAR100_DEVICE", "CIFAR100_THREADS", "CIFAR100_PRECISION"):
            env.pop(k, None)
        return subprocess.Popen(self.cmd(out, *extra), env=env, text=True, stdout=subprocess.PIPE, **kw)

    def train(self, out, *extra):
        """Runs to the end; the result has returncode, stdout, stderr, pid and the window (t0, t1)."""
        t0 = time.time()
        p = self.popen(out, *extra, stderr=subprocess.PIPE)
        try:
            stdout, stderr = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        return types.SimpleNamespace(returncode=p.returncode, stdout=stdout, stderr=stderr, pid=p.pid,
                                     window=(t0, time.time()))

    # -------------------------------------------------------------------------------------------- checks
    def assertClose(self, got, want, what):
        self.assertTrue(math.isfinite(got), f"{what}: {got}")
        self.assertLessEqual(abs(got - want), 1e-6 * abs(want), f"{what}: event {got!r}, expected {want!r}")

    def assertScalars(self, got, want, what):
        self.assertEqual(sorted(got), sorted(want), f"{what}: the tags")
        for tag, v in want.items():
            self.assertClose(got[tag], v, f"{what} {tag}")

    def read_run(self, out, runs):
        """Reads OUT/tensorboard: one file per process in `runs` (in order), each checked for its name, its first
        event and its wall times; returns per file {"epochs": [(step, scalars)], "tests": [...], "images": [...]}."""
        tb = os.path.join(out, "tensorboard")
        names = sorted(os.listdir(tb))
        self.assertEqual(len(names), len(runs), names)
        files = []
        for name, run in zip(names, runs):
            t0, t1 = run.window
            m = NAME.match(name)
            self.assertIsNotNone(m, name)
            self.assertTrue(int(t0) <= int(m.group(1)) <= t1, (name, run.window))
            self.assertEqual(m.group(2), socket.gethostname(), name)
            self.assertEqual(int(m.group(3)), run.pid, name)
            try:
                events = tfevents.read_events(os.path.join(tb, name))
            except tfevents.TFEventsError as e:
                self.fail(f"{name}: {e}")
            self.assertGreater(len(events), 0, name)
            first = events[0]
            self.assertEqual(first.WhichOneof("what"), "file_version", (name, first))
            self.assertEqual(first.file_version, "brain.Event:2")
            self.assertFalse(first.HasField("summary"))
            f = {"name": name, "epochs": [], "tests": [], "images": []}
            last_wall, last_step = 0.0, 0
            for ev in events:
                self.assertTrue(t0 - SLACK <= ev.wall_time <= t1 + SLACK, (name, ev.wall_time, run.window))
                self.assertGreaterEqual(ev.wall_time, last_wall, (name, "wall_time decreases", ev))
                last_wall = ev.wall_time
            for ev in events[1:]:
                self.assertEqual(ev.WhichOneof("what"), "summary", (name, ev))
                self.assertGreater(len(ev.summary.value), 0, (name, ev))
                self.assertGreaterEqual(ev.step, last_step, (name, "step decreases", ev))
                last_step = ev.step
                sc, im = tfevents.scalars(ev), tfevents.images(ev)
                values = ev.summary.value
                self.assertEqual(len(sc) + len(im), len(values), (name, "a value neither scalar nor image", ev))
                self.assertEqual(len(set(v.tag for v in values)), len(values), (name, "a tag twice", ev))
                if sc and any(t.startswith("test/") for t in sc):
                    f["tests"].append((ev.step, sc))
                elif sc:
                    self.assertFalse(f["tests"] or f["images"], (name, "an epoch's scalars after the final test"))
                    f["epochs"].append((ev.step, sc))
                if im:
                    f["images"].append((ev.step, im))
            steps = [s for s, _ in f["epochs"]]
            self.assertEqual(steps, list(range(steps[0], steps[0] + len(steps))) if steps else [], (name, steps))
            files.append(f)
        return files

    def assertMetricsLines(self, metrics):
        for m in metrics:
            self.assertIn("grad_norm", m)
            self.assertTrue(is_number(m["grad_norm"]) and math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0, m)

    def assertEpochs(self, epochs, metrics):
        """The epoch events [(step, scalars)] are metrics.jsonl, line for line."""
        self.assertEqual([s for s, _ in epochs], [m["epoch"] for m in metrics])
        for (step, sc), m in zip(epochs, metrics):
            self.assertScalars(sc, expected_scalars(m), f"epoch {step}")
            self.assertGreater(sc["grad_norm"], 0)
            for k in m:
                if not is_number(m[k]):
                    self.assertNotIn(k, sc)

    def assertFinal(self, f, out, epochs):
        """The final test's scalars and images, in file f."""
        results = read_json(os.path.join(out, "results.json"))
        self.assertEqual(results["epochs_run"], epochs)
        self.assertEqual(len(f["tests"]), 1, f["tests"])
        step, sc = f["tests"][0]
        self.assertEqual(step, epochs)
        self.assertScalars(sc, {"test/loss": results["test_loss"], "test/top1": results["test_top1"],
                                "test/top5": results["test_top5"]}, "test")
        images = {}
        for step, im in f["images"]:
            self.assertEqual(step, epochs)
            for tag, img in im.items():
                self.assertNotIn(tag, images, "an image tag twice")
                images[tag] = img
        self.assertEqual(sorted(images), ["augmented_samples", "confusion"])
        conf = images["confusion"]
        with open(os.path.join(out, "report", "confusion.png"), "rb") as fh:
            self.assertTrue(conf.encoded_image_string == fh.read(), "confusion differs from report/confusion.png")
        self.assertEqual(tfevents.png_size(conf.encoded_image_string), (conf.width, conf.height))
        self.assertEqual(conf.colorspace, 3)
        grid = images["augmented_samples"]
        self.assertEqual(grid.colorspace, 3)
        self.assertEqual(tfevents.png_size(grid.encoded_image_string), (grid.width, grid.height))
        Image.open(io.BytesIO(grid.encoded_image_string)).verify()  # chunk CRCs and structure
        im = Image.open(io.BytesIO(grid.encoded_image_string))
        im.load()
        self.assertEqual(im.mode, "RGB")
        self.assertEqual(im.size, (grid.width, grid.height))
        self.assertGreaterEqual(min(im.size), 32, im.size)  # at least one 32x32 training image
        px = np.asarray(im).reshape(-1, 3)
        self.assertGreater(len(np.unique(px, axis=0)), 1, "a constant image")

    # -------------------------------------------------------------------------------------------- tests
    def test_scalars_and_images_match_the_run(self):
        out = os.path.join(self.tmp, "run")
        r = self.train(out, "--set", "epochs=3")
        self.assertOk(r)
        with open(os.path.join(out, "config.yaml")) as fh:
            self.assertRegex(fh.read(), r"(?m)^tensorboard: true$")  # the default
        metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertEqual([m["epoch"] for m in metrics], [1, 2, 3])
        self.assertIn("val_top1", metrics[0])
        self.assertMetricsLines(metrics)
        (f,) = self.read_run(out, [r])
        self.assertEpochs(f["epochs"], metrics)
        for tag in ("train/loss", "train/acc", "val/loss", "val/top1", "val/top5", "lr", "grad_norm", "epoch_seconds",
                    "train_seconds", "images_per_second"):
            self.assertIn(tag, f["epochs"][0][1])
        self.assertNotIn("ema/top1", f["epochs"][0][1])
        self.assertFinal(f, out, 3)

    def test_ema_scalars(self):
        out = os.path.join(self.tmp, "ema")
        r = self.train(out, "--set", "epochs=2", "--set", "ema_decay=0.9")
        self.assertOk(r)
        metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertMetricsLines(metrics)
        (f,) = self.read_run(out, [r])
        self.assertEpochs(f["epochs"], metrics)
        for m, (_, sc) in zip(metrics, f["epochs"]):
            self.assertIn("selected", m)  # a string: not a scalar
            for k in ("ema/loss", "ema/top1", "ema/top5"):
                self.assertIn(k, sc)
        self.assertFinal(f, out, 2)

    def test_disabled_writes_no_directory(self):
        out = os.path.join(self.tmp, "off")
        r = self.train(out, "--set", "epochs=1", "--set", "train_limit=128", "--set", "tensorboard=false")
        self.assertOk(r)
        self.assertTrue(os.path.exists(os.path.join(out, "results.json")))
        self.assertFalse(os.path.exists(os.path.join(out, "tensorboard")), os.listdir(out))
        with open(os.path.join(out, "config.yaml")) as fh:
            self.assertRegex(fh.read(), r"(?m)^tensorboard: false$")

    def test_sigterm_and_resume_leave_two_files_holding_every_epoch(self):
        out = os.path.join(self.tmp, "term")
        t0 = time.time()
        p = self.popen(out, "--set", "epochs=3", stderr=subprocess.STDOUT)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "progress: epoch 2/3 step 2/" in line:
                p.send_signal(signal.SIGTERM)
                break
        try:
            rest, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        first = types.SimpleNamespace(pid=p.pid, window=(t0, time.time()))
        log = "".join(lines) + rest
        self.assertEqual(p.returncode, 0, log)
        m = re.search(r"stopped by SIGTERM at epoch 2, batch (\d+)/(\d+) \(step \d+\); checkpoint written", log)
        self.assertIsNotNone(m, log)
        self.assertTrue(0 < int(m.group(1)) < int(m.group(2)), m.group(0))  # mid-epoch: epoch 2 is run again
        self.assertFalse(os.path.exists(os.path.join(out, "results.json")))
        # The files sort by the second in their names: the resumed run's must be a later one.
        (name,) = os.listdir(os.path.join(out, "tensorboard"))
        time.sleep(max(0.0, int(NAME.match(name).group(1)) + 1 - time.time()))
        r = self.train(out, "--set", "epochs=3")
        self.assertOk(r)
        self.assertIn("resuming at epoch 2", r.stdout)
        metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
        self.assertEqual([m["epoch"] for m in metrics], [1, 2, 3])
        self.assertMetricsLines(metrics)
        f1, f2 = self.read_run(out, [first, r])
        # The stopped process wrote epoch 1 only (its epoch 2 never finished); the resumed one epochs 2 and 3 and
        # the final test.
        self.assertEqual([s for s, _ in f1["epochs"]], [1])
        self.assertEqual(f1["tests"] + f1["images"], [])
        self.assertEqual([s for s, _ in f2["epochs"]], [2, 3])
        # Per step, the last event across the files (in name order) is metrics.jsonl's line.
        final = {}
        for f in (f1, f2):
            for step, sc in f["epochs"]:
                final[step] = sc
        self.assertEpochs(sorted(final.items()), metrics)
        self.assertFinal(f2, out, 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
