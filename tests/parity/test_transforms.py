"""Transforms against torchvision (Debian's python3-torchvision 0.14, functional API on uint8 tensors): the
same operations with the same explicit parameters applied to the same images by tests/tools/augment_dump
and by torchvision. Crop/pad/flip/erase and the integer colour ops must be identical; interpolating and
float colour ops must agree within the tolerances stated here (and in docs/AUGMENTATION.md). Also checks the policy
tables (AutoAugment CIFAR-10 sub-policies, the magnitude spaces of AutoAugment, RandAugment and
TrivialAugmentWide). Exits non-zero on any mismatch."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import AutoAugment, AutoAugmentPolicy, RandAugment, TrivialAugmentWide

TOOL = os.environ.get("AUGMENT_DUMP", "build/tests/augment_dump")
# (max abs difference in uint8 levels, largest fraction of pixels that may differ at all)
EXACT = (0, 0.0)
# The tolerances docs/AUGMENTATION.md states: exact for the integer operations and nearest interpolation; at most 1 level
# on at most 0.5% of pixels for the colour and bilinear ones.
COLOUR = (1, 0.005)    # float32 blends truncated to uint8: rare off-by-one at truncation boundaries
BILINEAR = (1, 0.005)  # same sampling formula; float rounding differs in the last bit
NEAREST = EXACT        # the same rounding of sample positions as torchvision


def images():
    rs = np.random.RandomState(0)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    smooth = np.stack([128 + 100 * np.sin(xx / 5 + c) * np.cos(yy / 7 - c) for c in range(3)])
    blocks = np.kron(rs.randint(0, 256, (3, 8, 8)), np.ones((4, 4)))
    low = rs.randint(100, 141, (3, 32, 32))
    flat_red = rs.randint(0, 256, (3, 32, 32)); flat_red[0] = 77
    gray = np.repeat(rs.randint(0, 256, (1, 32, 32)), 3, axis=0)
    noise = rs.randint(0, 256, (3, 32, 32))
    return [np.clip(a, 0, 255).astype(np.uint8) for a in (noise, smooth, blocks, low, flat_red, gray)]


def torchvision_apply(c, t):
    op = c["op"]
    interp = InterpolationMode.NEAREST if c.get("interp") == "nearest" else InterpolationMode.BILINEAR
    fill = c.get("fill", 0)
    # A fill value as a list, as torchvision's RandomRotation and RandomAffine pass it (fill=0 by default):
    # with bilinear interpolation torchvision then blends the border with the sampled mask.
    fill_arg = [float(fill)] * 3
    if op == "pad_crop":
        return F.crop(F.pad(t, [c["pad"]], fill=fill, padding_mode=c["mode"]), c["top"], c["left"], 32, 32)
    if op == "hflip":
        return F.hflip(t)
    if op == "erase":
        return F.erase(t, c["top"], c["left"], c["h"], c["w"], torch.tensor(fill, dtype=torch.uint8))
    if op == "rotate":
        return F.rotate(t, c["angle"], interpolation=interp, fill=fill_arg)
    if op == "affine":
        return F.affine(t, angle=c["angle"], translate=[c["tx"], c["ty"]], scale=c["scale"],
                        shear=[c["shear_x"], c["shear_y"]], interpolation=interp, fill=fill_arg)
    if op in ("shear_x", "shear_y"):
        shear = [c["degrees"], 0.0] if op == "shear_x" else [0.0, c["degrees"]]
        return F.affine(t, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=interp, fill=fill_arg,
                        center=[0, 0])
    fn = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation,
          "hue": F.adjust_hue, "sharpness": F.adjust_sharpness}
    if op in fn:
        return fn[op](t, c["factor"])
    if op == "posterize":
        return F.posterize(t, c["bits"])
    if op == "solarize":
        return F.solarize(t, c["threshold"])
    return {"autocontrast": F.autocontrast, "equalize": F.equalize, "invert": F.invert}[op](t)


def cases():
    out = []
    for k in range(6):
        for mode in ("constant", "reflect", "edge", "symmetric"):
            for top, left in ((0, 0), (8, 3), (4, 4), (1, 7)):
                out.append(({"op": "pad_crop", "mode": mode, "pad": 4, "top": top, "left": left,
                             "fill": 0 if mode != "constant" or k % 2 else 17, "image": k}, EXACT))
        out.append(({"op": "hflip", "image": k}, EXACT))
        out.append(({"op": "erase", "top": 3, "left": 9, "h": 16, "w": 8, "fill": 200, "image": k}, EXACT))
        for bits in (1, 2, 4, 7, 8):
            out.append(({"op": "posterize", "bits": bits, "image": k}, EXACT))
        for thr in (0.0, 100.0, 127.5, 255.0):
            out.append(({"op": "solarize", "threshold": thr, "image": k}, EXACT))
        for op in ("autocontrast", "equalize", "invert"):
            out.append(({"op": op, "image": k}, EXACT))
        for f in (0.0, 0.3, 0.9, 1.0, 1.37, 1.99):
            for op in ("brightness", "contrast", "saturation", "sharpness"):
                out.append(({"op": op, "factor": f, "image": k}, COLOUR))
        for h in (-0.5, -0.21, 0.0, 0.1, 0.33, 0.5):
            out.append(({"op": "hue", "factor": h, "image": k}, COLOUR))
        for interp, tol in (("bilinear", BILINEAR), ("nearest", NEAREST)):
            for angle in (-135.0, -33.3, 10.0, 90.0, 127.5):
                for fill in (0, 128):
                    out.append(({"op": "rotate", "angle": angle, "interp": interp, "fill": fill, "image": k}, tol))
            for (a, tx, ty, s, sx, sy) in ((0, 3, -5, 1, 0, 0), (17, 2, 1, 0.9, 5, 0), (-8, -4, 6, 1.2, -10, 3)):
                out.append(({"op": "affine", "angle": a, "tx": tx, "ty": ty, "scale": s, "shear_x": sx, "shear_y": sy,
                             "interp": interp, "fill": 0, "image": k}, tol))
            for deg in (-44.7, -10.0, 16.7, 44.7):
                out.append(({"op": "shear_x", "degrees": deg, "interp": interp, "image": k}, tol))
                out.append(({"op": "shear_y", "degrees": deg, "interp": interp, "image": k}, tol))
    return out


def check_tables():
    failures = []
    policy = json.loads(subprocess.run([TOOL, "--policy"], capture_output=True, text=True, check=True).stdout)
    theirs = AutoAugment(AutoAugmentPolicy.CIFAR10).policies
    mine = [tuple((op, round(p, 6), None if b < 0 else b) for op, p, b in sub) for sub in policy]
    theirs = [tuple((op, round(p, 6), b) for op, p, b in sub) for sub in theirs]
    if mine != theirs:
        failures.append("AutoAugment CIFAR-10 policy differs")
    spaces = {"auto_augment": (10, AutoAugment()._augmentation_space(10, (32, 32))),
              "rand_augment": (31, RandAugment()._augmentation_space(31, (32, 32))),
              "trivial_augment_wide": (31, TrivialAugmentWide()._augmentation_space(31))}
    for name, (bins, space) in spaces.items():
        ours = json.loads(subprocess.run([TOOL, "--magnitudes", name, str(bins)], capture_output=True, text=True,
                                         check=True).stdout)
        if [o["op"] for o in ours] != list(space.keys()):
            failures.append(f"{name}: operations differ: {[o['op'] for o in ours]} vs {list(space.keys())}")
            continue
        for o in ours:
            values, signed = space[o["op"]]
            want = values.tolist() if values.ndim > 0 else []
            if o["signed"] != signed or len(want) != len(o["values"]) or any(
                    abs(a - b) > 1e-5 for a, b in zip(o["values"], want)):
                failures.append(f"{name} {o['op']}: {o['values']} vs {want} (signed {o['signed']} vs {signed})")
    print(f"policy tables: {'OK' if not failures else 'MISMATCH'}")
    return failures


def main():
    imgs = images()
    todo = cases()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "cases.json"), "w") as f:
            json.dump([c for c, _ in todo], f)
        with open(os.path.join(tmp, "in.raw"), "wb") as f:
            for im in imgs:
                f.write(im.tobytes())
        subprocess.run([TOOL, os.path.join(tmp, "cases.json"), os.path.join(tmp, "in.raw"), os.path.join(tmp, "out.raw")],
                       check=True)
        ours = np.fromfile(os.path.join(tmp, "out.raw"), dtype=np.uint8).reshape(len(todo), 3, 32, 32)
    failures = check_tables()
    worst = {}
    for n, ((c, (max_diff, max_frac)), got) in enumerate(zip(todo, ours)):
        want = torchvision_apply(c, torch.from_numpy(imgs[c["image"]].copy())).numpy()
        diff = np.abs(got.astype(int) - want.astype(int))
        frac = float((diff > 0).mean())
        key = c["op"] + ("/" + c["interp"] if "interp" in c else "")
        w = worst.setdefault(key, [0, 0.0, 0])
        w[0], w[1], w[2] = max(w[0], int(diff.max())), max(w[1], frac), w[2] + 1
        if diff.max() > max_diff or frac > max_frac:
            failures.append(f"{c}: max diff {diff.max()}, {frac:.2%} of pixels differ (allowed {max_diff}, {max_frac:.1%})")
    for key, (d, frac, count) in sorted(worst.items()):
        print(f"{key:22s} {count:4d} cases  max |diff| {d:3d}  worst differing pixels {frac:.2%}")
    # docs/AUGMENTATION.md states the number of cases and the tolerances checked here.
    readme = open(os.path.join(os.environ.get("SOURCE_DIR", "."), "docs", "AUGMENTATION.md")).read()
    for claim in (f"{len(todo)} cases", "at most 1 level on at most 0.5% of pixels", "nearest interpolation are"
                  " identical"):
        if " ".join(claim.split()) not in " ".join(readme.split()):
            failures.append(f"docs/AUGMENTATION.md does not say '{claim}'")
    print(f"{len(todo)} cases")
    for f in failures[:20]:
        print("FAIL", f)
    if failures:
        print(f"{len(failures)} mismatches")
        return 1
    print("transforms: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
