#include "train/optim.h"

#include <set>

#include <torch/torch.h>

#include "common/config.h"
#include "train/schedule.h"

namespace cifar::train {

namespace {
// Weights of convolutions and linear layers have 2 or more dimensions; BN weights and all biases have 1.
bool is_decayed(const torch::Tensor& p, bool decay_all) { return decay_all || p.dim() > 1; }

// SGD whose parameter groups each run at a fixed multiple of the scheduled learning rate.
class ScaledSgd : public torch::optim::SGD {
 public:
  ScaledSgd(std::vector<torch::optim::OptimizerParamGroup> groups, std::vector<double> scales, double lr)
      : SGD(std::move(groups), torch::optim::SGDOptions(lr)), scales_(std::move(scales)) {}
  double scale(size_t group) const { return scales_.at(group); }

 private:
  std::vector<double> scales_;
};
}  // namespace

std::unique_ptr<torch::optim::SGD> make_sgd(torch::nn::Module& model, const Config& cfg) {
  const bool decay_all = cfg.b("decay_norm_and_bias");
  const double wd = cfg.f("weight_decay");
  const double bias_scale = cfg.f("norm_bias_lr_scale");
  const bool freeze = cfg.b("freeze_norm_weights");
  std::set<const void*> norm_weights, norm_biases;
  for (const auto& m : model.modules(/*include_self=*/false))
    if (const auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      if (bn->weight.defined()) norm_weights.insert(bn->weight.unsafeGetTensorImpl());
      if (bn->bias.defined()) norm_biases.insert(bn->bias.unsafeGetTensorImpl());
    }
  std::vector<torch::Tensor> decay, no_decay, scaled;
  for (auto& p : model.parameters()) {
    if (freeze && norm_weights.count(p.unsafeGetTensorImpl())) continue;  // in no group: never updated
    if (bias_scale != 1.0 && norm_biases.count(p.unsafeGetTensorImpl())) scaled.push_back(p);
    else (is_decayed(p, decay_all) ? decay : no_decay).push_back(p);
  }
  auto opts = [&](double lr, double decay_rate) {
    auto o = std::make_unique<torch::optim::SGDOptions>(lr);
    o->momentum(cfg.f("momentum")).nesterov(cfg.b("nesterov") && cfg.f("momentum") > 0).weight_decay(decay_rate);
    return o;
  };
  const double lr = peak_lr(cfg);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> scales;
  groups.emplace_back(decay, opts(lr, wd));
  scales.push_back(1.0);
  if (!no_decay.empty()) {
    groups.emplace_back(no_decay, opts(lr, 0.0));
    scales.push_back(1.0);
  }
  if (!scaled.empty()) {  // the decay per step, lr * weight_decay, stays that of the other decayed parameters
    groups.emplace_back(scaled, opts(lr * bias_scale, decay_all ? wd / bias_scale : 0.0));
    scales.push_back(bias_scale);
  }
  return std::make_unique<ScaledSgd>(std::move(groups), std::move(scales), lr);
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  const auto* scaled = dynamic_cast<const ScaledSgd*>(&opt);
  auto& groups = opt.param_groups();
  for (size_t i = 0; i < groups.size(); ++i)
    static_cast<torch::optim::SGDOptions&>(groups[i].options()).lr(scaled ? lr * scaled->scale(i) : lr);
}

std::pair<int64_t, int64_t> decay_split(torch::nn::Module& model, bool decay_all) {
  int64_t a = 0, b = 0;
  for (auto& p : model.parameters()) (is_decayed(p, decay_all) ? a : b) += p.numel();
  return {a, b};
}

}  // namespace cifar::train
