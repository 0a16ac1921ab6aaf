#include "train/losses.h"

#include <torch/torch.h>

#include <numeric>

namespace cifar::train {

namespace F = torch::nn::functional;

torch::Tensor smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, double eps) {
  return F::cross_entropy(logits.to(torch::kFloat32), targets, F::CrossEntropyFuncOptions().label_smoothing(eps));
}

Mixed mixup(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng) {
  Mixed m;
  m.lam = alpha > 0 ? rng.beta(alpha, alpha) : 1.0;
  const int64_t n = inputs.size(0);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  rng.shuffle(perm.begin(), perm.end());
  auto index = torch::from_blob(perm.data(), {n}, torch::kInt64).clone().to(inputs.device());
  m.inputs = inputs.mul(m.lam).add_(inputs.index_select(0, index), 1.0 - m.lam);
  m.targets_b = targets.index_select(0, index);
  return m;
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
