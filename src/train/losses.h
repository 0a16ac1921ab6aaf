// Training losses: cross-entropy with label smoothing (PyTorch's definition), and the batch-level mixes
// MixUp (Zhang et al. 2018: inputs blended with a shuffled copy of the batch) and CutMix (Yun et al.
// 2019: a box pasted from the shuffled copy), switched per batch as timm does. With either, loss =
// lam*CE(y) + (1-lam)*CE(y[perm]).
#pragma once
#include <torch/nn/functional/loss.h>
#include <torch/types.h>

#include "common/rng.h"

namespace cifar::train {

// Mean over the batch of (1-eps)*(-log p_y) + eps * mean_c(-log p_c). Computed in fp32.
torch::Tensor smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, double eps);

struct Mixed {
  torch::Tensor inputs;     // the mixed batch
  torch::Tensor targets_b;  // y[perm]
  double lam = 1.0;         // weight of the original targets
  bool cutmix = false;
  int box[4] = {0, 0, 0, 0};  // CutMix rows [box[0], box[1]) and columns [box[2], box[3])
};

struct MixConfig {
  double mixup_alpha = 0, cutmix_alpha = 0;
  double prob = 1.0;         // probability that a batch is mixed at all
  double switch_prob = 0.5;  // with both on: probability of CutMix
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

// Draws lam ~ Beta(alpha, alpha) and a permutation from `rng` (deterministic for a given rng state).
Mixed mixup(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng);
// Draws lam ~ Beta(alpha, alpha), a permutation and a box of area (1 - lam) centred uniformly (clipped at the
// border); lam is then corrected to the box actually pasted.
Mixed cutmix(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng);
// Per batch: with probability `prob` mix, choosing CutMix or MixUp as configured; otherwise lam = 1.
Mixed mix_batch(const torch::Tensor& inputs, const torch::Tensor& targets, const MixConfig& mc, Rng& rng);
torch::Tensor mixup_loss(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m, double eps);
// Top-1 hits against the mixed targets: lam * [pred == y] + (1 - lam) * [pred == y[perm]], summed.
torch::Tensor mixup_correct(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m);

}  // namespace cifar::train
