// Evaluation of a model on a set of images: cross-entropy (no label smoothing), top-1 and top-5,
// in eval mode, without gradients, with the runtime's precision and memory format.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/cifar.h"
#include "model/device.h"
#include "model/wide_resnet.h"

namespace cifar::model {
class InferenceModel;
}

namespace cifar::eval {

struct Metrics {
  double loss = 0, top1 = 0, top5 = 0;  // top-k as fractions in [0, 1]
  int64_t count = 0;
  double seconds = 0;
  bool interrupted = false;  // `should_stop` returned true before the end; the numbers are not valid
  // With keep_outputs: the log-probabilities (N x classes, float32, CPU) and labels, in image order.
  at::Tensor log_probs;
  std::vector<int64_t> labels;
};

// `indices` = which images of `split` (empty = all of them). `should_stop` is polled between batches.
// `keep_outputs` also returns every image's log-probabilities (for a full report without a second pass).
Metrics evaluate(model::WideResNet& net, const data::Split& split, const std::vector<int64_t>& indices,
                 const model::Runtime& rt, int64_t batch_size, int workers = 1,
                 const std::function<bool()>& should_stop = {}, bool keep_outputs = false);

// Log-probabilities (N x classes, float32, CPU) of the inference engine on `indices` of `split` (empty = all),
// in batches; with `tta_flip` the average of the probabilities of each image and its mirror image.
at::Tensor infer_log_probs(const model::InferenceModel& m, const data::Split& split, const std::vector<int64_t>& indices,
                           int64_t batch_size, bool tta_flip);

}  // namespace cifar::eval
