// Dynamic loss scaling for float16 mixed precision, with the semantics of torch.cuda.amp.GradScaler
// (init scale 2^16, growth 2x after 2000 clean steps, backoff 0.5 on an inf/NaN gradient, that step
// skipped). On CUDA the checks and the update are ATen's fused kernels
// (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_); LibTorch has no CPU kernels for them
// before 2.x, so CPU tensors (the unit tests) take an equivalent path of plain tensor operations.
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace cifar::train {

struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class LossScaler {
 public:
  LossScaler(c10::Device device, LossScalerOptions opt = {});
  // loss * scale, for backward().
  at::Tensor scale(const at::Tensor& loss) const;
  // Divides every defined gradient by the scale in place and records whether any was inf or NaN.
  // Call once per step, after backward and before clipping.
  void unscale(const std::vector<at::Tensor>& params);
  // Whether this step's gradients were finite (so the optimizer may step). Synchronises with the device.
  bool step_ok();
  // Adjusts the scale for the next step (backoff after a non-finite step, growth after growth_interval
  // clean ones) and counts skipped steps.
  void update();

  double current_scale() const;
  int64_t skipped_steps() const { return skipped_; }
  // For checkpoints: the scale, the growth tracker and the skipped-step count.
  void restore(double scale, int64_t growth_tracker, int64_t skipped);
  int64_t growth_tracker() const;

 private:
  LossScalerOptions opt_;
  at::Tensor scale_, growth_tracker_, found_inf_;
  int64_t skipped_ = 0;
  bool checked_ = false, last_ok_ = true;
};

}  // namespace cifar::train
