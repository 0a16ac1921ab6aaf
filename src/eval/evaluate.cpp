#include "eval/evaluate.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/torch_compat.h"
#include "data/loader.h"
#include "model/inference.h"

namespace cifar::eval {

Metrics evaluate(model::WideResNet& net, const data::Split& split, const std::vector<int64_t>& indices,
                 const model::Runtime& rt, int64_t batch_size, int workers,
                 const std::function<bool()>& should_stop, bool keep_outputs) {
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
    torch::Tensor logits;
    {
      compat::AutocastGuard amp(rt.device.type(), rt.autocast(), rt.autocast_dtype());
      logits = net->forward(x);
    }
    logits = logits.to(torch::kFloat32);
    loss_sum += torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).to(torch::kFloat64);
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
                           int64_t batch_size, bool tta_flip) {
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
    at::Tensor lp = torch::log_softmax(m.logits(x), 1);
    if (tta_flip) {
      const at::Tensor lf = torch::log_softmax(m.logits(x.flip({3})), 1);
      lp = torch::logsumexp(torch::stack({lp, lf}), 0) - std::log(2.0);
    }
    out.push_back(lp);
  }
  return out.empty() ? torch::empty({0, m.info().arch.num_classes}) : torch::cat(out);
}

}  // namespace cifar::eval
