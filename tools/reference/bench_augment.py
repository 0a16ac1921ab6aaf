"""torchvision peer for bench/augment_throughput.sh: images/s of torchvision pipelines on PIL images, one
thread, ending like ours in a normalised float tensor. Pipelines: crop+flip; the seed's pipeline (crop,
flip, rotation 15 degrees p=0.5, colour jitter 0.2/0.2/0.2/0.1 p=0.8, cutout 8x8 p=0.5 as RandomErasing);
TrivialAugmentWide, AutoAugment (CIFAR-10) and RandAugment after crop+flip.
Usage: bench_augment.py [SECONDS_PER_PIPELINE] [DATA_DIR]"""
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T


def load_images(data_dir, n=5000):
    path = os.path.join(data_dir or "", "train.bin")
    if data_dir and os.path.exists(path):
        raw = np.fromfile(path, dtype=np.uint8, count=n * 3074).reshape(n, 3074)[:, 2:]
    else:
        raw = np.random.RandomState(1).randint(0, 256, (n, 3072)).astype(np.uint8)
    return [Image.fromarray(r.reshape(3, 32, 32).transpose(1, 2, 0)) for r in raw]


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    torch.set_num_threads(1)
    images = load_images(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CIFAR100_DATA_DIR"))
    tail = [T.ToTensor(), T.Normalize((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))]
    head = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    pipelines = {
        "crop+flip": T.Compose(head + tail),
        "seed": T.Compose(head + [T.RandomApply([T.RandomRotation(15, interpolation=T.InterpolationMode.BILINEAR)], p=0.5),
                                  T.RandomApply([T.ColorJitter(0.2, 0.2, 0.2, 0.1)], p=0.8)] + tail +
                          [T.RandomErasing(p=0.5, scale=(64 / 1024, 64 / 1024), ratio=(1, 1))]),
        "trivialaugment": T.Compose(head + [T.TrivialAugmentWide()] + tail),
        "autoaugment": T.Compose(head + [T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)] + tail),
        "randaugment": T.Compose(head + [T.RandAugment()] + tail),
    }
    for name, pipe in pipelines.items():
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(200):
                pipe(images[n % len(images)])
                n += 1
        print(f"{name} {n / (time.perf_counter() - t0):.0f}")


if __name__ == "__main__":
    main()
