"""Where the time of one training step goes, in PyTorch (Debian's python3-torch) on this CPU: a per-op profile
of the cifar100 training step (loader included) for fp32 or bf16, bucketed into convolutions, BatchNorm,
pooling, elementwise/activation ops, dtype casts, the loss, the linear head, the optimizer, the loader and
framework overhead, with the top ops by self time and the step's GFLOP/s against this CPU's measured peak.

The step mirrors cifar100's: a batch made from uint8 images in torch (random crop with 4 pixels of zero
padding, horizontal flip, normalisation; vectorised, synthetic images so no dataset is needed) inside a
record_function("loader") range; channels-last model and input; the forward under
torch.autocast("cpu", bfloat16) for bf16; cross entropy with label smoothing 0.2 in float32;
zero_grad(set_to_none=True) and SGD (momentum 0.9, Nesterov, foreach, weight decay 5e-4 on the dim>1
parameters) inside record_function("optimizer") ranges; backward.

Buckets: every op's self CPU time goes to the optimizer or the loader when it runs inside those ranges (their
Python glue too: the ranges' own self time), otherwise to the kind of the outermost op above it that has one
(aten::conv2d, ConvolutionBackward0, aten::batch_norm, aten::max_pool2d, aten::cross_entropy_loss, aten::to
for the autocast casts, ...), else to the kind of its own name (elementwise: gelu, relu, add, mul, copy_,
fill_, ...), else "other". Framework overhead = the steps' wall time minus all of that (the autograd engine's
own bookkeeping, Python, the dispatcher, the profiler). Profiling runs on the calling thread only (oneDNN's
and ATen's OpenMP workers do not record), so the self times add up to at most the wall time.

GFLOP/s: the model's FLOPs are counted from the shapes of its convolutions and matmuls on one 32x32 image
(2 x MACs, x3 for forward + backward), times the batch, over the measured step time. The peak is measured in
the same run with the same thread count, best of several repeats, for fp32 and bf16: a square matmul
(torch.mm, whichever BLAS/GEMM this PyTorch uses), the same GEMM as a 1x1 convolution (oneDNN's path for
channels-last fp32 convolutions) and a 3x3 convolution of a middle-stage shape; the peak is the fastest of them.

Usage: profile_step.py --arch airbench|wrn [--widths 64,256,256] [--depth 16 --width 2] [--batch 256]
           [--steps 10] [--precision fp32|bf16] [--threads 2] [--json out.json] [--top 15]
           [--peak-size 1024] [--no-peak | --peak-from earlier.json] [--verbose-step]
--verbose-step builds the model and runs a single step (no warm-up, profiler or peak): run it under
ONEDNN_VERBOSE=1 to see which oneDNN primitives (and ISA) the step uses."""
import argparse
import json
import os
import platform
import re
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from speedrun import Airbench  # noqa: E402  (the network of configs/fast-cpu.yaml)
from wrn import WideResNet  # noqa: E402


MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)


