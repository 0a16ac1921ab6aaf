#include "train/ema.h"

#include <torch/torch.h>

#include <algorithm>

namespace cifar::train {

WeightEma::WeightEma(const model::WideResNet& net, const model::Runtime& rt, double decay)
    : src_(net), ema_(model::WideResNet(net->config())), decay_(decay) {
  model::place_module(*ema_, rt);
  ema_->eval();
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  const auto src = model::state_dict(*src_);
  const auto dst = model::state_dict(*ema_);
  for (size_t i = 0; i < src.size(); ++i) {
    const at::Tensor& s = src[i].second;
    const at::Tensor& d = dst[i].second;
    (s.is_floating_point() ? src_float_ : src_int_).push_back(s);
    (s.is_floating_point() ? ema_float_ : ema_int_).push_back(d);
  }
  reset();
}

void WeightEma::reset() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < src_float_.size(); ++i) ema_float_[i].copy_(src_float_[i]);
  for (size_t i = 0; i < src_int_.size(); ++i) ema_int_[i].copy_(src_int_[i]);
}

double WeightEma::decay_at(int64_t step) const {
  return std::min(decay_, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

void WeightEma::update(int64_t step) {
  torch::NoGradGuard no_grad;
  const double d = decay_at(step);
  at::_foreach_mul_(ema_float_, d);
  at::_foreach_add_(ema_float_, src_float_, 1.0 - d);
  for (size_t i = 0; i < src_int_.size(); ++i) ema_int_[i].copy_(src_int_[i]);
}

}  // namespace cifar::train
