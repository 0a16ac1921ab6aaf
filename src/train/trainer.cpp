#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/signals.h"
#include "common/torch_compat.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "eval/evaluate.h"
#include "model/weights.h"
#include "train/losses.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace cifar::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

Trainer::Trainer(const Config& cfg, const model::Runtime& rt, model::WideResNet net, const RunDir& run,
                 Checkpointer* ckpt)
    : cfg_(cfg), rt_(rt), net_(std::move(net)), run_(run), ckpt_(ckpt) {}

FitResult Trainer::fit(const data::Split& train_split, const std::vector<int64_t>& train_idx,
                       const std::vector<int64_t>& val_idx, const Snapshot* resume) {
  const uint64_t seed = static_cast<uint64_t>(cfg_.i("seed"));
  data::LoaderOptions lo;
  lo.batch_size = cfg_.i("batch_size");
  lo.shuffle = true;
  lo.drop_last = cfg_.b("drop_last");
  lo.augment = std::make_shared<const data::Pipeline>(data::Pipeline::parse(cfg_.s("augment")));
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
  MixConfig mix;
  mix.mixup_alpha = cfg_.f("mixup_alpha");
  mix.cutmix_alpha = cfg_.f("cutmix_alpha");
  mix.prob = cfg_.f("mix_prob");
  mix.switch_prob = cfg_.f("mix_switch_prob");
  const bool mixing = mix.enabled();
  const bool synthetic = cfg_.b("synthetic_data");
  const double clip = cfg_.f("grad_clip");
  const bool has_val = !val_idx.empty();
  EarlyStopping stopper(has_val ? cfg_.i("early_stopping_patience") : 0);
  const auto params = net_->parameters();
  const nlohmann::json config_json = cfg_.to_json();
  const int64_t every_epochs = cfg_.i("checkpoint_every_epochs");
  const double every_seconds = cfg_.f("checkpoint_every_minutes") * 60.0;

  TrainState st;
  if (resume) {
    restore(*resume, *net_, *optimizer, params);
    st = resume->state;
    if (st.finished && !st.early_stopped && st.epoch < epochs) st.finished = false;  // epochs was raised
    stopper.restore(st.es_best, st.es_best_epoch, st.es_bad_epochs);
    std::vector<nlohmann::json> lines;
    for (const auto& m : st.history) lines.push_back(to_json(m));
    run_.rewrite_metrics(lines);
    if (st.batch > steps_per_epoch)
      fail("the checkpoint stands at batch {} of epoch {}, but this configuration has {} batches per epoch",
           st.batch, st.epoch + 1, steps_per_epoch);
    log::info("resuming at epoch {}, batch {}/{} (step {}){}", st.epoch + 1, st.batch, steps_per_epoch, st.step,
              st.finished ? ": training had finished; only the final steps remain" : "");
  }

  // Saves run in the background; a signal's save is synchronous so the process can exit right after it.
  auto last_save = Clock::now();
  auto checkpoint = [&](const std::string& reason, bool best, bool sync) {
    if (!ckpt_) return;
    Snapshot snap = capture(*net_, *optimizer, params, st, config_json, reason);
    if (sync) ckpt_->save(snap, best);
    else ckpt_->save_async(std::move(snap), best);
    last_save = Clock::now();
  };
  FitResult result;
  auto interrupted = [&](int sig) {
    const auto t0 = Clock::now();
    if (ckpt_) {
      checkpoint("signal", false, true);
      log::info("stopped by {} at epoch {}, batch {}/{} (step {}); checkpoint written in {:.1f} s; run the same "
                "command again to resume",
                signals::name(sig), st.epoch + 1, st.batch, steps_per_epoch, st.step, seconds_since(t0));
    } else {
      log::info("stopped by {} at epoch {}, batch {} (checkpoints are off)", signals::name(sig), st.epoch + 1, st.batch);
    }
    result.history = st.history;
    result.stopped_by_signal = sig;
    return result;
  };

  log::info("training {} images for {} epochs of {} steps (batch {}, peak lr {:.4g}, warmup {} steps), validating on {}",
            loader.size(), epochs, steps_per_epoch, lo.batch_size, sched.peak_lr, sched.warmup_steps, val_idx.size());

  std::optional<data::Batch> fixed;  // synthetic_data: one pre-made batch (epoch 0's first) for every step

  // ============================================================================================
  // The training loop
  // ============================================================================================
  while (!st.finished && st.epoch < epochs) {
    auto t_phase = Clock::now();
    net_->train();
    loader.start_epoch(st.epoch, synthetic ? steps_per_epoch : st.batch);
    if (synthetic && !fixed) {
      loader.start_epoch(0, 0);
      fixed = loader.next();
      loader.start_epoch(st.epoch, steps_per_epoch);
    }
    int64_t synthetic_next = st.batch;
    auto next_batch = [&]() -> std::optional<data::Batch> {
      if (!synthetic) return loader.next();
      if (synthetic_next >= steps_per_epoch) return std::nullopt;
      data::Batch b = *fixed;
      b.index = synthetic_next++;
      return b;
    };
    torch::Tensor loss_sum = torch::full({}, st.loss_sum, torch::dtype(torch::kFloat64).device(rt_.device));
    torch::Tensor hit_sum = torch::full({}, st.hit_sum, torch::dtype(torch::kFloat64).device(rt_.device));
    // Moves the device-side meters and the elapsed time into `st` (before a checkpoint, at the epoch's end).
    auto sync_meters = [&] {
      st.loss_sum = loss_sum.item<double>();
      st.hit_sum = hit_sum.item<double>();
      st.train_seconds += seconds_since(t_phase);
      t_phase = Clock::now();
    };
    log::Progress progress(fmt::format("epoch {}/{}", st.epoch + 1, epochs), steps_per_epoch, "img",
                           cfg_.i("log_interval"));
    std::string shown_loss;
    while (auto batch = next_batch()) {
      set_lr(*optimizer, sched.at(st.step));
      torch::Tensor x = batch->images.to(rt_.device, /*non_blocking=*/true);
      torch::Tensor y = batch->labels.to(rt_.device, /*non_blocking=*/true);
      const int64_t bs = y.size(0);

      Mixed mixed;
      if (mixing) {
        Rng rng(seed, Stream::MixUp, {static_cast<uint64_t>(st.step)});
        mixed = mix_batch(x, y, mix, rng);
      }
      torch::Tensor logits;
      {
        compat::AutocastGuard amp(rt_.device.type(), rt_.bf16);
        logits = net_->forward(mixing ? mixed.inputs : x);
      }
      torch::Tensor loss = mixing ? mixup_loss(logits, y, mixed, eps) : smoothed_cross_entropy(logits, y, eps);

      for (auto& p : params) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none)
      loss.backward();
      if (clip > 0) torch::nn::utils::clip_grad_norm_(params, clip);
      optimizer->step();

      {
        torch::NoGradGuard no_grad;
        loss_sum += loss.detach().to(torch::kFloat64) * static_cast<double>(bs);
        hit_sum += mixing ? mixup_correct(logits.detach(), y, mixed)
                             : logits.detach().argmax(1).eq(y).sum().to(torch::kFloat64);
      }
      st.seen += bs;
      st.batch = batch->index + 1;
      ++st.step;
      if (batch->index % 10 == 0 || st.batch == steps_per_epoch)
        shown_loss = fmt::format("loss {:.4f}", loss_sum.item<double>() / static_cast<double>(st.seen));
      progress.update(st.batch, st.seen, shown_loss);

      if (signals::stop_requested()) {
        progress.finish();
        sync_meters();
        return interrupted(signals::stop_signal());
      }
      // A background save that failed (a full disk) stops the run now, not after more unsaved epochs.
      if (ckpt_) ckpt_->throw_if_failed();
      if (every_seconds > 0 && seconds_since(last_save) >= every_seconds && st.batch < steps_per_epoch) {
        sync_meters();
        checkpoint("time", false, false);
      }
    }
    progress.finish();
    sync_meters();

    EpochMetrics m;
    m.epoch = st.epoch + 1;
    m.lr = sched.at(st.step - 1);
    m.train_loss = st.loss_sum / static_cast<double>(std::max<int64_t>(st.seen, 1));
    m.train_acc = st.hit_sum / static_cast<double>(std::max<int64_t>(st.seen, 1));
    if (!std::isfinite(m.train_loss))
      fail("training diverged: the training loss is {} in epoch {}; lower lr (now {}) or set grad_clip (now {})",
           m.train_loss, m.epoch, cfg_.text("lr"), cfg_.text("grad_clip"));
    m.train_seconds = st.train_seconds;
    m.images_per_second = static_cast<double>(st.seen) / std::max(st.train_seconds, 1e-9);
    bool improved = true;
    if (has_val) {
      const eval::Metrics v = eval::evaluate(net_, train_split, val_idx, rt_, cfg_.i("eval_batch_size"), lo.workers,
                                             [] { return signals::stop_requested(); });
      if (v.interrupted) return interrupted(signals::stop_signal());  // validation is redone on resume
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_top1 = v.top1;
      m.val_top5 = v.top5;
      improved = stopper.update(m.epoch, v.top1);
    }
    m.epoch_seconds = st.train_seconds + seconds_since(t_phase);
    run_.append_metrics(to_json(m));
    log::info("{}", format_epoch_line(m));

    // The epoch is complete: the state now stands at the start of the next one.
    st.history.push_back(m);
    ++st.epoch;
    st.batch = st.seen = 0;
    st.loss_sum = st.hit_sum = st.train_seconds = 0;
    st.es_best = stopper.best();
    st.es_best_epoch = stopper.best_epoch();
    st.es_bad_epochs = stopper.bad_epochs();
    if (improved) {
      st.best_epoch = m.epoch;
      st.best_val_top1 = m.val_top1;
    }
    if (stopper.should_stop()) {
      log::info("early stopping: validation top-1 has not improved for {} epochs (best {:.4f} at epoch {})",
                stopper.bad_epochs(), stopper.best(), stopper.best_epoch());
      st.finished = st.early_stopped = true;
    }
    if (st.epoch >= epochs) st.finished = true;
    bool saved = false;
    if (improved) {
      model::save_weights(*net_, run_.best_weights());
      if (has_val) {
        checkpoint("best", true, false);
        saved = true;  // a best checkpoint is a complete resume point too
      }
    }
    if (!saved && !st.finished && every_epochs > 0 && st.epoch % every_epochs == 0) checkpoint("epoch", false, false);
    if (signals::stop_requested()) return interrupted(signals::stop_signal());
  }
  // ============================================================================================

  model::save_weights(*net_, run_.final_weights());
  checkpoint("final", false, true);
  result.history = st.history;
  result.best_epoch = st.best_epoch;
  result.best_val_top1 = st.best_val_top1;
  result.early_stopped = st.early_stopped;
  return result;
}

