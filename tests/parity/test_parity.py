"""Parity: the C++ WideResNet and the PyTorch reference (tools/reference/wrn.py) give the same logits for
the same weights and inputs, and our weight file loads into PyTorch with strict name/shape checking.
Fails (non-zero exit) on any mismatch beyond the stated tolerance."""
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.environ["SOURCE_DIR"], "tools", "reference"))
from wrn import WideResNet  # noqa: E402

TOL = 1e-4  # max abs difference of fp32 logits


def check(depth, width, tmp):
    subprocess.run([os.environ["PARITY_DUMP"], str(depth), str(width), tmp], check=True)
    state = torch.load(os.path.join(tmp, "weights.pt"), weights_only=True)
    io = torch.load(os.path.join(tmp, "io.pt"))
    ref = WideResNet(depth, width, 0.0, 100)
    ours = list(state.keys())
    theirs = list(ref.state_dict().keys())
    assert sorted(ours) == sorted(theirs), f"names differ: {set(ours) ^ set(theirs)}"
    ref.load_state_dict(state, strict=True)
    n_params = sum(p.numel() for p in ref.parameters())
    ref.eval()
    with torch.no_grad():
        eval_diff = (ref(io["input"]) - io["eval_logits"]).abs().max().item()
    ref.train()
    with torch.no_grad():
        train_diff = (ref(io["input"]) - io["train_logits"]).abs().max().item()
    after = {k[len("after/"):]: v for k, v in io.items() if k.startswith("after/")}
    buffers = {k: v for k, v in ref.state_dict().items()
               if "running_" in k or "num_batches_tracked" in k}
    assert sorted(after) == sorted(buffers), set(after) ^ set(buffers)
    n_bn = sum(1 for k in buffers if k.endswith("running_mean"))
    assert n_bn == sum(1 for k in buffers if k.endswith("running_var")) == depth - 4 + 1, buffers.keys()
    bn_diff = 0.0
    for k, v in buffers.items():
        if "num_batches_tracked" in k:
            assert int(v) == int(after[k]), f"{k}: {int(v)} != {int(after[k])}"
        else:
            d = (v - after[k]).abs().max().item()
            assert d <= 1e-5, f"batch-norm buffer {k} differs by {d} after one training-mode pass"
            bn_diff = max(bn_diff, d)
    print(f"WRN-{depth}-{width}: {n_params} parameters, max |logit diff| eval {eval_diff:.2e}, "
          f"train {train_diff:.2e}, running mean/var of all {n_bn} batch norms {bn_diff:.2e} (tolerance {TOL:g})")
    assert eval_diff <= TOL, f"eval-mode logits differ by {eval_diff}"
    assert train_diff <= TOL, f"train-mode logits differ by {train_diff}"


def main():
    torch.set_num_threads(2)
    # Parameter counts of the reference itself (the C++ counts are checked in unit tests).
    assert sum(p.numel() for p in WideResNet(28, 10).parameters()) == 36536884
    assert sum(p.numel() for p in WideResNet(16, 4).parameters()) == 2772020
    with tempfile.TemporaryDirectory() as tmp:
        check(16, 4, tmp)
        check(10, 2, tmp)
    print("parity: OK")


if __name__ == "__main__":
    main()
