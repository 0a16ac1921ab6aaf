// SGD with (Nesterov) momentum and weight decay, in two parameter groups: decayed (conv and linear
// weights) and not decayed (batch-norm parameters and biases, unless decay_norm_and_bias).
#pragma once
#include <memory>

#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

namespace cifar {
class Config;
}

namespace cifar::train {

std::unique_ptr<torch::optim::SGD> make_sgd(torch::nn::Module& model, const Config& cfg);
void set_lr(torch::optim::Optimizer& opt, double lr);
// Number of parameters (elements) in the decayed group, and in the other.
std::pair<int64_t, int64_t> decay_split(torch::nn::Module& model, bool decay_all);

}  // namespace cifar::train
