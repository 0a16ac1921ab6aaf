// PyTorch's own file format for a state dict, written without Python: the zip archive torch.save makes
// (STORED entries `archive/data.pkl`, `archive/data/<i>`, `archive/version`, `archive/byteorder`, data
// 64-byte aligned) whose pickle (protocol 2) holds a dict of tensors rebuilt by
// torch._utils._rebuild_tensor_v2 from typed storages. Only globals that torch.load(weights_only=True)
// allows are used, so every PyTorch since 1.6 loads it, including 2.6+ where weights_only is the default.
// (LibTorch's torch::pickle_save tags its dictionaries with torch.jit._pickle.restore_type_tag, which
// weights_only refuses.)
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace cifar::model {

// Writes atomically; tensors may live on any device and in any layout (they are written contiguous).
void write_pt_state_dict(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace cifar::model
