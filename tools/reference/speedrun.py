"""PyTorch peer of the cifar100 CPU speedrun recipe (configs/fast-cpu.yaml), for bench/time_to_accuracy.sh.

It trains the same "airbench" network with the same math as `cifar100 train`: a stratified validation split,
pad-4 random crop + flip augmentation, patch-whitening first layer initialised from the data, kaiming or dirac
initialisation, label smoothing, SGD Nesterov (multi-tensor foreach step) with decay on weights only,
linear/cosine schedule with warmup stepped per iteration, flip (or flip+translate) test-time augmentation, and
a single test of the best-validation weights. The clock starts at the top of main(), so data loading and
whitening count towards time-to-accuracy. Prints one JSON line per epoch, {"epoch", "elapsed", "train_loss",
"val_top1", "images_per_second"}, then {"final": true, "test_top1", "test_top5", "best_epoch", "wall_seconds"}.

Usage: /usr/bin/python3 tools/reference/speedrun.py --data-dir /root/.cache/cifar100/cifar-100-binary \
           [--epochs 4] [--precision fp32|bf16] [--threads 2] [--tta flip] ...
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = torch.tensor([0.5071, 0.4865, 0.4409]).view(1, 3, 1, 1)
STD = torch.tensor([0.2673, 0.2564, 0.2762]).view(1, 3, 1, 1)


# ---------------------------------------------------------------- data
def load_bin(path):
    """CIFAR-100 binary file -> (uint8 images [N, 3, 32, 32], int64 fine labels [N])."""
    rec = np.fromfile(path, dtype=np.uint8).reshape(-1, 2 + 3072)
    return torch.from_numpy(rec[:, 2:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(rec[:, 1].astype(np.int64))


def stratified_split(labels, val_size, gen, num_classes=100):
    """Like src/data/split.cpp: per-class quotas (largest remainder), members drawn by the seeded RNG.
    Returns (train indices, val indices), both ascending (file order)."""
    n = len(labels)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    by_class = torch.argsort(labels, stable=True).split(counts)  # each class's indices, ascending
    quota = [val_size * len(m) // n for m in by_class]
    rem = sorted(range(num_classes), key=lambda c: -(val_size * len(by_class[c]) % n))  # stable: ties -> lower class
    for c in rem[:val_size - sum(quota)]:
        quota[c] += 1
    train, val = [], []
    for c, m in enumerate(by_class):
        m = m[torch.randperm(len(m), generator=gen)]
        val.append(m[:quota[c]])
        train.append(m[quota[c]:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def normalize(u8):
    """uint8 [B, 3, 32, 32] -> normalised float32, channels_last."""
    x = (u8.float() / 255 - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last)


def augment(u8, gen):
    """Random 32x32 crop of the zero-padded (4 px) image, then horizontal flip with p = 0.5, as one gather."""
    b = u8.size(0)
    padded = F.pad(u8, (4, 4, 4, 4))  # zeros in pixel space
    dy = torch.randint(0, 9, (b, 1), generator=gen)
    dx = torch.randint(0, 9, (b, 1), generator=gen)
    flip = torch.rand(b, 1, generator=gen) < 0.5
    ar = torch.arange(32).view(1, 32)
    rows = dy + ar
    cols = dx + torch.where(flip, 31 - ar, ar)  # a flipped crop reads its columns right to left
    return padded[torch.arange(b).view(b, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1),
                  rows.view(b, 1, 32, 1), cols.view(b, 1, 1, 32)]


# ---------------------------------------------------------------- model
class Group(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o, momentum=0.4)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o, momentum=0.4)

    def forward(self, x):
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))


class Airbench(nn.Module):
    def __init__(self, widths=(64, 256, 256), num_classes=100, init="kaiming"):
        super().__init__()
        self.register_buffer("whiten_weight", torch.zeros(24, 3, 2, 2))
        self.whiten_bias = nn.Parameter(torch.zeros(24))
        w = [24, *widths]
        self.groups = nn.Sequential(*[Group(w[g], w[g + 1]) for g in range(3)])
        self.head = nn.Linear(w[3], num_classes, bias=False)
        for m in self.modules():  # as init_weights in src/model/wide_resnet.cpp
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "kaiming":
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:  # "dirac": PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), identity on the first filters
                    bound = 1 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.weight, -bound, bound)
                    if isinstance(m, nn.Conv2d):
                        nn.init.dirac_(m.weight[:min(m.weight.size(0), m.weight.size(1))])
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.gelu(F.conv2d(x, self.whiten_weight, self.whiten_bias))
        return self.head(F.max_pool2d(self.groups(x), 3).flatten(1)) / 9


@torch.no_grad()
def whitening_filters(images, eps=5e-4):
    """[N, 3, H, W] normalised images -> [24, 3, 2, 2] filters: the 12 eigenvectors of the (uncentred) second
    moment of all 2x2 patches, each scaled by 1/sqrt(eigenvalue + eps), and their negatives."""
    x = images.double().contiguous()
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)  # (c, i, j) per row
    cov = patches.t() @ patches / patches.size(0)
    evals, evecs = torch.linalg.eigh(cov)
    w = (evecs.t() / (evals + eps).sqrt().unsqueeze(1)).reshape(12, 3, 2, 2)
    return torch.cat([w, -w]).float()


# ---------------------------------------------------------------- evaluation
def tta_log_probs(model, x, tta):
    """Log of the mean softmax over the TTA views (as tta_log_probs in src/eval/evaluate.cpp)."""
    views = [x] if tta == "none" else [x, x.flip(3)]
    if tta == "flip_translate":
        for v in list(views):
            p = F.pad(v, (1, 1, 1, 1), mode="reflect")
            views += [p[:, :, o:o + 32, o:o + 32].contiguous(memory_format=torch.channels_last) for o in (0, 2)]
    lps = torch.stack([F.log_softmax(model(v).float(), 1) for v in views])
    return torch.logsumexp(lps, 0) - math.log(len(views))


@torch.no_grad()
def evaluate(model, images, labels, args, batch=500):
    """(top-1, top-5) in percent, eval mode, batches of 500, same autocast as training."""
    model.eval()
    top1 = top5 = 0
    for i in range(0, len(labels), batch):
        x, y = normalize(images[i:i + batch]), labels[i:i + batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            top = tta_log_probs(model, x, args.tta).topk(5, 1).indices
        top1 += (top[:, 0] == y).sum().item()
        top5 += (top == y.unsqueeze(1)).any(1).sum().item()
    model.train()
    return 100.0 * top1 / len(labels), 100.0 * top5 / len(labels)


# ---------------------------------------------------------------- training
def lr_at(step, peak, warmup, total, args):
    """Per-iteration schedule of src/train/schedule.cpp."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    shape = (1 - t) if args.lr_schedule == "linear" else (1 + math.cos(math.pi * t)) / 2
    return args.min_lr + (peak - args.min_lr) * shape


