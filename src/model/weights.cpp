#include "model/weights.h"

#include <torch/torch.h>

#include <fmt/ranges.h>

#include <map>
#include <set>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/pt_file.h"
#include "model/wide_resnet.h"

namespace cifar::model {

void save_weights(const torch::nn::Module& m, const std::string& path) { write_pt_state_dict(path, state_dict(m)); }

void load_weights(torch::nn::Module& m, const std::string& path) {
  if (!fs::exists(path)) fail("weights file '{}' does not exist", path);
  const std::vector<uint8_t> raw = fs::read_bytes(path);
  c10::IValue iv;
  try {
    iv = torch::pickle_load(std::vector<char>(raw.begin(), raw.end()));
  } catch (const std::exception& e) {
    fail("weights file '{}' cannot be read as a PyTorch state dict (corrupt or truncated?): {}", path,
         std::string(e.what()).substr(0, 300));
  }
  if (!iv.isGenericDict()) fail("weights file '{}' does not hold a dictionary of tensors", path);
  std::map<std::string, at::Tensor> loaded;
  for (const auto& kv : iv.toGenericDict()) {
    if (!kv.key().isString() || !kv.value().isTensor()) fail("weights file '{}' holds a non-tensor entry", path);
    loaded[kv.key().toStringRef()] = kv.value().toTensor();
  }
  torch::NoGradGuard no_grad;
  std::set<std::string> seen;
  for (auto& [name, t] : state_dict(m)) {
    auto it = loaded.find(name);
    if (it == loaded.end()) fail("weights file '{}' has no tensor '{}' (written for a different model?)", path, name);
    if (it->second.sizes() != t.sizes())
      fail("weights file '{}': tensor '{}' has shape {}, the model expects {} (different depth or width?)", path, name,
           fmt::format("{}", fmt::join(it->second.sizes(), "x")), fmt::format("{}", fmt::join(t.sizes(), "x")));
    t.copy_(it->second);
    seen.insert(name);
  }
  for (const auto& kv : loaded)
    if (!seen.count(kv.first)) fail("weights file '{}' has a tensor '{}' that the model does not have", path, kv.first);
}

}  // namespace cifar::model