class Loader:
    """Synthetic CIFAR-shaped uint8 images (N, 32, 32, 3), batches made in torch: gather, zero pad 4, random
    32x32 crop and horizontal flip as one advanced-indexing gather, float, normalise; the result is NCHW with
    channels-last strides (permuted from NHWC), as the model wants it."""

    def __init__(self, batch, n=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n = n or max(4 * batch, 1024)
        self.images = torch.randint(0, 256, (self.n, 32, 32, 3), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 100, (self.n,), generator=g)
        self.batch, self.gen = batch, g
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
        self.inv_std = 1 / (torch.tensor(STD).view(1, 3, 1, 1) * 255)
        self.ar = torch.arange(32)

    def __call__(self):
        b, g = self.batch, self.gen
        idx = torch.randint(0, self.n, (b,), generator=g)
        x = F.pad(self.images[idx], (0, 0, 4, 4, 4, 4))  # (B, 40, 40, 3), zero border
        dy = torch.randint(0, 9, (b, 1), generator=g)
        dx = torch.randint(0, 9, (b, 1), generator=g)
        flip = torch.rand(b, 1, generator=g) < 0.5
        rows = dy + self.ar  # (B, 32)
        cols = torch.where(flip, dx + 31 - self.ar, dx + self.ar)  # flip folded into the crop's gather
        x = x[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, 32, 32, 3)
        x = x.permute(0, 3, 1, 2).float()  # NCHW view of NHWC memory = channels-last
        return (x - self.mean) * self.inv_std, self.labels[idx]


def build_model(args):
    if args.arch == "airbench":
        net = Airbench(tuple(int(w) for w in args.widths.split(",")), 100)
        net.whiten_weight.normal_()  # any filters do for timing; training sets them from the data
        return net, f"airbench {args.widths}"
    return WideResNet(args.depth, args.width, 0.0, 100), f"WRN-{args.depth}-{args.width}"


class FlopCounter(TorchDispatchMode):
    """MACs of the convolutions and matmuls the forward runs, from their shapes."""

    def __init__(self):
        super().__init__()
        self.macs, self.by_op = 0, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name, macs = str(func.overloadpacket.__name__), 0
        if name == "convolution":
            w = args[1]
            macs = out.numel() * w.shape[1] * w.shape[2] * w.shape[3]  # w.shape[1] = in channels / groups
        elif name in ("mm", "addmm"):
            a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
            macs = a.shape[0] * a.shape[1] * b.shape[1]
        elif name == "bmm":
            macs = args[0].shape[0] * args[0].shape[1] * args[0].shape[2] * args[1].shape[2]
        if macs:
            self.macs += macs
            self.by_op[name] = self.by_op.get(name, 0) + macs
        return out


def model_flops(model):
    """Training FLOPs per image: 2 x MACs of one 32x32 image's forward, x3 (backward = 2 forwards)."""
    counter = FlopCounter()
    was = model.training
    model.eval()
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 32, 32))
    model.train(was)
    return 2 * counter.macs, 6 * counter.macs, counter.by_op


def make_step(model, opt, loader, precision):
    def step():
        with torch.profiler.record_function("loader"):
            x, y = loader()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=0.2)
        with torch.profiler.record_function("optimizer"):
            opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.profiler.record_function("optimizer"):
            opt.step()
        return loss

    return step


def is_cast(name):
    """A dtype conversion: aten::to / aten::_to_copy (not aten::to_mkldnn etc.) or the casts' backward."""
    return name in ("aten::to", "aten::_to_copy") or "ToCopyBackward" in name


# Kinds of the outermost recognised op in an event's ancestry (substring matches, first table row wins).
COMPOSITE = [
    ("convolution", ("conv", "Convolution", "im2col", "col2im")),
    ("batchnorm", ("batch_norm", "BatchNorm")),
    ("pooling", ("pool", "Pool")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax", "NllLoss", "LogSoftmax")),
    ("linear", ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "AddmmBackward", "MmBackward")),
]
ELEMENTWISE = ("gelu", "relu", "threshold", "add", "sub", "mul", "div", "copy", "fill", "zero", "clamp", "neg",
               "exp", "sqrt", "where", "sum", "mean", "Gelu", "Relu", "Threshold", "Add", "Sub", "Mul", "Div",
               "Sum", "Mean", "flatten", "cat", "flip")
AUTOGRAD_GLUE = ("autograd::engine::evaluate_function:",)
BUCKETS = ["convolution", "batchnorm", "pooling", "elementwise/activation", "dtype casts", "loss", "linear",
           "optimizer", "loader", "other ops", "framework overhead"]


def is_autograd_node(e):
    """Autograd's own events (the engine's evaluate_function and the Node's apply, e.g. ConvolutionBackward0):
    their self time is the engine's bookkeeping, counted as framework overhead, not as an op."""
    n = e.name
    return (n.startswith(AUTOGRAD_GLUE) or n == "torch::autograd::AccumulateGrad" or
            ("::" not in n and "Backward" in n))


def ancestors(e):
    p, out = e.cpu_parent, []
    while p is not None:
        out.append(p)
        p = p.cpu_parent
    return out


def classify(e):
    chain = [e, *ancestors(e)][::-1]  # root .. e
    for a in chain:
        if a.name == "loader":
            return "loader"
        if a.name == "optimizer":
            return "optimizer"
    if is_autograd_node(e):
        return None
    if any(is_cast(a.name) for a in chain):
        return "dtype casts"  # autocast's casts run inside the op they feed (aten::conv2d > aten::to > ...)
    for a in chain:
        for kind, pats in COMPOSITE:
            if any(s in a.name for s in pats):
                return kind
    if any(s in e.name for s in ELEMENTWISE):
        return "elementwise/activation"
    return "other ops"


