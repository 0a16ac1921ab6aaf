// SGD with (Nesterov) momentum and weight decay, in parameter groups: decayed (conv and linear weights), not
// decayed (batch-norm parameters and biases, unless decay_norm_and_bias), and, when norm_bias_lr_scale is
// not 1, the batch-norm biases at that multiple of the learning rate (airbench's "bias scaler"). With
// freeze_norm_weights the batch-norm weights are in no group: they keep their initial 1.
#pragma once
#include <memory>

#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

namespace cifar {
class Config;
}

namespace cifar::train {

std::unique_ptr<torch::optim::SGD> make_sgd(torch::nn::Module& model, const Config& cfg);
// Sets every group's learning rate to lr times its multiple.
void set_lr(torch::optim::Optimizer& opt, double lr);
// Number of parameters (elements) in the decayed group, and in the other.
std::pair<int64_t, int64_t> decay_split(torch::nn::Module& model, bool decay_all);

}  // namespace cifar::train