def emit(record):
    print(json.dumps(record), flush=True)


def main():
    start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.path.expanduser("~/.cache/cifar100/cifar-100-binary"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--lr-reference-batch", type=int, default=256)
    p.add_argument("--lr-schedule", choices=["linear", "cosine"], default="linear")
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.2)
    p.add_argument("--widths", default="64,256,256")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--tta", choices=["none", "flip", "flip_translate"], default="flip")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--train-limit", type=int, default=0, help="keep the first N training images (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="test on the first N test images (0 = all; quick tests)")
    p.add_argument("--conv-init", choices=["kaiming", "dirac"], default="kaiming")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)  # split, shuffling and augmentation

    # Data: split, limits, whitening from the first 5,000 (un-augmented) training images.
    train_x, train_y = load_bin(os.path.join(args.data_dir, "train.bin"))
    test_x, test_y = load_bin(os.path.join(args.data_dir, "test.bin"))
    if args.test_limit > 0:
        test_x, test_y = test_x[:args.test_limit], test_y[:args.test_limit]
    tr_idx, val_idx = stratified_split(train_y, args.val_size, gen)
    if args.train_limit > 0:
        tr_idx = tr_idx[:args.train_limit]
    val_x, val_y = train_x[val_idx], train_y[val_idx]
    train_x, train_y = train_x[tr_idx], train_y[tr_idx]
    model = Airbench(tuple(int(w) for w in args.widths.split(",")), init=args.conv_init)
    model.whiten_weight.copy_(whitening_filters(normalize(train_x[:5000])))
    model = model.to(memory_format=torch.channels_last).train()

    decay = [q for q in model.parameters() if q.dim() > 1]
    no_decay = [q for q in model.parameters() if q.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=0.0, momentum=0.9, nesterov=True, foreach=True)
    n = len(train_y)
    steps_per_epoch = n // args.batch_size  # the last incomplete batch is dropped
    total = args.epochs * steps_per_epoch
    warmup = max(0, min(total - 1, math.floor(args.warmup_epochs * steps_per_epoch + 0.5)))  # llround
    peak = args.lr * args.batch_size / args.lr_reference_batch

    best_top1, best_epoch, best_state, step = -1.0, 0, None, 0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            x, y = normalize(augment(train_x[idx], gen)), train_y[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, peak, warmup, total, args)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                out = model(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            step += 1
        ips = steps_per_epoch * args.batch_size / (time.perf_counter() - t0)
        val_top1 = evaluate(model, val_x, val_y, args)[0] if len(val_y) else None
        if val_top1 is None or val_top1 > best_top1:  # no validation: keep the last epoch
            best_top1, best_epoch = (val_top1 if val_top1 is not None else -1.0), epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        emit({"epoch": epoch, "elapsed": round(time.perf_counter() - start, 3),
              "train_loss": loss_sum / max(1, steps_per_epoch), "val_top1": val_top1,
              "images_per_second": round(ips, 1)})

    # Test once, with the best-validation weights.
    if best_state is not None:
        model.load_state_dict(best_state)
    top1, top5 = evaluate(model, test_x, test_y, args)
    emit({"final": True, "test_top1": top1, "test_top5": top5, "best_epoch": best_epoch,
          "wall_seconds": round(time.perf_counter() - start, 3)})


if __name__ == "__main__":
    sys.exit(main())
