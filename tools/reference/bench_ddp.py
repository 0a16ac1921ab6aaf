"""PyTorch peer for bench/dist_scaling.sh: torch.nn.parallel.DistributedDataParallel over Gloo on loopback,
N processes on this host, each training tools/reference WideResNet on its share of a global batch of
synthetic tensors (no data loading), with the recipe of bench_train.py (SGD Nesterov foreach step, label
smoothing, clipping, channels-last, fp32 or bf16 autocast) and DDP's default 25 MiB buckets. The CPU
threads are split among the processes as cifar100 splits them. Prints the global images/s.
Usage: bench_ddp.py DEPTH WIDTH GLOBAL_BATCH STEPS fp32|bf16 NPROC THREADS_TOTAL"""
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402


def worker(rank, world, port, depth, width, batch, steps, precision, threads, out):
    torch.set_num_threads(max(1, threads // world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = WideResNet(depth, width, 0.0, 100).to(memory_format=torch.channels_last)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.05, momentum=0.9, nesterov=True, foreach=True)
    local = batch // world
    x = torch.randn(local, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (local,))
    ddp.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = ddp(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    dist.barrier()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    dt = time.perf_counter() - t
    if rank == 0:
        out.put(batch * steps / dt)
    dist.destroy_process_group()


def main():
    depth, width, batch, steps = (int(a) for a in sys.argv[1:5])
    precision, world, threads = sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.start_processes(worker, args=(world, port, depth, width, batch, steps, precision, threads, q), nprocs=world,
                       start_method="spawn")
    print(f"pytorch-ddp {precision} nproc={world} images_per_second={q.get():.1f}")


if __name__ == "__main__":
    main()
