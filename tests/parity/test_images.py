"""What predict feeds the model for an image file equals what PIL gives (Debian's python3-pil):
Image.open(f).convert("RGB"), the centred square box (side = the shorter side), then
resize((32, 32), Image.BILINEAR, box=box). Checked for PNG (RGB, grey, grey+alpha, RGBA, palette, 16-bit,
interlaced) and JPEG (colour, grey) files of many sizes, down- and up-scaling; stated tolerance: identical
bytes (16-bit PNG: within 1 level, PIL and libpng reduce 16 bits differently)."""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

DUMP = os.environ["ARTIFACT_DUMP"]


def ours(paths, tmp):
    out = os.path.join(tmp, "out")
    os.makedirs(out, exist_ok=True)
    subprocess.run([DUMP, "resize", out] + paths, check=True)
    return [np.frombuffer(open(os.path.join(out, f"{i}.bin"), "rb").read(), dtype=np.uint8).reshape(32, 32, 3)
            for i in range(len(paths))]


def pil(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(im.resize((32, 32), Image.BILINEAR, box=(left, top, left + side, top + side)))


def main():
    rng = np.random.default_rng(5)
    exact, sixteen = [], []  # (path, expected)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [(32, 32), (33, 31), (64, 64), (100, 60), (61, 200), (17, 9), (257, 255), (640, 480), (8, 40), (1, 1)]
        for (w, h) in sizes:
            # Smooth gradients plus noise: both the filter weights and the rounding are exercised.
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 7) % 256], -1)
            rgb = np.clip(base + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)
            variants = {
                "rgb.png": (Image.fromarray(rgb), {}),
                "grey.png": (Image.fromarray(rgb[..., 0]), {}),
                "la.png": (Image.fromarray(rgb[..., :2].copy(), "LA"), {}),
                "rgba.png": (Image.fromarray(np.dstack([rgb, rgb[..., :1]])), {}),
                "palette.png": (Image.fromarray(rgb).quantize(64), {}),
                "interlaced.png": (Image.fromarray(rgb), {"interlace": 1}),
                "colour.jpg": (Image.fromarray(rgb), {"quality": 90}),
                "grey.jpg": (Image.fromarray(rgb[..., 1]), {"quality": 75}),
            }
            for name, (im, kw) in variants.items():
                path = os.path.join(tmp, f"{w}x{h}-{name}")
                im.save(path, **kw)
                exact.append((path, pil(path)))
            # 16-bit RGB PNG (PIL writes it through numpy as I;16 only for grey, so use grey).
            g16 = (rgb[..., 0].astype(np.uint16) * 257 + rng.integers(0, 257, (h, w))).astype(np.uint16)
            path = os.path.join(tmp, f"{w}x{h}-grey16.png")
            Image.fromarray(g16).save(path)
            im = Image.fromarray((g16 >> 8).astype(np.uint8)).convert("RGB")
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            sixteen.append((path, np.asarray(im.resize((32, 32), Image.BILINEAR,
                                                       box=(left, top, left + side, top + side)))))
        got = ours([p for p, _ in exact + sixteen], tmp)
        worst = 0
        for (path, want), a in zip(exact + sixteen, got):
            diff = int(np.abs(a.astype(int) - want.astype(int)).max())
            if path.endswith("grey16.png"):
                worst = max(worst, diff)
                assert diff <= 1, f"{path}: 16-bit PNG differs from its high byte by {diff}"
            else:
                assert diff == 0, f"{path}: differs from PIL by up to {diff} levels"
    print(f"images: {len(exact)} files identical to PIL's decode + centre crop + bilinear resize, "
          f"{len(sixteen)} 16-bit PNGs within {worst} level")


if __name__ == "__main__":
    sys.exit(main())