void check_resume_config(const Config& current, const nlohmann::json& saved, const std::string& checkpoint,
                         bool allow_change) {
  Config old;
  for (const auto& [key, value] : saved.items()) {
    if (!find_option(key)) {
      log::warn("checkpoint '{}' has config key '{}', unknown to this version; ignored", checkpoint, key);
      continue;
    }
    old.set(key, value.is_string() ? value.get<std::string>() : value.dump(), Source::File, "checkpoint " + checkpoint);
  }
  std::vector<std::string> must, warn;
  for (const auto& key : current.diff(old)) {
    const std::string change = fmt::format("{} ({} -> {})", key, old.text(key), current.text(key));
    switch (resume_rule(key)) {
      case ResumeRule::MustMatch: must.push_back(change); break;
      case ResumeRule::Warn: warn.push_back(change); break;
      case ResumeRule::Free: break;
    }
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!must.empty() && !allow_change)
    throw ConfigError(fmt::format(
        "checkpoint '{}' was made with a different model or data configuration: {}. Resume with the same settings, "
        "start afresh with --set resume=none (and --overwrite), or pass --allow-config-change to fine-tune from it",
        checkpoint, join(must)));
  if (!must.empty()) log::warn("resuming with a changed model or data configuration (--allow-config-change): {}", join(must));
  if (!warn.empty()) log::warn("resuming with changed settings, the run will differ from here on: {}", join(warn));
}

}  // namespace cifar::train
