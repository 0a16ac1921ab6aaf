"""PyTorch peer for bench/train_throughput.sh: trains tools/reference WideResNet on synthetic tensors
(no data loading) with the same recipe pieces as cifar100 (SGD Nesterov with the multi-tensor foreach step,
label smoothing, gradient clipping, channels-last, optional bf16 autocast) and prints images/s. Usage: bench_train.py DEPTH WIDTH BATCH STEPS fp32|bf16 THREADS"""
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402


def main():
    depth, width, batch, steps = (int(a) for a in sys.argv[1:5])
    precision, threads = sys.argv[5], int(sys.argv[6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WideResNet(depth, width, 0.0, 100).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.05, momentum=0.9, nesterov=True, foreach=True)  # the multi-tensor step
    x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,))
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    print(f"pytorch {precision} images_per_second={batch * steps / dt:.1f}")


if __name__ == "__main__":
    main()
