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
    bn_diff = (ref.bn.running_mean - io["bn_running_mean_after"]).abs().max().item()
    print(f"WRN-{depth}-{width}: {n_params} parameters, max |logit diff| eval {eval_diff:.2e}, "
          f"train {train_diff:.2e}, running-mean update {bn_diff:.2e} (tolerance {TOL:g})")
    assert eval_diff <= TOL, f"eval-mode logits differ by {eval_diff}"
    assert train_diff <= TOL, f"train-mode logits differ by {train_diff}"
    assert bn_diff <= 1e-5, f"batch-norm running statistics differ by {bn_diff}"


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
