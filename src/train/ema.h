// An exponential moving average of the weights (Polyak averaging, as timm's ModelEma and
// torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn): after every optimizer step
//   ema = d * ema + (1 - d) * w,   d = min(decay, (1 + step) / (10 + step))
// over the parameters and the floating-point buffers (batch-norm running statistics); integer buffers
// are copied. The warmup term (TensorFlow's num_updates rule) keeps early averages from being dominated
// by the random initial weights in short runs.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/device.h"
#include "model/wide_resnet.h"

namespace cifar::train {

class WeightEma {
 public:
  // Starts from a copy of `net`'s current weights, on the same device and in the same memory format.
  WeightEma(const model::WideResNet& net, const model::Runtime& rt, double decay);
  // The decay used for the update after `step` optimizer steps in total (1-based).
  double decay_at(int64_t step) const;
  // Folds the source model's current weights in; `step` counts optimizer steps taken so far (>= 1).
  void update(int64_t step);
  // The averaged model (for evaluation and saving).
  model::WideResNet& model() { return ema_; }
  const model::WideResNet& model() const { return ema_; }
  // Restarts the average from the source model's current weights.
  void reset();

 private:
  model::WideResNet src_, ema_;
  double decay_;
  std::vector<at::Tensor> src_float_, ema_float_, src_int_, ema_int_;
};

}  // namespace cifar::train
