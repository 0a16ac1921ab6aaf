"""Interoperability of the model artifact: model.pt loads into the PyTorch reference model
(tools/reference/wrn.py, Debian's python3-torch) with strict names and shapes and gives the same logits as
the C++ inference engine on the same uint8 images (normalised with config.json's mean/std), with batch norm
folded and not; model.safetensors, read with a reader written from the format's specification, holds the
same tensors as model.pt; config.json describes the model."""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.environ["SOURCE_DIR"], "tools", "reference"))
sys.path.insert(0, os.path.join(os.environ["SOURCE_DIR"], "tests", "support"))
from wrn import WideResNet  # noqa: E402
import safetensors_spec  # noqa: E402

TOL = 1e-4  # max abs difference of fp32 logits
# bf16 keeps 8 significant bits: its logits stay within 2% of the logit scale of fp32's (measured: 0.4-0.5%,
# about what PyTorch's own bf16 model gives), and the top-1 class agrees on at least 15 of the 16 images.
BF16_REL_TOL = 0.02
BF16_MIN_AGREE = 15 / 16


def check(depth, width, tmp):
    subprocess.run([os.environ["ARTIFACT_DUMP"], "model", str(depth), str(width), tmp], check=True)
    model_dir = os.path.join(tmp, "model")
    assert sorted(os.listdir(model_dir)) == ["config.json", "model.pt", "model.safetensors"], os.listdir(model_dir)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    assert cfg["architecture"] == "wide_resnet" and cfg["depth"] == depth and cfg["width"] == width, cfg
    assert cfg["num_classes"] == 100 and len(cfg["class_names"]) == 100 and cfg["class_names"][0] == "apple"
    assert cfg["image_size"] == 32 and len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
    assert len(cfg["coarse_class_names"]) == 20 and len(cfg["fine_to_coarse"]) == 100

    state = torch.load(os.path.join(model_dir, "model.pt"), weights_only=True)  # the safe loader (default in 2.6+)
    ref = WideResNet(depth, width, 0.0, 100)
    ref.load_state_dict(state, strict=True)
    ref.eval()

    tensors, meta = safetensors_spec.read(os.path.join(model_dir, "model.safetensors"))
    assert meta.get("format") == "pt", meta
    assert sorted(tensors) == sorted(state), set(tensors) ^ set(state)
    for name, t in state.items():
        assert tensors[name].dtype == t.dtype and torch.equal(tensors[name], t), name

    io = torch.load(os.path.join(tmp, "io.pt"))
    x = io["images"].permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = ref((x - mean) / std)
    d_fold = (logits - io["folded"]).abs().max().item()
    d_plain = (logits - io["unfolded"]).abs().max().item()
    d_bf16 = (logits - io["folded_bf16"]).abs().max().item()
    agree = (logits.argmax(1) == io["folded_bf16"].argmax(1)).float().mean().item()
    import copy
    with torch.no_grad():  # PyTorch's own bf16 model, for comparison
        torch_bf16 = copy.deepcopy(ref).to(torch.bfloat16)((x - mean).div(std).to(torch.bfloat16)).float()
    d_torch = (logits - torch_bf16).abs().max().item()
    print(f"WRN-{depth}-{width}: max |logit diff| vs PyTorch: folded fp32 {d_fold:.2e}, unfolded fp32 {d_plain:.2e} "
          f"(tolerance {TOL:g}); folded bf16 {d_bf16:.2e} (logit scale {logits.abs().max().item():.1f}, "
          f"top-1 agreement {agree:.0%}; PyTorch's bf16 model: {d_torch:.2e}); safetensors == model.pt for "
          f"{len(state)} tensors")
    assert d_plain <= TOL, f"unfolded logits differ by {d_plain}"
    assert d_fold <= TOL, f"folded logits differ by {d_fold}"
    assert d_bf16 <= BF16_REL_TOL * logits.abs().max().item(), f"bf16 logits differ by {d_bf16}"
    assert agree >= BF16_MIN_AGREE, f"bf16 top-1 agrees with fp32 on only {agree:.0%} of the images"


def main():
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        check(16, 4, tmp)
    with tempfile.TemporaryDirectory() as tmp:
        check(10, 1, tmp)  # width 1: the first block has no projection shortcut, so its bn1 is not folded
    print("artifact parity: OK")


if __name__ == "__main__":
    main()
