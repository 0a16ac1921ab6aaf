"""The training report page (RUN/report.html, `cifar100 report RUN`) against the run's own files and a real browser.

One small training run on generated data (100 classes, with superclass names) is shared by every test:
- the page is self-contained: well-formed, no script, no stylesheet link, no URL but data: URIs and fragments, and
  every data: image decodes (the confusion matrix and augmented samples byte for byte the run's PNGs, each gallery
  image the test image it names, pixel for pixel from test.bin);
- every figure equals its source: the summary equals results.json and report/metrics.json, each curve equals its
  metrics.jsonl column (and is drawn where the axes put it), the per-class bars and the best/worst tables equal
  per_class, the superclass table equals an independent computation from the confusion matrix and fine_to_coarse
  (and its image-weighted mean is coarse_top1), the calibration bars equal calibration_bins, the gallery equals
  gallery.json and, through tools/reference/wrn.py running the model artifact on test.bin, the real predictions
  (top-3 classes and probabilities, and the mistakes are the most confident wrong ones), the config is config.yaml;
- Debian's headless chromium renders it (DOM dump with every section; a 1100x5000 screenshot that is not blank and
  holds the chart colours) and, in a copy of the page whose only change is an outline of a unique colour around
  each element (outlines take no layout space), each element's own region holds what it shows: the curves in their
  plot areas, each per-class and calibration bar at its height, the confusion matrix and augmented samples pixel
  for pixel (or magnified by a whole factor: pixelated scaling by any other drops rows and columns of their
  text), every gallery image pixel for pixel at 96x96, text in the tables and the config;
- `cifar100 report RUN --out X` writes the page training wrote, byte for byte; a directory without results.json
  fails naming it; missing optional files (gallery.json, or all of them) give a page that says so and renders;
  class and superclass names and config text with markup characters come out escaped; a run without superclass
  labels (model config without them, coarse_top1 null in report/metrics.json) gets a page without that table.

UPDATE_DOCS=1 also writes docs/report.png (the summary and the curves, 1100 px wide) from this run, or from the
finished run directory REPORT_DOCS_RUN when set (a real-data run); otherwise nothing is written to the source tree."""
import base64
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(__file__))
from harness import SOURCE, TempDirTest, read_json, read_jsonl, run  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SETTINGS = ["--set", "depth=10", "--set", "width=1", "--set", "epochs=3", "--set", "warmup_epochs=1",
            "--set", "val_size=200", "--set", "log_interval=0", "--set", "ema_decay=0.9", "--set", "threads=2"]
SECTIONS = ["summary", "curves", "confusion", "per-class", "superclass", "calibration", "gallery", "augmented",
            "hardware", "config"]
# The learning-curve charts: (legend name, metrics.jsonl key) per series, in legend order.
CURVES = {
    "chart-loss": [("train", "train_loss"), ("validation", "val_loss"), ("ema", "ema_loss")],
    "chart-top1": [("train", "train_acc"), ("validation", "val_top1"), ("ema", "ema_top1")],
    "chart-lr": [("lr", "lr")],
    "chart-speed": [("images/s", "images_per_second")],
}
# Colours the page draws with: the series, the per-class bars (#457b9d) and the calibration bars (#e76f51 at
# opacity .85 over the plot's #fbfcfd).
NAVY, ORANGE, TEAL, PURPLE, STEEL = (29, 53, 87), (231, 111, 81), (42, 157, 143), (106, 76, 147), (69, 123, 157)
BIN_COLOUR = tuple(round(0.85 * c + 0.15 * b) for c, b in zip(ORANGE, (251, 252, 253)))
URL_ATTRS = {"src", "href", "xlink:href", "srcset", "poster", "action", "formaction", "background", "data", "ping",
             "cite", "longdesc", "manifest", "codebase"}
RECORD = 3074  # CIFAR-100 binary record: coarse label, fine label, 3x32x32 pixels (planar)


# ---- HTML tree -------------------------------------------------------------------------------------------------
class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def all(self, tag=None, cls=None, **attrs):
        out = []
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            if cls and cls not in n.attrs.get("class", "").split():
                continue
            if any(n.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            out.append(n)
        return out

    def by_id(self, i):
        found = [n for n in self.iter() if n.attrs.get("id") == i]
        return found[0] if found else None

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class TreeBuilder(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.stack = [self.root]
        self.errors = []
        self.duplicate_attrs = []

    def _node(self, tag, attrs):
        names = [k for k, _ in attrs]
        if len(names) != len(set(names)):
            self.duplicate_attrs.append((tag, names))
        n = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(n)
        return n

    def handle_starttag(self, tag, attrs):
        n = self._node(tag, attrs)
        if tag not in self.VOID:
            self.stack.append(n)

    def handle_startendtag(self, tag, attrs):
        self._node(tag, attrs)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if self.stack[-1].tag != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1].tag}> at {self.getpos()}")
            while len(self.stack) > 1 and self.stack[-1].tag != tag:
                self.stack.pop()
        if len(self.stack) > 1:
            self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html):
    p = TreeBuilder()
    p.feed(html)
    p.close()
    if len(p.stack) > 1:
        p.errors.append("unclosed: " + " > ".join(n.tag for n in p.stack[1:]))
    return p.root, p.errors + [f"duplicate attributes {d}" for d in p.duplicate_attrs]


def floats(s):
    return [float(v) for v in s.split()]


def decode_data_uri(uri):
    head, _, payload = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:60]
    return head[5:-7], base64.b64decode(payload, validate=True)


