#include "train/losses.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace cifar::train {

namespace F = torch::nn::functional;

torch::Tensor smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, double eps) {
  return F::cross_entropy(logits.to(torch::kFloat32), targets, F::CrossEntropyFuncOptions().label_smoothing(eps));
}

namespace {
torch::Tensor random_permutation(int64_t n, Rng& rng, const torch::Device& device) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  rng.shuffle(perm.begin(), perm.end());
  return torch::from_blob(perm.data(), {n}, torch::kInt64).clone().to(device);
}
}  // namespace

Mixed mixup(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng) {
  Mixed m;
  m.lam = alpha > 0 ? rng.beta(alpha, alpha) : 1.0;
  auto index = random_permutation(inputs.size(0), rng, inputs.device());
  m.inputs = inputs.mul(m.lam).add_(inputs.index_select(0, index), 1.0 - m.lam);
  m.targets_b = targets.index_select(0, index);
  return m;
}

Mixed cutmix(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng) {
  Mixed m;
  m.cutmix = true;
  const double lam = alpha > 0 ? rng.beta(alpha, alpha) : 1.0;
  auto index = random_permutation(inputs.size(0), rng, inputs.device());
  const int64_t H = inputs.size(2), W = inputs.size(3);
  const double cut = std::sqrt(1.0 - lam);
  const int64_t ch = static_cast<int64_t>(static_cast<double>(H) * cut), cw = static_cast<int64_t>(static_cast<double>(W) * cut);
  const int64_t cy = static_cast<int64_t>(rng.below(static_cast<uint64_t>(H)));
  const int64_t cx = static_cast<int64_t>(rng.below(static_cast<uint64_t>(W)));
  const int64_t y0 = std::clamp<int64_t>(cy - ch / 2, 0, H), y1 = std::clamp<int64_t>(cy + ch / 2, 0, H);
  const int64_t x0 = std::clamp<int64_t>(cx - cw / 2, 0, W), x1 = std::clamp<int64_t>(cx + cw / 2, 0, W);
  m.box[0] = static_cast<int>(y0), m.box[1] = static_cast<int>(y1), m.box[2] = static_cast<int>(x0),
  m.box[3] = static_cast<int>(x1);
  m.inputs = inputs.clone();
  using torch::indexing::Slice;
  if (y1 > y0 && x1 > x0)
    m.inputs.index_put_({Slice(), Slice(), Slice(y0, y1), Slice(x0, x1)},
                        inputs.index_select(0, index).index({Slice(), Slice(), Slice(y0, y1), Slice(x0, x1)}));
  m.lam = 1.0 - static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(H * W);
  m.targets_b = targets.index_select(0, index);
  return m;
}

Mixed mix_batch(const torch::Tensor& inputs, const torch::Tensor& targets, const MixConfig& mc, Rng& rng) {
  if (mc.prob < 1.0 && !(rng.uniform() < mc.prob)) {
    Mixed m;
    m.inputs = inputs;
    m.targets_b = targets;
    return m;
  }
  bool use_cutmix = mc.cutmix_alpha > 0;
  if (mc.cutmix_alpha > 0 && mc.mixup_alpha > 0) use_cutmix = rng.uniform() < mc.switch_prob;
  return use_cutmix ? cutmix(inputs, targets, mc.cutmix_alpha, rng) : mixup(inputs, targets, mc.mixup_alpha, rng);
}

torch::Tensor mixup_loss(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m, double eps) {
  return smoothed_cross_entropy(logits, targets, eps) * m.lam +
         smoothed_cross_entropy(logits, m.targets_b, eps) * (1.0 - m.lam);
}

torch::Tensor mixup_correct(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m) {
  auto pred = logits.argmax(1);
  return pred.eq(targets).sum().to(torch::kFloat64) * m.lam +
         pred.eq(m.targets_b).sum().to(torch::kFloat64) * (1.0 - m.lam);
}

}  // namespace cifar::train
