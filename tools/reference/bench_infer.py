"""PyTorch peers for bench/infer_speed.sh, each at its best, on the tools/reference WideResNet with the same
weights (the artifact's model.pt), eval mode, torch.inference_mode(), channels-last, THREADS threads:

  fp32  eager      the module as is
  fp32  frozen     torch.jit.trace + torch.jit.freeze + optimize_for_inference: batch norm folded and every
                   convolution forced onto oneDNN (PyTorch's own path to its fastest CPU inference)
  bf16  cast       weights cast once with model.to(torch.bfloat16), bf16 input: plain PyTorch's fastest bf16
  bf16  autocast   fp32 weights under torch.autocast(bfloat16)

Prints one line per peer: `peer=NAME throughput=IMG_S latency_ms=MS` (images/s at BATCH, median batch-1
latency). `peak` instead measures this CPU's convolution peak in GFLOP/s for fp32 and bf16 (the fastest
3x3 convolution of a WRN middle-stage shape), printed as `peak_fp32=... peak_bf16=...`.

Usage: bench_infer.py MODEL_DIR fp32|bf16 THREADS BATCH SECONDS
       bench_infer.py peak THREADS"""
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402


def measure(fwd, xb, x1, batch, seconds):
    with torch.inference_mode():
        for _ in range(3):
            fwd(xb)
        images, t0 = 0, time.perf_counter()
        while True:
            fwd(xb)
            images += batch
            if time.perf_counter() - t0 >= seconds:
                break
        throughput = images / (time.perf_counter() - t0)
        for _ in range(10):
            fwd(x1)
        lat, t0 = [], time.perf_counter()
        while len(lat) < 20 or (time.perf_counter() - t0 < seconds and len(lat) < 2000):
            t = time.perf_counter()
            fwd(x1)
            lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    return throughput, lat[len(lat) // 2]


def peak(threads):
    """The fastest 3x3 convolution PyTorch runs on this CPU (oneDNN, channels-last, 256 -> 256 channels on
    16x16, batch 64: the shape of a WRN middle stage), in GFLOP/s: the measured ceiling for these models."""
    torch.set_num_threads(threads)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(64, 256, 16, 16).to(dtype).to(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3).to(dtype).to(memory_format=torch.channels_last)
        flops = 2 * 64 * 256 * 256 * 9 * 16 * 16
        best = 0.0
        with torch.inference_mode():
            for _ in range(2):
                torch.nn.functional.conv2d(x, w, padding=1)
            for _ in range(3):
                t0, reps = time.perf_counter(), 0
                while time.perf_counter() - t0 < 1.0:
                    torch.nn.functional.conv2d(x, w, padding=1)
                    reps += 1
                best = max(best, flops * reps / (time.perf_counter() - t0) / 1e9)
        out.append(best)
    print(f"peak_fp32={out[0]:.1f} peak_bf16={out[1]:.1f}")


def main():
    if sys.argv[1] == "peak":
        return peak(int(sys.argv[2]))
    model_dir, precision, threads, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        float(sys.argv[5])
    torch.set_num_threads(threads)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    model = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pt")))
    model = model.eval().to(memory_format=torch.channels_last)
    xb = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    x1 = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)

    peers = {}
    if precision == "fp32":
        peers["eager"] = (lambda x: model(x)), xb, x1
        with torch.no_grad():
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, xb)))
        peers["frozen"] = (lambda x: frozen(x)), xb, x1
    else:
        cast = copy.deepcopy(model).to(torch.bfloat16)
        peers["cast"] = (lambda x: cast(x).float()), xb.to(torch.bfloat16), x1.to(torch.bfloat16)

        def autocast(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x).float()
        peers["autocast"] = autocast, xb, x1
    for name, (fwd, b, one) in peers.items():
        throughput, latency = measure(fwd, b, one, batch, seconds)
        print(f"peer={name} throughput={throughput:.1f} latency_ms={latency:.3f}", flush=True)


if __name__ == "__main__":
    main()