def png_array(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    return np.asarray(im.convert("RGB")).astype(np.int16)


# ---- the browser -----------------------------------------------------------------------------------------------
def chromium(html_path, screenshot=None, size=(1100, 5000), dump=True):
    """Render a file in headless chromium: the DOM after load (when dump) and a screenshot of the window."""
    profile = tempfile.mkdtemp(prefix="cifar100-chromium-")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
           "--force-device-scale-factor=1"]
    if screenshot:
        cmd.append(f"--screenshot={screenshot}")
    if dump:
        cmd.append("--dump-dom")
    try:
        r = subprocess.run(cmd + ["file://" + os.path.abspath(html_path)], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert r.returncode == 0, f"chromium exited {r.returncode}: {r.stderr[-2000:]}"
    if screenshot:
        assert os.path.exists(screenshot), f"chromium wrote no screenshot: {r.stderr[-2000:]}"
    return r.stdout


def outline_colour(k):
    return (255, 0, 60 + 5 * k)  # colours no chart uses; fake images would need 30 such pixels in a row


def find_outline(shot, colour):
    """The box (x0, y0, x1, y1), exclusive, inside a 3-px outline of one colour, or None."""
    m = (shot == np.array(colour, dtype=shot.dtype)).all(2)
    rows = np.nonzero(m.sum(1) >= 30)[0]
    cols = np.nonzero(m.sum(0) >= 30)[0]
    if not len(rows) or not len(cols):
        return None
    x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
    # A frame: the four edges are the outline colour from end to end (but the corners, round with border-radius).
    cx, cy = min(12, (x1 - x0) // 4), min(12, (y1 - y0) // 4)
    edges = (m[y0, x0 + cx:x1 - cx], m[y1 - 1, x0 + cx:x1 - cx], m[y0 + cy:y1 - cy, x0], m[y0 + cy:y1 - cy, x1 - 1])
    for edge in edges:
        if edge.mean() < 0.95:
            return None
    return x0 + 3, y0 + 3, x1 - 3, y1 - 3


def packed(region):
    """One int per pixel (0xRRGGBB), for counting colours fast."""
    r = region.astype(np.int32)
    return (r[..., 0] << 16) | (r[..., 1] << 8) | r[..., 2]


def near(region, colour, tol):
    return (np.abs(region - np.array(colour, dtype=region.dtype)) <= tol).all(2)


def plot_rect(svg):
    """x, y, width, height of a chart's plot area (its rect.plot), in SVG units."""
    r = svg.all("rect", cls="plot")
    assert len(r) == 1, f"#{svg.attrs.get('id')}: {len(r)} rect.plot"
    return tuple(float(r[0].attrs[k]) for k in ("x", "y", "width", "height"))


def view_width(svg):
    return float(svg.attrs["viewbox"].split()[2])


def hex_rgb(s):
    s = s.lstrip("#")
    return tuple(int(s[i:i + 2], 16) for i in (0, 2, 4))


# ---- the reference model -----------------------------------------------------------------------------------------
def reference_probabilities(model_dir, images_chw, bf16=False):
    """Class probabilities of the model artifact on uint8 CHW images, from the PyTorch twin of the network (with
    bf16 autocast when `bf16`)."""
    import torch
    sys.path.insert(0, os.path.join(SOURCE, "tools", "reference"))
    from wrn import WideResNet
    torch.set_num_threads(2)
    cfg = read_json(os.path.join(model_dir, "config.json"))
    net = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
    net.load_state_dict(torch.load(os.path.join(model_dir, "model.pt"), weights_only=True), strict=True)
    net.eval()
    x = torch.from_numpy(images_chw.astype(np.float32) / 255.0)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net((x - mean) / std)
    return torch.softmax(logits.double(), 1).numpy()


def probability_tolerance(model_dir, images_chw, precision):
    """How far the run's probabilities may lie from the float32 reference: float32 rounding (1e-5) for an fp32
    run; for a bf16 run, twice PyTorch's own bf16 error on the same images (its bf16 probabilities against its
    float32 ones), measured here, since bf16 kernels differ between libraries and CPUs."""
    if precision == "fp32":
        return 1e-5
    assert precision == "bf16", precision
    own = np.abs(reference_probabilities(model_dir, images_chw, bf16=True) -
                 reference_probabilities(model_dir, images_chw)).max()
    print(f"report: the run used bf16; PyTorch's own bf16 probability error {own:.2e}", file=sys.stderr)
    return max(1e-5, 2 * own)


class Report(TempDirTest):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.shared = tempfile.mkdtemp(prefix="cifar100-report-")
        t = TempDirTest()
        t.tmp = cls.shared
        cls.data = t.fake_data(train=2000, test=500, classes=100)  # make_fake_cifar names 20 superclasses
        cls.out = os.path.join(cls.shared, "run")
        r = run(["train", "--data-dir", cls.data, "--out", cls.out] + SETTINGS)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(os.path.join(cls.out, "report.html"), "rb") as f:
            cls.html_bytes = f.read()
        cls.html = cls.html_bytes.decode("utf-8")
        cls.results = read_json(os.path.join(cls.out, "results.json"))
        cls.metrics = read_json(os.path.join(cls.out, "report", "metrics.json"))
        cls.gallery = read_json(os.path.join(cls.out, "report", "gallery.json"))
        cls.model_cfg = read_json(os.path.join(cls.out, "model", "config.json"))
        cls.epochs = read_jsonl(os.path.join(cls.out, "metrics.jsonl"))
        raw = np.fromfile(os.path.join(cls.data, "test.bin"), dtype=np.uint8).reshape(-1, RECORD)
        cls.test_labels = raw[:, 1].astype(np.int64)
        cls.test_images = raw[:, 2:].reshape(-1, 3, 32, 32)
        print(f"\nreport: trained in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.shared, ignore_errors=True)

    def page(self, html=None):
        root, errors = parse(self.html if html is None else html)
        self.assertEqual(errors, [], "the page is not well-formed")
        return root

    def section(self, root, name):
        s = root.by_id(name)
        self.assertIsNotNone(s, f"no #{name}")
        self.assertEqual(s.tag, "section")
        return s

    def assertClose(self, shown, expected, rel, msg=None):
        self.assertTrue(math.isclose(float(shown), expected, rel_tol=rel, abs_tol=1e-12),
                        f"{shown} != {expected!r} (relative tolerance {rel:g}) {msg or ''}")

    def assertSelfContained(self, html):
        root = self.page(html)
        self.assertNotIn("<script", html.lower())
        for tag in ("script", "link", "iframe", "frame", "object", "embed", "base", "audio", "video", "source"):
            self.assertEqual(root.all(tag), [], f"<{tag}> in the page")
        for meta in root.all("meta"):
            self.assertNotEqual(meta.attrs.get("http-equiv", "").lower(), "refresh")
        ids = [n.attrs["id"] for n in root.iter() if "id" in n.attrs]
        self.assertEqual(len(ids), len(set(ids)), "duplicate ids")
        for n in root.iter():
            for k, v in n.attrs.items():
                if k in URL_ATTRS:
                    self.assertTrue(v.startswith("data:") or v.startswith("#"), f"<{n.tag} {k}={v[:80]!r}>")
                self.assertFalse(k.startswith("on"), f"event handler {k} on <{n.tag}>")
                if k == "style":
                    self.assertNotIn("url(", v.replace(" ", "").lower())
        for style in root.all("style"):
            css = style.text().lower()
            self.assertNotIn("@import", css)
            self.assertNotIn("url(", css)
        images = 0
        for n in root.iter():
            if "src" in n.attrs:
                mime, data = decode_data_uri(n.attrs["src"])
                im = Image.open(io.BytesIO(data))
                im.load()
                self.assertEqual(mime, Image.MIME[im.format])
                self.assertGreater(im.size[0] * im.size[1], 0)
                images += 1
        return root, images

    # ---- 1. self-contained -----------------------------------------------------------------------------------
    def test_page_is_self_contained(self):
        root, images = self.assertSelfContained(self.html)
        items = self.gallery["items"]
        self.assertEqual(images, 2 + len(items))  # confusion, augmented, one per gallery item
        self.assertTrue(self.html.startswith("<!DOCTYPE html>\n"))
        self.assertEqual([s.attrs["id"] for s in root.all("section")], SECTIONS)
        # The PNGs are the run's, byte for byte; each gallery image is the test image it names.
        for img_id, f in (("confusion-img", "confusion.png"), ("augmented-img", "augmented_samples.png")):
            with open(os.path.join(self.out, "report", f), "rb") as fh:
                self.assertEqual(decode_data_uri(root.by_id(img_id).attrs["src"])[1], fh.read(), f)
        for fig in root.all("figure", cls="sample"):
            i = int(fig.attrs["data-index"])
            got = png_array(decode_data_uri(fig.all("img")[0].attrs["src"])[1])
            self.assertTrue(np.array_equal(got, self.test_images[i].transpose(1, 2, 0)), f"gallery image {i}")

    # ---- 2. figures against the run's files --------------------------------------------------------------------
    def test_figures_equal_the_run_files(self):
        root = self.page()
        res, met = self.results, self.metrics
        with self.subTest("summary"):
            expected = {"test-top1": res["test_top1"], "test-top5": res["test_top5"], "test-loss": res["test_loss"],
                        "coarse-top1": met["coarse_top1"], "ece": met["ece"], "best-val-top1": res["best_val_top1"],
                        "epochs-run": res["epochs_run"], "wall-seconds": res["wall_seconds"]}
            dds = self.section(root, "summary").all("dd")
            self.assertEqual(sorted(d.attrs["id"] for d in dds), sorted(expected))
            for d in dds:
                self.assertClose(d.attrs["data-value"], expected[d.attrs["id"]], 1e-9, d.attrs["id"])
            shown = {d.attrs["id"]: d.text() for d in dds}
            self.assertEqual(shown["test-top1"], f"{100 * res['test_top1']:.2f}%")
            self.assertEqual(shown["test-loss"], f"{res['test_loss']:.4f}")
            self.assertEqual(shown["ece"], f"{met['ece']:.4f}")
            self.assertEqual(shown["epochs-run"], str(res["epochs_run"]))
            self.assertEqual(shown["wall-seconds"], f"{res['wall_seconds']:.0f} s")
            self.assertEqual(res["epochs_run"], len(self.epochs))
            self.assertIn(f"{res['test_images']} images tested with the best weights (epoch {res['best_epoch']})",
                          self.section(root, "summary").text())
            self.assertIn(res["model"], root.all("h1")[0].text())

        with self.subTest("curves"):
            for chart, series in CURVES.items():
                svg = root.by_id(chart)
                self.assertIsNotNone(svg, chart)
                lines = svg.all("polyline", cls="series")
                self.assertEqual([l.attrs["data-series"] for l in lines], [n for n, _ in series], chart)
                values_of = {}
                for line, (name, key) in zip(lines, series):
                    column = [e[key] for e in self.epochs]
                    self.assertEqual(len(column), 3)
                    self.assertEqual(int(line.attrs["data-points"]), len(column))
                    vals = floats(line.attrs["data-values"])
                    self.assertEqual(len(vals), len(column), f"{chart} {name}")
                    for v, c in zip(vals, column):
                        self.assertClose(v, c, 5e-6, f"{chart} {name}")  # 6 significant digits
                    values_of[name] = column
                # The points are where the axes put the values: x from the first epoch at the plot's left edge to
                # the last at its right edge; y one linear map for every series, larger values higher, all of them
                # inside the plot and spread over most of its height.
                px0, py0, pw, ph = plot_rect(svg)
                xs = [e["epoch"] for e in self.epochs]
                pts = {}
                for line, (name, _) in zip(lines, series):
                    pts[name] = [tuple(map(float, p.split(","))) for p in line.attrs["points"].split()]
                    self.assertEqual(len(pts[name]), len(xs))
                    for (px, _), x in zip(pts[name], xs):
                        self.assertAlmostEqual(px, px0 + (x - xs[0]) / (xs[-1] - xs[0]) * pw, delta=0.051, msg=chart)
                every = [(v, py) for name in values_of for v, (_, py) in zip(values_of[name], pts[name])]
                (vmin, ymin), (vmax, ymax) = min(every), max(every)
                self.assertLess(ymax, ymin, f"{chart}: the largest value is not drawn highest")
                self.assertTrue(py0 <= ymax and ymin <= py0 + ph, f"{chart}: points outside the plot")
                self.assertGreater((ymin - ymax) / ph, 0.8, f"{chart}: the values span little of the plot")
                for v, py in every:
                    self.assertAlmostEqual(py, ymin + (v - vmin) / (vmax - vmin) * (ymax - ymin), delta=0.11, msg=chart)
                self.assertEqual(len(svg.all("circle")), sum(len(c) for c in values_of.values()))  # markers

        with self.subTest("confusion"):
            self.assertIsNotNone(self.section(root, "confusion").by_id("confusion-img"))

        per_class = met["per_class"]
        acc_of = {c["name"]: c["accuracy"] for c in per_class}
        with self.subTest("per-class"):
            self.assertEqual(len(per_class), 100)
            self.assertEqual([c["name"] for c in per_class], self.model_cfg["class_names"])
            bars = root.by_id("chart-per-class").all("rect", cls="bar")
            self.assertEqual(len(bars), 100)
            self.assertEqual(sorted(b.attrs["data-class"] for b in bars), sorted(acc_of))
            accs = [float(b.attrs["data-accuracy"]) for b in bars]
            self.assertEqual(accs, sorted(accs, reverse=True), "bars not sorted best first")
            # Drawn to scale: the grid's 0% and 100% lines frame the bars, one slot each, heights proportional.
            grid = root.by_id("chart-per-class").all("line", cls="grid")
            top = min(float(l.attrs["y1"]) for l in grid)
            base = max(float(l.attrs["y1"]) for l in grid)
            left, right = float(grid[0].attrs["x1"]), float(grid[0].attrs["x2"])
            slot = (right - left) / len(bars)
            for i, b in enumerate(bars):
                a = acc_of[b.attrs["data-class"]]
                self.assertClose(b.attrs["data-accuracy"], a, 5e-6, b.attrs["data-class"])
                self.assertAlmostEqual(float(b.attrs["height"]), a * (base - top), delta=0.006)
                self.assertAlmostEqual(float(b.attrs["y"]) + float(b.attrs["height"]), base, delta=0.011)
                self.assertAlmostEqual(float(b.attrs["x"]), left + slot * i, delta=0.006)
                self.assertTrue(0 < float(b.attrs["width"]) <= slot)
            desc = sorted((c["accuracy"] for c in per_class), reverse=True)
            for table, want in (("best-classes", desc[:10]), ("worst-classes", desc[::-1][:10])):
                rows = [r for r in root.by_id(table).all("tr") if "data-class" in r.attrs]
                self.assertEqual(len(rows), 10, table)
                self.assertEqual(len({r.attrs["data-class"] for r in rows}), 10, table)
                for r, w in zip(rows, want):
                    self.assertClose(r.attrs["data-accuracy"], acc_of[r.attrs["data-class"]], 5e-6, table)
                    self.assertClose(r.attrs["data-accuracy"], w, 5e-6, f"{table}: not the top/bottom 10")
                    name = r.attrs["data-class"]
                    images = {c["name"]: c["images"] for c in per_class}[name]
                    self.assertEqual([td.text() for td in r.all("td")],
                                     [name, f"{100 * acc_of[name]:.2f}%", str(images)])

        with self.subTest("superclass"):
            f2c = self.model_cfg["fine_to_coarse"]
            names = self.model_cfg["coarse_class_names"]
            self.assertEqual(len(names), 20)
            cm = met["confusion_matrix"]
            total, hit = [0] * len(names), [0] * len(names)
            for t, row in enumerate(cm):
                for p, n in enumerate(row):
                    total[f2c[t]] += n
                    hit[f2c[t]] += n if f2c[t] == f2c[p] else 0
            want = {names[s]: (hit[s] / total[s] if total[s] else 0.0, total[s]) for s in range(len(names))}
            table = self.section(root, "superclass").by_id("superclass-table")
            self.assertIsNotNone(table, "no superclass table although model/config.json names the superclasses: "
                                        + self.section(root, "superclass").text())
            rows = [r for r in table.all("tr") if "data-superclass" in r.attrs]
            self.assertEqual(sorted(r.attrs["data-superclass"] for r in rows), sorted(names))
            accs = [float(r.attrs["data-accuracy"]) for r in rows]
            self.assertEqual(accs, sorted(accs, reverse=True))
            for r in rows:
                a, n = want[r.attrs["data-superclass"]]
                self.assertClose(r.attrs["data-accuracy"], a, 5e-6, r.attrs["data-superclass"])
                self.assertEqual(int(r.attrs["data-images"]), n)
            images = [int(r.attrs["data-images"]) for r in rows]
            self.assertEqual(sum(images), met["images"])
            weighted = sum(a * n for a, n in zip(accs, images)) / sum(images)
            self.assertAlmostEqual(weighted, met["coarse_top1"], delta=1e-5)

        with self.subTest("calibration"):
            bins = root.by_id("chart-calibration").all("rect", cls="bin")
            src = met["calibration_bins"]
            self.assertEqual(len(bins), len(src))
            self.assertEqual(sum(b["images"] for b in src), met["images"])
            left, top, side, height = plot_rect(root.by_id("chart-calibration"))
            self.assertEqual(side, height)
            base = top + side
            for r, b in zip(bins, src):
                for k in ("lower", "upper", "accuracy", "confidence"):
                    self.assertClose(r.attrs[f"data-{k}"], b[k], 5e-6, k)
                self.assertEqual(int(r.attrs["data-images"]), b["images"])
                self.assertAlmostEqual(float(r.attrs["height"]), b["accuracy"] * side, delta=0.006)
                self.assertAlmostEqual(float(r.attrs["y"]), base - b["accuracy"] * side, delta=0.006)
                self.assertAlmostEqual(float(r.attrs["x"]), left + b["lower"] * side, delta=0.006)
            self.assertIn(f"ECE {met['ece']:.4f}", root.by_id("chart-calibration").text())

        with self.subTest("gallery"):
            self.check_gallery(root)

        with self.subTest("augmented"):
            self.assertIsNotNone(self.section(root, "augmented").by_id("augmented-img"))

        with self.subTest("hardware"):
            cells = {tr.all("th")[0].text(): tr.all("td")[0].text() for tr in root.by_id("hardware-table").all("tr")}
            for k, v in res["hardware"].items():
                self.assertEqual(cells[k], v if isinstance(v, str) else json.dumps(v))
            self.assertEqual(cells["runtime"], res["runtime"])
            self.assertEqual(cells["parameters"], str(res["parameters"]))

        with self.subTest("config"):
            with open(os.path.join(self.out, "config.yaml"), encoding="utf-8") as f:
                self.assertEqual(root.by_id("config-yaml").text(), f.read())

    def check_gallery(self, root):
        items = self.gallery["items"]
        names = self.model_cfg["class_names"]
        first = [it for it in items if it["kind"] == "first"]
        mistakes = [it for it in items if it["kind"] == "mistake"]
        self.assertEqual(self.gallery["images"], len(self.test_labels))
        self.assertEqual([it["index"] for it in first], list(range(24)))
        wrong = sum(n for t, row in enumerate(self.metrics["confusion_matrix"]) for p, n in enumerate(row) if p != t)
        self.assertEqual(len(mistakes), min(12, wrong))
        # gallery.json against the data and the model's real predictions.
        model = os.path.join(self.out, "model")
        probs = reference_probabilities(model, self.test_images)
        # The gallery holds the final test's probabilities, at the precision the run used.
        tol = probability_tolerance(model, self.test_images, self.results["precision"])
        ref_top = np.argsort(-probs, 1, kind="stable")[:, :3]
        top2 = -np.sort(-probs, 1)[:, :2]
        # Images whose two best classes lie within rounding of each other: there the run's class may differ.
        near_tie = top2[:, 0] - top2[:, 1] <= 2 * tol
        for it in items:
            i = it["index"]
            self.assertEqual(it["label"], int(self.test_labels[i]))
            self.assertEqual(it["label_name"], names[it["label"]])
            self.assertEqual(it["correct"], it["top3"][0]["class"] == it["label"])
            self.assertEqual([t["name"] for t in it["top3"]], [names[t["class"]] for t in it["top3"]])
            for j, t in enumerate(it["top3"]):
                # Rank j holds the j-th largest probability, and that is the probability of its class.
                self.assertAlmostEqual(t["probability"], probs[i, ref_top[i, j]], delta=tol, msg=f"image {i} rank {j}")
                self.assertAlmostEqual(t["probability"], probs[i, t["class"]], delta=tol, msg=f"image {i} rank {j}")
        ref_wrong = probs.argmax(1) != self.test_labels
        self.assertLessEqual(abs(int(ref_wrong.sum()) - wrong), max(1, int(near_tie.sum())))
        tops = [it["top3"][0]["probability"] for it in mistakes]
        self.assertEqual(tops, sorted(tops, reverse=True), "mistakes not sorted by decreasing confidence")
        shown = {it["index"] for it in mistakes}
        for it in mistakes:
            self.assertFalse(it["correct"])
            i = it["index"]
            self.assertTrue(ref_wrong[i] or probs[i].max() - probs[i, it["label"]] <= 2 * tol,
                            f"image {i} is not a mistake")
        # The reference's other mistakes (those within rounding of being right may be right in the run).
        others = [probs[i].max() for i in np.nonzero(ref_wrong)[0] if i not in shown and not near_tie[i]]
        if others and mistakes:
            self.assertGreaterEqual(min(probs[i].max() for i in shown) + 2 * tol, max(others),
                                    "a more confident mistake is left out")
        # The page against gallery.json.
        for kind, want in (("first", first), ("mistake", mistakes)):
            div = root.by_id(f"gallery-{kind}")
            self.assertIsNotNone(div, kind)
            figs = div.all("figure", cls="sample")
            self.assertEqual(len(figs), len(want), kind)
            for fig, it in zip(figs, want):
                a = fig.attrs
                self.assertEqual(int(a["data-index"]), it["index"])
                self.assertEqual(a["data-label"], it["label_name"])
                self.assertEqual(a["data-pred"], it["top3"][0]["name"])
                self.assertEqual(a["data-correct"], "true" if it["correct"] else "false")
                self.assertEqual(a["data-kind"], kind)
                self.assertEqual("mistake" in a["class"].split(), not it["correct"])
                self.assertEqual(fig.all("img")[0].attrs["src"], "data:image/png;base64," + it["png_base64"])
                lis = fig.all("li")
                self.assertEqual([li.attrs["data-class"] for li in lis], [t["name"] for t in it["top3"]])
                for li, t in zip(lis, it["top3"]):
                    self.assertClose(li.attrs["data-prob"], t["probability"], 5e-6)
                    self.assertIn(f"{100 * t['probability']:.2f}%", li.text())
                self.assertIn(it["label_name"], fig.all("figcaption")[0].text())

    # ---- 3. a real browser -----------------------------------------------------------------------------------
    def test_renders_in_chromium(self):
        self.assertIsNotNone(CHROMIUM, "chromium is not installed (scripts/setup-debian.sh installs it)")
        t0 = time.monotonic()
        page = os.path.join(self.tmp, "elsewhere", "report.html")  # away from the run: nothing is fetched
        os.makedirs(os.path.dirname(page))
        with open(page, "w", encoding="utf-8") as f:
            f.write(self.html)
        shot_path = os.path.join(self.tmp, "shot.png")
        dom = chromium(page, shot_path, (1100, 5000))
        droot, _ = parse(dom)
        src = self.page()
        for s in SECTIONS:
            self.assertIsNotNone(droot.by_id(s), f"#{s} not in the rendered DOM")
        self.assertEqual(droot.all("script"), [])
        # The browser built the same elements the page holds.
        for tag, cls in (("polyline", "series"), ("rect", "bar"), ("rect", "bin"), ("figure", "sample"),
                         ("img", None), ("section", None), ("li", None), ("dd", None)):
            self.assertEqual(len(droot.all(tag, cls)), len(src.all(tag, cls)), f"{tag}.{cls}")
        self.assertEqual(droot.by_id("config-yaml").text(), src.by_id("config-yaml").text())

        shot = np.asarray(Image.open(shot_path).convert("RGB")).astype(np.int16)
        self.assertEqual(shot.shape, (5000, 1100, 3))
        colours = np.unique(packed(shot))
        self.assertGreater(len(colours), 1000, "the screenshot is (nearly) blank")
        for name, c, tol in (("navy", NAVY, 0), ("orange", ORANGE, 0), ("teal", TEAL, 0), ("purple", PURPLE, 0),
                             ("steel", STEEL, 0), ("calibration", BIN_COLOUR, 2)):
            self.assertGreater(int(near(shot, c, tol).sum()), 50, f"no {name} {c} pixels in the screenshot")

        # Each element's own region, from a copy whose only change is outlines (no layout change).
        probes = ["summary", "curves", "chart-loss", "chart-top1", "chart-lr", "chart-speed", "confusion-img",
                  "chart-per-class", "best-classes", "worst-classes", "superclass-table", "chart-calibration",
                  "gallery-first", "gallery-mistake", "augmented-img", "hardware-table", "config-yaml"]
        css = "".join("#%s{outline:3px solid rgb(%d,%d,%d)!important;outline-offset:0!important}"
                      % ((p,) + outline_colour(k)) for k, p in enumerate(probes))
        probe_page = os.path.join(self.tmp, "elsewhere", "probe.html")
        with open(probe_page, "w", encoding="utf-8") as f:
            f.write(self.html.replace("</head>", f"<style>{css}</style></head>", 1))
        probe_path = os.path.join(self.tmp, "probe.png")
        chromium(probe_page, probe_path, (1100, 8000), dump=False)
        probe = np.asarray(Image.open(probe_path).convert("RGB")).astype(np.int16)
        boxes = {}
        for k, p in enumerate(probes):
            with self.subTest(element=p):
                box = find_outline(probe, outline_colour(k))
                self.assertIsNotNone(box, f"#{p} is not drawn (no outline found)")
                boxes[p] = box
                self.check_region(p, probe[box[1]:box[3], box[0]:box[2]], src)
        self.assertEqual(sorted(boxes), sorted(probes), "elements not drawn")
        self.assertTrue(boxes["curves"][1] < boxes["chart-loss"][1] < boxes["chart-lr"][1] < boxes["confusion-img"][1])
        # Outlines take no space: the probe is the page itself but for the outlines' frames (and the rounded
        # corners just inside them), so the regions found there are the page's.
        frames = np.zeros(shot.shape[:2], bool)
        for x0, y0, x1, y1 in boxes.values():
            f = np.zeros_like(frames)
            f[max(y0 - 3, 0):y1 + 3, max(x0 - 3, 0):x1 + 3] = True
            f[y0 + 8:y1 - 8, x0 + 8:x1 - 8] = False
            frames |= f
        changed = (shot != probe[:shot.shape[0]]).any(2) & ~frames
        self.assertEqual(int(changed.sum()), 0, "the probe page lays out differently from the page")
        print(f"\nreport: chromium checks in {time.monotonic() - t0:.1f} s", file=sys.stderr)

        if os.environ.get("UPDATE_DOCS") == "1":
            self.write_docs_screenshot(shot, boxes["curves"])

    def check_region(self, name, reg, src):
        """What one element's region of the screenshot must show."""
        h, w, _ = reg.shape
        self.assertGreater(h * w, 0, name)
        values, counts = np.unique(packed(reg), return_counts=True)
        v = int(values[counts.argmax()])
        background = np.array([v >> 16, (v >> 8) & 255, v & 255], dtype=reg.dtype)
        ink = int((np.abs(reg - background).sum(2) > 60).sum())
        self.assertGreater(ink, 200, f"#{name} is empty")
        el = src.by_id(name)
        if name in CURVES:
            s = w / view_width(el)
            x, y, pw, ph = (v * s for v in plot_rect(el))
            plot = reg[int(y) + 2:int(y + ph) - 1, int(x) + 2:int(x + pw) - 1]
            for line in el.all("polyline", cls="series"):
                c = hex_rgb(line.attrs["stroke"])
                cols = near(plot, c, 30).any(0)
                # Drawn as a line from the first epoch to the last, not only the markers and the legend.
                self.assertGreater(cols.mean(), 0.75, f"#{name} {line.attrs['data-series']}: {cols.mean():.2f} of the "
                                                     "plot's columns show the line")
        elif name == "chart-per-class":
            s = w / view_width(el)
            mask = near(reg, STEEL, 0)
            for i, b in enumerate(el.all("rect", cls="bar")):
                x = int((float(b.attrs["x"]) + float(b.attrs["width"]) / 2) * s)
                drawn = int(mask[:, x].sum())
                self.assertAlmostEqual(drawn, float(b.attrs["height"]) * s, delta=2.5,
                                       msg=f"bar {i} ({b.attrs['data-class']})")
        elif name == "chart-calibration":
            s = w / view_width(el)
            mask = near(reg, BIN_COLOUR, 3)
            for b in el.all("rect", cls="bin"):
                lo, hi = float(b.attrs["data-lower"]), float(b.attrs["data-upper"])
                x = int((float(b.attrs["x"]) + float(b.attrs["width"]) / 2) * s)
                drawn = int(mask[:, x].sum())
                self.assertAlmostEqual(drawn, float(b.attrs["height"]) * s, delta=3.5, msg=f"bin {lo:.2f}-{hi:.2f}")
        elif name in ("confusion-img", "augmented-img"):
            png = png_array(decode_data_uri(el.attrs["src"])[1])
            shown = reg[1:-1, 1:-1] if name == "confusion-img" else reg  # inside the 1-px border
            # Shown pixel for pixel, or magnified by a whole factor: image-rendering:pixelated at any other scale
            # drops or doubles rows and columns of pixels, and the matrix's text labels become unreadable.
            (sh, sw), (ph, pw) = shown.shape[:2], png.shape[:2]
            k = sw // pw
            self.assertTrue(k >= 1 and sw == k * pw and sh == k * ph,
                            f"#{name} is shown at {sw}x{sh} px from a {pw}x{ph} PNG (pixelated, scale {sw / pw:.3f})")
            self.assertTrue(np.array_equal(shown, png.repeat(k, 0).repeat(k, 1)), f"#{name} is not its PNG")
        elif name in ("gallery-first", "gallery-mistake"):
            figs = el.all("figure", cls="sample")
            for fig in figs:  # every image, pixel for pixel, 3x nearest-neighbour at 96x96
                up = png_array(decode_data_uri(fig.all("img")[0].attrs["src"])[1]).repeat(3, 0).repeat(3, 1)
                ys, xs = np.nonzero((reg == up[0, 0]).all(2))
                found = any(y + 96 <= h and x + 96 <= w and np.array_equal(reg[y:y + 96, x:x + 96], up)
                            for y, x in zip(ys, xs))
                self.assertTrue(found, f"{name}: test image {fig.attrs['data-index']} is not shown at 96x96")

    def write_docs_screenshot(self, shot, curves_box):
        docs_run = os.environ.get("REPORT_DOCS_RUN")
        if docs_run:  # a finished real-data run: render its page the same way
            page = os.path.join(docs_run, "report.html")
            shot_path = os.path.join(self.tmp, "docs-shot.png")
            chromium(page, shot_path, (1100, 5000), dump=False)
            shot = np.asarray(Image.open(shot_path).convert("RGB")).astype(np.int16)
            probe_page = os.path.join(self.tmp, "docs-probe.html")
            with open(page, encoding="utf-8") as f, open(probe_page, "w", encoding="utf-8") as g:
                g.write(f.read().replace("</head>", "<style>#curves{outline:3px solid rgb(255,0,60)!important}</style>"
                                         "</head>", 1))
            probe_path = os.path.join(self.tmp, "docs-probe.png")
            chromium(probe_page, probe_path, (1100, 5000), dump=False)
            curves_box = find_outline(np.asarray(Image.open(probe_path).convert("RGB")).astype(np.int16), (255, 0, 60))
            self.assertIsNotNone(curves_box, page)
        bottom = min(curves_box[3] + 16, shot.shape[0])  # the summary and the curves, with the section's margin
        path = os.path.join(SOURCE, "docs", "report.png")
        Image.fromarray(shot[:bottom].astype(np.uint8)).save(path, optimize=True)
        print(f"\nreport: wrote {path} (1100x{bottom})", file=sys.stderr)

    # ---- 4. `cifar100 report` --------------------------------------------------------------------------------
    def copy_run(self, name):
        d = os.path.join(self.tmp, name)
        shutil.copytree(self.out, d,
                        ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.pt", "*.safetensors"))
        return d

    def report(self, run_dir, out=None):
        r = run(["report", run_dir] + (["--out", out] if out else []))
        return r

    def test_report_command(self):
        # The same page as training wrote, byte for byte, with --out and by default.
        x = os.path.join(self.tmp, "x.html")
        r = self.report(self.out, x)
        self.assertOk(r)
        with open(x, "rb") as f:
            self.assertEqual(f.read(), self.html_bytes, "`cifar100 report RUN --out X` differs from training's page")
        default = os.path.join(self.out, "report.html")
        os.remove(default)
        try:
            self.assertOk(self.report(self.out))
        finally:
            if not os.path.exists(default):
                with open(default, "wb") as f:
                    f.write(self.html_bytes)
        with open(default, "rb") as f:
            self.assertEqual(f.read(), self.html_bytes, "`cifar100 report RUN` differs from training's page")

        # No results.json: exit 1 naming it, nothing written.
        d = self.copy_run("unfinished")
        os.remove(os.path.join(d, "results.json"))
        out = os.path.join(self.tmp, "unfinished.html")
        r = self.report(d, out)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(os.path.join(d, "results.json"), r.stderr + r.stdout)
        self.assertIn("is missing", r.stderr + r.stdout)
        self.assertFalse(os.path.exists(out))
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        r = self.report(empty)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("metrics.jsonl", r.stderr + r.stdout)
        self.assertEqual(os.listdir(empty), [])

    def test_missing_optional_files(self):
        # Without report/gallery.json: the same page but the gallery, which says so; it renders.
        d = self.copy_run("nogallery")
        full = os.path.join(self.tmp, "full.html")
        self.assertOk(self.report(d, full))
        os.remove(os.path.join(d, "report", "gallery.json"))
        page = os.path.join(self.tmp, "nogallery.html")
        self.assertOk(self.report(d, page))
        with open(full, encoding="utf-8") as f:
            full_html = f.read()
        with open(page, encoding="utf-8") as f:
            html = f.read()
        root, images = self.assertSelfContained(html)
        self.assertEqual(images, 2)
        gallery = self.section(root, "gallery")
        self.assertIn("no report/gallery.json in this run", gallery.text())
        self.assertEqual(gallery.all("figure"), [])
        cut = lambda h: h[:h.index('<section id="gallery">')] + h[h.index('<section id="augmented">'):]  # noqa: E731
        self.assertEqual(cut(html), cut(full_html), "pages differ outside the gallery")
        if CHROMIUM:
            droot, _ = parse(chromium(page, dump=True))
            for s in SECTIONS:
                self.assertIsNotNone(droot.by_id(s), f"#{s} not rendered without gallery.json")
            self.assertIn("no report/gallery.json in this run", droot.by_id("gallery").text())
            self.assertEqual(len(droot.all("rect", cls="bar")), 100)

        # Without any optional file (report/, config.yaml, model/): every section says what is missing.
        shutil.rmtree(os.path.join(d, "report"))
        shutil.rmtree(os.path.join(d, "model"))
        os.remove(os.path.join(d, "config.yaml"))
        page = os.path.join(self.tmp, "bare.html")
        self.assertOk(self.report(d, page))
        with open(page, encoding="utf-8") as f:
            html = f.read()
        root, images = self.assertSelfContained(html)
        self.assertEqual(images, 0)
        self.assertEqual([s.attrs["id"] for s in root.all("section")], SECTIONS)
        for section, says in (("confusion", "no report/confusion.png in this run"),
                              ("per-class", "no per-class figures"),
                              ("superclass", "no confusion matrix (report/metrics.json is missing)"),
                              ("calibration", "no calibration figures"),
                              ("gallery", "no report/gallery.json in this run"),
                              ("augmented", "no report/augmented_samples.png in this run"),
                              ("config", "no config.yaml in this run")):
            self.assertIn(says, self.section(root, section).text(), section)
        self.assertEqual(sorted(dd.attrs["id"] for dd in root.all("dd")),
                         sorted(["test-top1", "test-top5", "test-loss", "best-val-top1", "epochs-run", "wall-seconds"]))
        self.assertEqual(len(root.all("polyline", cls="series")), 8)  # the curves need only metrics.jsonl
        if CHROMIUM:
            droot, _ = parse(chromium(page, dump=True))
            for s in SECTIONS:
                self.assertIsNotNone(droot.by_id(s), f"#{s} not rendered without the optional files")

    def test_names_are_escaped(self):
        # Class, superclass and config text with markup characters: attributes and text hold them as they are.
        d = self.copy_run("names")
        odd, odd_coarse = '<i>a&b "c" \'d\' caf\u00e9</i>', '</td><script>x</script>'
        cfg_path = os.path.join(d, "model", "config.json")
        cfg = read_json(cfg_path)
        cfg["class_names"][0], cfg["coarse_class_names"][0] = odd, odd_coarse
        m_path = os.path.join(d, "report", "metrics.json")
        m = read_json(m_path)
        m["per_class"][0]["name"] = odd
        g_path = os.path.join(d, "report", "gallery.json")
        g = read_json(g_path)
        for it in g["items"]:
            if it["label"] == 0:
                it["label_name"] = odd
            for t in it["top3"]:
                if t["class"] == 0:
                    t["name"] = odd
        for path, value in ((cfg_path, cfg), (m_path, m), (g_path, g)):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(value, f, ensure_ascii=False)
        with open(os.path.join(d, "config.yaml"), "a", encoding="utf-8") as f:
            f.write("# </pre><script>alert(1)</script> & caf\u00e9\n")
        page = os.path.join(self.tmp, "names.html")
        self.assertOk(self.report(d, page))
        with open(page, encoding="utf-8") as f:
            root, _ = self.assertSelfContained(f.read())
        bars = [b for b in root.all("rect", cls="bar") if b.attrs["data-class"] == odd]
        self.assertEqual(len(bars), 1)
        self.assertIn(odd, bars[0].text())
        labelled = [f for f in root.all("figure", cls="sample") if f.attrs["data-label"] == odd]
        self.assertEqual(len(labelled), sum(it["label"] == 0 for it in g["items"]))
        table = root.by_id("superclass-table")
        self.assertIsNotNone(table)
        self.assertIn(odd_coarse, [r.attrs.get("data-superclass") for r in table.all("tr")])
        with open(os.path.join(d, "config.yaml"), encoding="utf-8") as f:
            self.assertEqual(root.by_id("config-yaml").text(), f.read())

    def test_run_without_superclasses(self):
        # A model without superclass names and a test report without coarse_top1 (report/metrics.json holds null,
        # as eval::to_json writes it then): no superclass figures, the rest of the page as usual.
        d = self.copy_run("nocoarse")
        cfg_path = os.path.join(d, "model", "config.json")
        cfg = read_json(cfg_path)
        for k in ("coarse_class_names", "coarse_names", "fine_to_coarse"):
            cfg.pop(k, None)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        m_path = os.path.join(d, "report", "metrics.json")
        m = read_json(m_path)
        m["coarse_top1"] = None
        with open(m_path, "w") as f:
            json.dump(m, f)
        page = os.path.join(self.tmp, "nocoarse.html")
        self.assertOk(self.report(d, page))
        with open(page, encoding="utf-8") as f:
            root, _ = self.assertSelfContained(f.read())
        self.assertIsNone(root.by_id("coarse-top1"))
        self.assertIsNone(root.by_id("superclass-table"))
        self.assertIn("no superclass labels", self.section(root, "superclass").text())
        self.assertEqual(len(root.all("rect", cls="bar")), 100)


if __name__ == "__main__":
    unittest.main(verbosity=2)
