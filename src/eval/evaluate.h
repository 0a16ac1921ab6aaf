// Evaluation of a model on a set of images: cross-entropy (no label smoothing), top-1 and top-5,
// in eval mode, without gradients, with the runtime's precision and memory format.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
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

// Test-time augmentation: none; flip (each image and its mirror image); flip_translate (those two, each also
// shifted by one pixel up-left and down-right with reflected borders: six views). The prediction is the
// average of the views' probabilities.
enum class Tta { None, Flip, FlipTranslate };
Tta parse_tta(const std::string& name);  // throws, naming the choices, for anything else
// Log of the mean softmax over the views of the normalised NCHW batch `x`; `logits` runs the network.
at::Tensor tta_log_probs(const std::function<at::Tensor(const at::Tensor&)>& logits, const at::Tensor& x, Tta tta);

// `indices` = which images of `split` (empty = all of them). `should_stop` is polled between batches.
// `keep_outputs` also returns every image's log-probabilities (for a full report without a second pass).
Metrics evaluate(model::WideResNet& net, const data::Split& split, const std::vector<int64_t>& indices,
                 const model::Runtime& rt, int64_t batch_size, int workers = 1,
                 const std::function<bool()>& should_stop = {}, bool keep_outputs = false, Tta tta = Tta::None);

// Log-probabilities (N x classes, float32, CPU) of the inference engine on `indices` of `split` (empty = all),
// in batches, with test-time augmentation `tta`.
at::Tensor infer_log_probs(const model::InferenceModel& m, const data::Split& split, const std::vector<int64_t>& indices,
                           int64_t batch_size, Tta tta);

}  // namespace cifar::eval
