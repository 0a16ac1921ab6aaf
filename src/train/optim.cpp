#include "train/optim.h"

#include <torch/torch.h>

#include "common/config.h"
#include "train/schedule.h"

namespace cifar::train {

namespace {
// Weights of convolutions and linear layers have 2 or more dimensions; BN weights and all biases have 1.
bool is_decayed(const torch::Tensor& p, bool decay_all) { return decay_all || p.dim() > 1; }
}  // namespace

std::unique_ptr<torch::optim::SGD> make_sgd(torch::nn::Module& model, const Config& cfg) {
  const bool decay_all = cfg.b("decay_norm_and_bias");
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : model.parameters()) (is_decayed(p, decay_all) ? decay : no_decay).push_back(p);
  auto opts = [&](double wd) {
    auto o = std::make_unique<torch::optim::SGDOptions>(peak_lr(cfg));
    o->momentum(cfg.f("momentum")).nesterov(cfg.b("nesterov") && cfg.f("momentum") > 0).weight_decay(wd);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, opts(cfg.f("weight_decay")));
  if (!no_decay.empty()) groups.emplace_back(no_decay, opts(0.0));
  return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(peak_lr(cfg)));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
}

std::pair<int64_t, int64_t> decay_split(torch::nn::Module& model, bool decay_all) {
  int64_t a = 0, b = 0;
  for (auto& p : model.parameters()) (is_decayed(p, decay_all) ? a : b) += p.numel();
  return {a, b};
}

}  // namespace cifar::train
