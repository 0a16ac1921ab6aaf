"""PyTorch peer for bench/infer_speed.sh: the tools/reference WideResNet with the same weights (the artifact's
model.pt), eval mode, no_grad, channels-last, optional bf16 autocast; prints images/s at BATCH and the median
batch-1 latency. Usage: bench_infer.py MODEL_DIR fp32|bf16 THREADS BATCH SECONDS"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402


def main():
    model_dir, precision, threads, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        float(sys.argv[5])
    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    model = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pt")))
    model = model.eval().to(memory_format=torch.channels_last)
    xb = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    x1 = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)

    def fwd(x):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x).float()

    for _ in range(2):
        fwd(xb)
    images, t0 = 0, time.perf_counter()
    while True:
        fwd(xb)
        images += batch
        if time.perf_counter() - t0 >= seconds:
            break
    throughput = images / (time.perf_counter() - t0)
    for _ in range(5):
        fwd(x1)
    lat, t0 = [], time.perf_counter()
    while len(lat) < 20 or (time.perf_counter() - t0 < seconds and len(lat) < 2000):
        t = time.perf_counter()
        fwd(x1)
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    print(f"throughput={throughput:.1f} latency_ms={lat[len(lat) // 2]:.3f}")


if __name__ == "__main__":
    main()