def measure(fn, flops, seconds=0.3, repeats=3, slow=1.0):
    """Best GFLOP/s of fn over `repeats` timed windows of >= `seconds` each, after one warm-up call; when that
    call took over `slow` seconds, the better of it and one more call (a slow kernel is not worth more)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > slow:
        t0 = time.perf_counter()
        fn()
        return flops / min(first, time.perf_counter() - t0) / 1e9
    best = 0.0
    for _ in range(repeats):
        t0, reps = time.perf_counter(), 0
        while True:
            fn()
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        best = max(best, flops * reps / dt / 1e9)
    return best


def peak(size):
    """Measured GFLOP/s of this CPU with the current thread count, fp32 and bf16: torch.mm of two size x size
    matrices, the same GEMM as a channels-last 1x1 convolution (size rows = N*H*W pixels, size -> size
    channels) and a 3x3 convolution 256 -> 256 channels on 16x16, batch 8 (a middle-stage shape)."""
    out = {}
    hw = 32 if size % (32 * 32) == 0 else 1
    n1 = size // (hw * hw)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        x1 = torch.randn(n1, size, hw, hw).to(dtype).contiguous(memory_format=torch.channels_last)
        w1 = torch.randn(size, size, 1, 1).to(dtype).contiguous(memory_format=torch.channels_last)
        x3 = torch.randn(8, 256, 16, 16).to(dtype).contiguous(memory_format=torch.channels_last)
        w3 = torch.randn(256, 256, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            r = {
                f"matmul {size}^3": measure(lambda: torch.mm(a, b), 2 * size ** 3),
                f"1x1 conv GEMM {size}^3": measure(lambda: F.conv2d(x1, w1), 2 * size ** 3),
                "3x3 conv 256->256 16x16 b8": measure(lambda: F.conv2d(x3, w3, padding=1),
                                                      2 * 8 * 256 * 256 * 9 * 16 * 16),
            }
        out[name] = {"kernels": r, "best_kernel": max(r, key=r.get), "gflops": max(r.values())}
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def aten_capability():
    """The vectorised kernels ATen dispatches to here (DEFAULT / AVX2 / AVX512)."""
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        return cpu.get_cpu_capability()
    m = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("airbench", "wrn"), default="airbench")
    ap.add_argument("--widths", default="64,256,256")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--peak-size", type=int, default=1024,
                    help="GEMM size (size^3) for the measured peak (a multiple of 1024 runs the 1x1 conv on 32x32)")
    ap.add_argument("--no-peak", action="store_true", help="skip the peak measurement")
    ap.add_argument("--peak-from", metavar="JSON", help="reuse the peak of an earlier run's --json output")
    ap.add_argument("--verbose-step", action="store_true",
                    help="run one step only (no warm-up, profiler or peak), for ONEDNN_VERBOSE=1")
    ap.add_argument("--json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, name = build_model(args)
    model = model.to(memory_format=torch.channels_last).train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.05, momentum=0.9, nesterov=True, foreach=True)
    loader = Loader(args.batch)
    step = make_step(model, opt, loader, args.precision)
    head = (f"{name}, {args.precision}, batch {args.batch}, {args.threads} threads; torch {torch.__version__}, "
            f"CPU: {cpu_model()}, {os.cpu_count()} cores, ATen kernels: {aten_capability()}")
    if args.verbose_step:
        print(head, flush=True)
        t0 = time.perf_counter()
        step()
        print(f"one step: {time.perf_counter() - t0:.2f} s", flush=True)
        return

    print(head)
    fwd_flops, train_flops, by_op = model_flops(model)  # after the verbose step: it runs a convolution too
    print(f"model: {fwd_flops / 1e9:.4f} GFLOP forward per image, {train_flops / 1e9:.4f} GFLOP per trained "
          f"image (x3), {train_flops * args.batch / 1e9:.1f} GFLOP per step", flush=True)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warm_s = time.perf_counter() - t0
    print(f"warm-up: {args.warmup} steps in {warm_s:.2f} s", flush=True)

    kwargs = dict(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True, with_flops=True)
    with torch.profiler.profile(**kwargs) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        wall = time.perf_counter() - t0
    step_s = wall / args.steps
    events = [e for e in prof.events() if not e.is_async]

    buckets = {b: 0.0 for b in BUCKETS}
    glue = 0.0
    per_op = {}
    prof_flops = 0
    for e in events:
        self_us = e.self_cpu_time_total
        if getattr(e, "flops", 0) and not any(getattr(a, "flops", 0) for a in ancestors(e)):
            prof_flops += e.flops  # outermost only: aten::conv2d > aten::convolution > ... each carry a count
        kind = classify(e)
        if kind is None:
            glue += self_us
            continue
        buckets[kind] += self_us
        if e.name not in ("loader", "optimizer"):
            d = per_op.setdefault((e.name, kind), [0.0, 0])
            d[0] += self_us
            d[1] += 1
    accounted = sum(buckets.values())
    buckets["framework overhead"] = wall * 1e6 - accounted
    ms = {b: v / 1e3 / args.steps for b, v in buckets.items()}

    print(f"\nprofiled: {args.steps} steps, {step_s * 1e3:.1f} ms per step, {args.batch / step_s:.1f} images/s")
    print(f"{'bucket':<24} {'ms/step':>10} {'share':>7}")
    for b in BUCKETS:
        print(f"{b:<24} {ms[b]:10.2f} {100 * buckets[b] / (wall * 1e6):6.1f}%")
    print(f"{'total (wall)':<24} {step_s * 1e3:10.2f} {100.0:6.1f}%")
    print(f"  (framework overhead includes {glue / 1e3 / args.steps:.2f} ms/step of the autograd engine's own "
          f"events' self time; the rest is Python, dispatch and the profiler)")

    top = sorted(per_op.items(), key=lambda kv: -kv[1][0])[:args.top]
    print(f"\ntop {args.top} ops by self CPU time")
    print(f"{'op':<44} {'bucket':<22} {'calls/step':>10} {'ms/step':>9} {'share':>7}")
    for (op, kind), (us, calls) in top:
        print(f"{op[:44]:<44} {kind:<22} {calls / args.steps:10.1f} {us / 1e3 / args.steps:9.2f} "
              f"{100 * us / (wall * 1e6):6.1f}%")

    conv_ops = sorted({e.name for e in events if e.name.startswith("aten::") and
                       any(s in e.name for s in ("convolution", "conv2d", "conv_depthwise", "slow_conv", "mkldnn"))})
    print(f"\nconvolution kernels seen: {', '.join(conv_ops)}")

    step_gflops = train_flops * args.batch / step_s / 1e9
    result = {
        "model": name, "arch": args.arch, "precision": args.precision, "batch": args.batch, "steps": args.steps,
        "threads": args.threads, "torch": torch.__version__, "cpu": cpu_model(),
        "gflop_forward_per_image": fwd_flops / 1e9, "gflop_train_per_image": train_flops / 1e9,
        "macs_by_op": by_op, "warmup_s": warm_s,
        "step_ms": step_s * 1e3, "images_per_second": args.batch / step_s,
        "buckets_ms_per_step": ms, "buckets_share": {b: buckets[b] / (wall * 1e6) for b in BUCKETS},
        "autograd_engine_ms_per_step": glue / 1e3 / args.steps,
        "top_ops": [{"op": op, "bucket": kind, "calls_per_step": calls / args.steps,
                     "ms_per_step": us / 1e3 / args.steps} for (op, kind), (us, calls) in top],
        "conv_kernels": conv_ops,
        "profiler_forward_gflop_per_step": prof_flops / 1e9 / args.steps,
        "step_gflops": step_gflops,
    }
    print(f"\nstep: {step_gflops:.1f} GFLOP/s ({train_flops * args.batch / 1e9:.1f} GFLOP per step, analytic; "
          f"the profiler counts {prof_flops / 1e9 / args.steps:.1f} GFLOP/step in forward conv/matmul ops)")
    if not args.no_peak:
        if args.peak_from:
            with open(args.peak_from) as f:
                pk = json.load(f)["peak"]
        else:
            pk = peak(args.peak_size)
        result["peak"] = pk
        for p in ("fp32", "bf16"):
            ks = "  ".join(f"{k}: {v:.1f}" for k, v in pk[p]["kernels"].items())
            print(f"measured peak {p}: {pk[p]['gflops']:.1f} GFLOP/s ({ks})")
        same = pk[args.precision]["gflops"]
        best = max(pk["fp32"]["gflops"], pk["bf16"]["gflops"])
        result["ratio_to_peak_same_precision"] = step_gflops / same
        result["ratio_to_peak_best"] = step_gflops / best
        print(f"step / peak: {100 * step_gflops / same:.1f}% of the {args.precision} peak, "
              f"{100 * step_gflops / best:.1f}% of the best peak of either precision ({best:.1f} GFLOP/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
