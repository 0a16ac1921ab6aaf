// Helpers for tests and tools that use LibTorch (kept out of testutil.h, which torch-free tests include).
#pragma once
#include <torch/torch.h>

namespace cifar::synth {

// Non-trivial batch-norm statistics and affine parameters, so eval mode (and folding) really uses them.
inline void randomize_batchnorm(torch::nn::Module& net) {
  torch::NoGradGuard g;
  for (auto& m : net.modules(false))
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
}

}  // namespace cifar::synth
