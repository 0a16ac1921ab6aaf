// Training losses: cross-entropy with label smoothing (PyTorch's definition), and MixUp (Zhang et al.
// 2018): inputs mixed with a shuffled copy of the batch, loss = lam*CE(y) + (1-lam)*CE(y[perm]).
#pragma once
#include <torch/nn/functional/loss.h>
#include <torch/types.h>

#include "common/rng.h"

namespace cifar::train {

// Mean over the batch of (1-eps)*(-log p_y) + eps * mean_c(-log p_c). Computed in fp32.
torch::Tensor smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, double eps);

struct Mixed {
  torch::Tensor inputs;     // lam * x + (1 - lam) * x[perm]
  torch::Tensor targets_b;  // y[perm]
  double lam = 1.0;
};

// Draws lam ~ Beta(alpha, alpha) and a permutation from `rng` (deterministic for a given rng state).
Mixed mixup(const torch::Tensor& inputs, const torch::Tensor& targets, double alpha, Rng& rng);
torch::Tensor mixup_loss(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m, double eps);
// Top-1 hits against the mixed targets: lam * [pred == y] + (1 - lam) * [pred == y[perm]], summed.
torch::Tensor mixup_correct(const torch::Tensor& logits, const torch::Tensor& targets, const Mixed& m);

}  // namespace cifar::train
