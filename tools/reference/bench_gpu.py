"""PyTorch peer for the GPU epoch benchmark of scripts/gpu-check.sh: one training epoch of tools/reference
WideResNet on a CIFAR binary train.bin with the same recipe as the cifar100 run it is compared with: the first
N images, random crop (padding 4) and horizontal flip in a DataLoader (workers, pinned memory), MixUp on the
GPU, label smoothing, SGD Nesterov (fused where available), gradient clipping, channels-last and bf16
autocast; optionally torch.compile. Prints `epoch_seconds=S; images_per_second=R; compiled=yes|no;`.

Usage: bench_gpu.py TRAIN_BIN IMAGES DEPTH WIDTH BATCH [--compile] [--device cuda|cpu] [--workers N]"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import sys
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402


class Cifar(torch.utils.data.Dataset):
    def __init__(self, path, n):
        rec = np.fromfile(path, dtype=np.uint8).reshape(-1, 3074)[:n]
        self.labels = torch.from_numpy(rec[:, 1].astype(np.int64))
        self.images = torch.from_numpy(rec[:, 2:].reshape(-1, 3, 32, 32).copy())

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = F.pad(self.images[i], (4, 4, 4, 4))
        dy, dx = np.random.randint(0, 9, size=2)
        x = x[:, dy:dy + 32, dx:dx + 32]
        if np.random.rand() < 0.5:
            x = x.flip(2)
        return x, self.labels[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train_bin")
    ap.add_argument("images", type=int)
    ap.add_argument("depth", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("batch", type=int)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--warmup-steps", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = WideResNet(a.depth, a.width, 0.3, 100).to(dev, memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    kw = {"fused": True} if dev.type == "cuda" else {"foreach": True}
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.1, momentum=0.9, nesterov=True, **kw)
    mean = torch.tensor([0.5071, 0.4865, 0.4409], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.2673, 0.2564, 0.2762], device=dev).view(1, 3, 1, 1) * 255
    fwd = model
    compiled = "no"
    if a.compile:
        try:
            fwd = torch.compile(model)
            compiled = "yes"
        except Exception as e:  # noqa: BLE001
            print(f"torch.compile unavailable: {e}")

    import inspect
    clip_kw = {"foreach": True} if "foreach" in inspect.signature(torch.nn.utils.clip_grad_norm_).parameters else {}

    def step(x, y):
        x = ((x.to(dev, non_blocking=True).float() - mean) / std).contiguous(memory_format=torch.channels_last)
        y = y.to(dev, non_blocking=True)
        lam = float(np.random.beta(0.2, 0.2))
        perm = torch.randperm(x.size(0), device=dev)
        x = lam * x + (1 - lam) * x[perm]
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = fwd(x)
        out = out.float()
        loss = lam * F.cross_entropy(out, y, label_smoothing=0.1) + \
            (1 - lam) * F.cross_entropy(out, y[perm], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, **clip_kw)
        opt.step()
        return loss

    ds = Cifar(a.train_bin, a.images)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=a.workers,
                                     pin_memory=dev.type == "cuda", persistent_workers=a.workers > 0)
    model.train()
    # Warm-up (cuDNN autotuning, compilation), not timed.
    it = iter(dl)
    for _ in range(a.warmup_steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            x, y = next(it)
        step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for x, y in dl:
        step(x, y)
        n += x.size(0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    print(f"epoch_seconds={s:.3f}; images_per_second={n / s:.1f}; images={n}; compiled={compiled};", flush=True)


if __name__ == "__main__":
    main()
