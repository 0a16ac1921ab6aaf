"""Runs an ONNX model written by `cifar100 export --onnx` in onnxruntime (CUDA when it has it, else the CPU)
and compares its logits with the PyTorch reference model (wrn.py) on the artifact's model.pt, on random
images with two batch sizes. Used by scripts/gpu-check.sh (Debian has no onnxruntime; the project venv has).
Runs onnx's full checker first when the onnx package is there (checker=yes), else reads the metadata through
onnxruntime (checker=no). Prints one line: onnx_check=PASS|FAIL; provider=...; max_rel_diff=...; exit 0 on PASS."""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from wrn import WideResNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_file")
    ap.add_argument("artifact_dir")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()
    import onnxruntime as ort
    try:
        import onnx
    except ImportError:
        onnx = None

    if onnx is not None:
        model = onnx.load(a.onnx_file)
        onnx.checker.check_model(model, full_check=True)
        meta = {p.key: p.value for p in model.metadata_props}
    cfg = json.load(open(os.path.join(a.artifact_dir, "config.json")))
    net = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"]).eval()
    net.load_state_dict(torch.load(os.path.join(a.artifact_dir, "model.pt"), map_location="cpu"))
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    sess = ort.InferenceSession(a.onnx_file, providers=providers)
    if onnx is None:
        meta = dict(sess.get_modelmeta().custom_metadata_map)
    mean = np.array(json.loads(meta["mean"]), np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(meta["std"]), np.float32).reshape(1, 3, 1, 1)
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (7, 2):
        pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        x = ((pixels.astype(np.float32) / 255 - mean) / std).astype(np.float32)
        feed = pixels if meta.get("input_dtype") == "uint8" else x
        got = sess.run(None, {"image": feed})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(got - want).max() / max(1.0, np.abs(want).max())))
    ok = worst <= a.tolerance
    print(f"onnx_check={'PASS' if ok else 'FAIL'}; provider={sess.get_providers()[0]}; max_rel_diff={worst:.2e}; "
          f"input={meta.get('input_dtype')}; onnxruntime={ort.__version__}; checker={'yes' if onnx else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
