#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/torch_compat.h"
#include "data/loader.h"
#include "eval/evaluate.h"
#include "model/weights.h"
#include "train/losses.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace cifar::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

nlohmann::json to_json(const EpochMetrics& m) {
  nlohmann::json j = {{"epoch", m.epoch},
                      {"lr", m.lr},
                      {"train_loss", m.train_loss},
                      {"train_acc", m.train_acc},
                      {"epoch_seconds", m.epoch_seconds},
                      {"train_seconds", m.train_seconds},
                      {"images_per_second", m.images_per_second}};
  if (m.has_val) {
    j["val_loss"] = m.val_loss;
    j["val_top1"] = m.val_top1;
    j["val_top5"] = m.val_top5;
  }
  return j;
}
}  // namespace

std::string format_epoch_line(const EpochMetrics& m) {
  std::string s = fmt::format("epoch={}; lr={:.6f}; train_loss={:.4f}; train_acc={:.4f};", m.epoch, m.lr,
                              m.train_loss, m.train_acc);
  if (m.has_val)
    s += fmt::format(" val_loss={:.4f}; val_top1={:.4f}; val_top5={:.4f};", m.val_loss, m.val_top1, m.val_top5);
  s += fmt::format(" epoch_seconds={:.1f}; images_per_second={:.1f};", m.epoch_seconds, m.images_per_second);
  return s;
}

Trainer::Trainer(const Config& cfg, const model::Runtime& rt, model::WideResNet net, const RunDir& run)
    : cfg_(cfg), rt_(rt), net_(std::move(net)), run_(run) {}

FitResult Trainer::fit(const data::Split& train_split, const std::vector<int64_t>& train_idx,
                       const std::vector<int64_t>& val_idx) {
  const uint64_t seed = static_cast<uint64_t>(cfg_.i("seed"));
  data::LoaderOptions lo;
  lo.batch_size = cfg_.i("batch_size");
  lo.shuffle = true;
  lo.drop_last = cfg_.b("drop_last");
  lo.augment = true;
  lo.aug.crop_padding = static_cast<int>(cfg_.i("crop_padding"));
  lo.aug.hflip = cfg_.b("hflip");
  lo.seed = seed;
  lo.workers = static_cast<int>(cfg_.i("workers"));
  lo.prefetch = static_cast<int>(cfg_.i("prefetch"));
  lo.channels_last = rt_.channels_last;
  data::Loader loader(train_split, train_idx, lo);

  const int64_t steps_per_epoch = loader.batches_per_epoch();
  const int64_t epochs = cfg_.i("epochs");
  const LrSchedule sched = make_schedule(cfg_, steps_per_epoch);
  auto optimizer = make_sgd(*net_, cfg_);
  const double eps = cfg_.f("label_smoothing");
  const double alpha = cfg_.f("mixup_alpha");
  const double clip = cfg_.f("grad_clip");
  const bool has_val = !val_idx.empty();
  EarlyStopping stopper(has_val ? cfg_.i("early_stopping_patience") : 0);
  const auto params = net_->parameters();

  log::info("training {} images for {} epochs of {} steps (batch {}, peak lr {:.4g}, warmup {} steps), validating on {}",
            loader.size(), epochs, steps_per_epoch, lo.batch_size, sched.peak_lr, sched.warmup_steps, val_idx.size());

  FitResult result;
  int64_t step = 0;
  // ============================================================================================
  // The training loop
  // ============================================================================================
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    const auto t_epoch = Clock::now();
    net_->train();
    loader.start_epoch(epoch);
    torch::Tensor loss_sum = torch::zeros({}, torch::dtype(torch::kFloat64).device(rt_.device));
    torch::Tensor hit_sum = torch::zeros({}, torch::dtype(torch::kFloat64).device(rt_.device));
    int64_t seen = 0;
    double lr = 0;
    log::Progress progress(fmt::format("epoch {}/{}", epoch + 1, epochs), steps_per_epoch, "img",
                           cfg_.i("log_interval"));
    std::string shown_loss;
    while (auto batch = loader.next()) {
      lr = sched.at(step);
      set_lr(*optimizer, lr);
      torch::Tensor x = batch->images.to(rt_.device, /*non_blocking=*/true);
      torch::Tensor y = batch->labels.to(rt_.device, /*non_blocking=*/true);
      const int64_t bs = y.size(0);

      Mixed mixed;
      if (alpha > 0) {
        Rng rng(seed, Stream::MixUp, {static_cast<uint64_t>(step)});
        mixed = mixup(x, y, alpha, rng);
      }
      torch::Tensor logits;
      {
        compat::AutocastGuard amp(rt_.device.type(), rt_.bf16);
        logits = net_->forward(alpha > 0 ? mixed.inputs : x);
      }
      torch::Tensor loss = alpha > 0 ? mixup_loss(logits, y, mixed, eps) : smoothed_cross_entropy(logits, y, eps);

      for (auto& p : params) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none)
      loss.backward();
      if (clip > 0) torch::nn::utils::clip_grad_norm_(params, clip);
      optimizer->step();

      {
        torch::NoGradGuard no_grad;
        loss_sum += loss.detach().to(torch::kFloat64) * static_cast<double>(bs);
        hit_sum += alpha > 0 ? mixup_correct(logits.detach(), y, mixed)
                             : logits.detach().argmax(1).eq(y).sum().to(torch::kFloat64);
      }
      seen += bs;
      ++step;
      if (batch->index % 10 == 0 || batch->index + 1 == steps_per_epoch)
        shown_loss = fmt::format("loss {:.4f}", loss_sum.item<double>() / static_cast<double>(seen));
      progress.update(batch->index + 1, seen, shown_loss);
    }
    progress.finish();
    const double train_seconds = seconds_since(t_epoch);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.lr = lr;
    m.train_loss = loss_sum.item<double>() / static_cast<double>(std::max<int64_t>(seen, 1));
    m.train_acc = hit_sum.item<double>() / static_cast<double>(std::max<int64_t>(seen, 1));
    if (!std::isfinite(m.train_loss))
      fail("training diverged: the training loss is {} in epoch {}; lower lr (now {}) or set grad_clip (now {})",
           m.train_loss, m.epoch, cfg_.text("lr"), cfg_.text("grad_clip"));
    m.train_seconds = train_seconds;
    m.images_per_second = static_cast<double>(seen) / train_seconds;
    bool improved = true;
    if (has_val) {
      const eval::Metrics v = eval::evaluate(net_, train_split, val_idx, rt_, cfg_.i("eval_batch_size"), lo.workers);
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_top1 = v.top1;
      m.val_top5 = v.top5;
      improved = stopper.update(m.epoch, v.top1);
    }
    if (improved) {
      model::save_weights(*net_, run_.best_weights());
      result.best_epoch = m.epoch;
      result.best_val_top1 = m.val_top1;
    }
    m.epoch_seconds = seconds_since(t_epoch);
    run_.append_metrics(to_json(m));
    log::info("{}", format_epoch_line(m));
    result.history.push_back(m);
    if (stopper.should_stop()) {
      log::info("early stopping: validation top-1 has not improved for {} epochs (best {:.4f} at epoch {})",
                stopper.bad_epochs(), stopper.best(), stopper.best_epoch());
      result.early_stopped = true;
      break;
    }
  }
  model::save_weights(*net_, run_.final_weights());
  return result;
}

}  // namespace cifar::train
