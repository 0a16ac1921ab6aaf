#include "train/amp.h"

#include <torch/torch.h>

#include "common/error.h"

namespace cifar::train {

LossScaler::LossScaler(c10::Device device, LossScalerOptions opt) : opt_(opt) {
  const auto f = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  scale_ = torch::full({1}, opt_.init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt32));
  found_inf_ = torch::zeros({1}, f);
}

at::Tensor LossScaler::scale(const at::Tensor& loss) const { return loss * scale_.to(loss.scalar_type()); }

void LossScaler::unscale(const std::vector<at::Tensor>& params) {
  torch::NoGradGuard no_grad;
  found_inf_.zero_();
  const at::Tensor inv = scale_.to(torch::kFloat64).reciprocal().to(torch::kFloat32);
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (scale_.is_cuda()) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv);
  } else {
    // The same as the fused kernel: found_inf = 1 if any element is inf or NaN; every gradient scaled.
    for (auto& g : grads) {
      if (!torch::isfinite(g).all().item<bool>()) found_inf_.fill_(1.0);
      g.mul_(inv.to(g.scalar_type()));
    }
  }
  checked_ = true;
}

bool LossScaler::step_ok() {
  if (!checked_) fail("LossScaler::step_ok() before unscale()");
  last_ok_ = found_inf_.item<float>() == 0.0f;
  return last_ok_;
}

void LossScaler::update() {
  if (!checked_) fail("LossScaler::update() before unscale()");
  torch::NoGradGuard no_grad;
  if (scale_.is_cuda()) {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, opt_.growth_factor, opt_.backoff_factor,
                           opt_.growth_interval);
  } else {
    // _amp_update_scale_'s rule: back off and reset the tracker on inf; else count, and grow (resetting
    // the tracker) when the count reaches growth_interval.
    if (found_inf_.item<float>() != 0.0f) {
      scale_.mul_(opt_.backoff_factor);
      growth_tracker_.zero_();
    } else {
      const int64_t n = growth_tracker_.item<int>() + 1;
      if (n == opt_.growth_interval) {
        scale_.mul_(opt_.growth_factor);
        growth_tracker_.zero_();
      } else {
        growth_tracker_.fill_(n);
      }
    }
  }
  if (found_inf_.item<float>() != 0.0f) ++skipped_;
  checked_ = false;
}

double LossScaler::current_scale() const { return scale_.item<double>(); }
int64_t LossScaler::growth_tracker() const { return growth_tracker_.item<int>(); }

void LossScaler::restore(double scale, int64_t growth_tracker, int64_t skipped) {
  scale_.fill_(scale);
  growth_tracker_.fill_(growth_tracker);
  skipped_ = skipped;
}

}  // namespace cifar::train
