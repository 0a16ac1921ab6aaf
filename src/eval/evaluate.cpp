#include "eval/evaluate.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/error.h"
#include "model/torch_compat.h"
#include "data/loader.h"
#include "model/inference.h"

namespace cifar::eval {

Tta parse_tta(const std::string& name) {
  if (name == "none") return Tta::None;
  if (name == "flip") return Tta::Flip;
  if (name == "flip_translate") return Tta::FlipTranslate;
  fail("test-time augmentation '{}' is not one of none, flip, flip_translate", name);
}


at::Tensor tta_log_probs(const std::function<at::Tensor(const at::Tensor&)>& logits, const at::Tensor& x, Tta tta) {
  std::vector<at::Tensor> views = {x};
  if (tta != Tta::None) views.push_back(x.flip({3}));
  if (tta == Tta::FlipTranslate) {
    const int64_t h = x.size(2), w = x.size(3);
    for (size_t v = 0, n = views.size(); v < n; ++v) {
      const at::Tensor p = torch::reflection_pad2d(views[v], {1, 1, 1, 1});
      // Crops at (0, 0) and (2, 2) of the padded image: shifted by one pixel down-right and up-left.
      for (int64_t o : {0, 2})
        views.push_back(p.slice(2, o, o + h).slice(3, o, o + w).contiguous(x.suggest_memory_format()));
    }
  }
  if (views.size() == 1) return torch::log_softmax(logits(x).to(torch::kFloat32), 1);
  std::vector<at::Tensor> lps;
  for (const auto& v : views) lps.push_back(torch::log_softmax(logits(v).to(torch::kFloat32), 1));
  return torch::logsumexp(torch::stack(lps), 0) - std::log(static_cast<double>(lps.size()));
}

Metrics evaluate(model::WideResNet& net, const data::Split& split, const std::vector<int64_t>& indices,
                 const model::Runtime& rt, int64_t batch_size, int workers,
                 const std::function<bool()>& should_stop, bool keep_outputs, Tta tta) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> idx = indices;
  if (idx.empty()) {
    idx.resize(static_cast<size_t>(split.size()));
    std::iota(idx.begin(), idx.end(), 0);
  }
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.workers = workers;
  lo.channels_last = rt.channels_last;
  data::Loader loader(split, idx, lo);
  loader.start_epoch(0);

  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor loss_sum = torch::zeros({}, torch::dtype(torch::kFloat64).device(rt.device));
  torch::Tensor top1 = torch::zeros({}, torch::dtype(torch::kInt64).device(rt.device));
  torch::Tensor top5 = torch::zeros({}, torch::dtype(torch::kInt64).device(rt.device));
  Metrics m;
  std::vector<torch::Tensor> outputs;
  while (auto batch = loader.next()) {
    if (should_stop && should_stop()) {
      m.interrupted = true;
      break;
    }
    auto x = batch->images.to(rt.device, /*non_blocking=*/true);
    auto y = batch->labels.to(rt.device, /*non_blocking=*/true);
    const torch::Tensor logits = tta_log_probs(
        [&](const at::Tensor& v) {
          compat::AutocastGuard amp(rt.device.type(), rt.autocast(), rt.autocast_dtype());
          return net->forward(v);
        },
        x, tta);  // log-probabilities: the ranking and the loss are those of the logits without TTA
    loss_sum += torch::nn::functional::nll_loss(logits, y, torch::nn::functional::NLLLossFuncOptions().reduction(torch::kSum)).to(torch::kFloat64);
    auto top = std::get<1>(logits.topk(std::min<int64_t>(5, logits.size(1)), 1));
    auto hits = top.eq(y.unsqueeze(1));
    top1 += hits.select(1, 0).sum();
    top5 += hits.any(1).sum();
    if (keep_outputs) {
      outputs.push_back(torch::log_softmax(logits, 1).to(torch::kCPU));
      const auto lab = batch->labels.to(torch::kInt64).contiguous();
      m.labels.insert(m.labels.end(), lab.data_ptr<int64_t>(), lab.data_ptr<int64_t>() + lab.numel());
    }
  }
  if (keep_outputs && !outputs.empty()) m.log_probs = torch::cat(outputs);
  if (was_training) net->train();
  m.count = static_cast<int64_t>(idx.size());
  const double n = static_cast<double>(m.count);
  m.loss = loss_sum.item<double>() / n;
  m.top1 = static_cast<double>(top1.item<int64_t>()) / n;
  m.top5 = static_cast<double>(top5.item<int64_t>()) / n;
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

at::Tensor infer_log_probs(const model::InferenceModel& m, const data::Split& split, const std::vector<int64_t>& indices,
                           int64_t batch_size, Tta tta) {
  std::vector<int64_t> idx = indices;
  if (idx.empty()) {
    idx.resize(static_cast<size_t>(split.size()));
    std::iota(idx.begin(), idx.end(), 0);
  }
  const int64_t n = static_cast<int64_t>(idx.size());
  std::vector<at::Tensor> out;
  std::vector<uint8_t> buf;
  for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
    const int64_t b = std::min(batch_size, n - b0);
    buf.resize(static_cast<size_t>(b) * data::kPixels);
    for (int64_t i = 0; i < b; ++i)
      std::memcpy(buf.data() + i * data::kPixels, split.image(idx[static_cast<size_t>(b0 + i)]), data::kPixels);
    // Planar CHW bytes viewed as NHWC: preprocess() permutes back without copying.
    const at::Tensor chw = torch::from_blob(buf.data(), {b, 3, data::kImageSize, data::kImageSize}, torch::kUInt8);
    const at::Tensor x = m.preprocess(chw.permute({0, 2, 3, 1}));
    out.push_back(tta_log_probs([&](const at::Tensor& v) { return m.logits(v); }, x, tta));
  }
  return out.empty() ? torch::empty({0, m.info().arch.num_classes}) : torch::cat(out);
}

}  // namespace cifar::eval
