#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/signals.h"
#include "model/torch_compat.h"
#include "data/device_augment.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "dist/group.h"
#include "dist/reducer.h"
#include "dist/sync_bn.h"
#include "eval/evaluate.h"
#include "model/weights.h"
#include "train/amp.h"
#include "train/ema.h"
#include "train/losses.h"
#include "train/optim.h"
#include "train/sam.h"
#include "train/schedule.h"

namespace cifar::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The L2 norm of all gradients together, as a device scalar (no synchronisation).
torch::Tensor global_grad_norm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({});
  return torch::stack(at::_foreach_norm(grads)).norm();
}

// A 64-bit digest of the weights, buffers and momentum, in logical element order (memory formats aside).
uint64_t state_digest(const Snapshot& s) {
  uint64_t h = 1469598103934665603ull;
  auto add = [&](const at::Tensor& t) {
    if (!t.defined()) {
      h = (h ^ 0xff) * 1099511628211ull;
      return;
    }
    const at::Tensor c = t.contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  for (const auto& [name, t] : s.model) add(t);
  for (const auto& t : s.momentum) add(t);
  for (const auto& [name, t] : s.ema) add(t);
  return h;
}

// Batch-norm running statistics left as they are for one forward pass (SAM's second pass sees the same
// batch again), by momentum 0 on every batch norm.
struct FreezeBnStats {
  explicit FreezeBnStats(torch::nn::Module& m) {
    for (auto& mod : m.modules(/*include_self=*/false))
      if (auto* bn = mod->as<torch::nn::BatchNorm2d>()) {
        saved.emplace_back(bn, bn->options.momentum().value_or(0.1));
        bn->options.momentum(0.0);
      }
  }
  ~FreezeBnStats() {
    for (auto& [bn, m] : saved) bn->options.momentum(m);
  }
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, double>> saved;
};

// Sync batch norm only for the duration of fit(): the model's batch norms go through dist's.
struct SyncBnScope {
  explicit SyncBnScope(dist::Group* g) : on(g != nullptr) {
    if (!on) return;
    dist::set_sync_batch_norm_group(g);
    model::set_batch_norm_override(&dist::sync_batch_norm);
  }
  ~SyncBnScope() {
    if (!on) return;
    model::set_batch_norm_override(nullptr);
    dist::set_sync_batch_norm_group(nullptr);
  }
  bool on;
};
}  // namespace

Trainer::Trainer(const Config& cfg, const model::Runtime& rt, model::WideResNet net, const RunDir* run,
                 Checkpointer* ckpt, dist::Group* group)
    : cfg_(cfg), rt_(rt), net_(std::move(net)), run_(run), ckpt_(ckpt), group_(group) {}

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
  const int rank = group_ ? group_->rank() : 0;
  const int world = group_ ? group_->world() : 1;
  lo.rank = rank;
  lo.world = world;
  const int64_t global_batch = lo.batch_size;
  if (lo.batch_size % world != 0)
    fail_config("batch_size {} is the global batch and must divide evenly among the {} ranks: choose a multiple of {}",
                lo.batch_size, world, world);
  const bool by_host = group_ && host_.hosts > 1;
  if (by_host) {
    lo.rank = host_.local_rank;
    lo.world = host_.local_world;
    lo.batch_size = global_batch / host_.hosts;
    lo.drop_last = true;
  }
  // Augmentation on the device: the loader only draws each image's random parameters.
  std::unique_ptr<data::DeviceAugmenter> device_aug;
  {
    const std::string& mode = cfg_.s("augment_on_device");
    std::string why;
    const bool ok = data::device_augment_supported(*lo.augment, &why);
    if (mode == "true" && !ok)
      fail_config("augment_on_device=true, but the pipeline's '{}' runs only in the CPU loader: set augment_on_device "
                  "to auto or false, or use crop, flip and cutout only",
                  why);
    if (mode == "true" || (mode == "auto" && ok && rt_.device.is_cuda())) {
      device_aug = std::make_unique<data::DeviceAugmenter>(train_split, *lo.augment, rt_.device, rt_.channels_last);
      lo.params_only = true;
      log::info("augmentation runs on {}: the {} training-split images stay there as uint8 ({:.0f} MB)",
                rt_.device.str(), train_split.size(), static_cast<double>(train_split.pixels.size()) / 1e6);
    } else if (mode == "auto" && rt_.device.is_cuda()) {
      log::info("augmentation runs in the CPU loader: '{}' has no device implementation", why);
    }
  }
  data::Loader loader(train_split, train_idx, lo);
  if (by_host) {
    const std::vector<uint64_t> counts = group_->allgather(static_cast<uint64_t>(loader.batches_per_epoch()));
    const uint64_t fewest = *std::min_element(counts.begin(), counts.end());
    log::info("the data is sharded by host: this host trains on its {} images, {} per step; every host runs {} steps "
              "per epoch (the smallest shard's)",
              loader.size(), lo.batch_size, fewest);
    loader.limit_batches(static_cast<int64_t>(fewest));
  }

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
  const double ema_decay = cfg_.f("ema_decay");
  const double sam_rho = cfg_.f("sam_rho");
  const bool sam_adaptive = cfg_.b("sam_adaptive");
  if (sam_rho > 0 && rt_.fp16)
    fail_config("sam_rho with precision=fp16 is not supported (the first pass would need its own loss scale): use "
                "precision=bf16");

  TrainState st;
  if (resume) {
    restore(*resume, *net_, *optimizer, params);
    st = resume->state;
    if (st.finished && !st.early_stopped && st.epoch < epochs) st.finished = false;  // epochs was raised
    stopper.restore(st.es_best, st.es_best_epoch, st.es_bad_epochs);
    std::vector<nlohmann::json> lines;
    for (const auto& m : st.history) lines.push_back(to_json(m));
    if (run_) run_->rewrite_metrics(lines);
    if (st.batch > steps_per_epoch)
      fail("the checkpoint stands at batch {} of epoch {}, but this configuration has {} batches per epoch",
           st.batch, st.epoch + 1, steps_per_epoch);
    log::info("resuming at epoch {}, batch {}/{} (step {}){}", st.epoch + 1, st.batch, steps_per_epoch, st.step,
              st.finished ? ": training had finished; only the final steps remain" : "");
  }
  // The weight average starts from the initial (or resumed) weights; a checkpoint carries it.
  std::unique_ptr<WeightEma> ema;
  if (ema_decay > 0) {
    ema = std::make_unique<WeightEma>(net_, rt_, ema_decay);
    if (resume && !resume->ema.empty()) load_state(resume->ema, *ema->model(), "checkpoint (weight average)");
    else if (resume)
      log::warn("the checkpoint has no weight average (ema_decay was 0): it starts from the resumed weights");
  }
  // precision=fp16: a dynamic loss scale, carried by checkpoints.
  std::unique_ptr<LossScaler> scaler;
  if (rt_.fp16) {
    scaler = std::make_unique<LossScaler>(rt_.device);
    if (st.loss_scale > 0) scaler->restore(st.loss_scale, st.scale_growth_tracker, st.skipped_steps);
  }
  int64_t skipped_at_epoch_start = scaler ? scaler->skipped_steps() : 0;

  // Data parallel: every rank starts from rank 0's weights and buffers; gradients are summed in buckets.
  std::unique_ptr<dist::Reducer> reducer;
  const bool sync_bn = group_ && cfg_.b("sync_bn");
  SyncBnScope sync_bn_scope(sync_bn ? group_ : nullptr);
  auto broadcast_buffers = [&] {
    std::vector<at::Tensor> bufs = net_->buffers();
    if (ema)
      for (auto& b : ema->model()->buffers()) bufs.push_back(b);
    group_->broadcast(bufs);
  };
  if (group_) {
    std::vector<at::Tensor> state = net_->parameters();
    for (auto& b : net_->buffers()) state.push_back(b);
    if (ema)
      for (auto& [name, t] : model::state_dict(*ema->model())) state.push_back(t);
    group_->broadcast(state);
    const double mib = 1024.0 * 1024.0;
    reducer = std::make_unique<dist::Reducer>(*group_, params, static_cast<int64_t>(cfg_.f("bucket_mb") * mib),
                                              static_cast<int64_t>(mib), 3);
    log::info("data parallel over {} ranks: {} per rank per step, {} gradient buckets ({:.1f} MiB), batch norm {}",
              world, global_batch / world, reducer->bucket_count(), static_cast<double>(reducer->bytes()) / mib,
              sync_bn ? "synchronised" : "local to each rank");
  }
  // Every rank must stop at the same step: a rank's stop request rides in the gradient all-reduce (per
  // step) or in this one (between phases).
  auto stop_agreed = [&](bool mine) {
    if (!group_) return mine;
    at::Tensor f = torch::full({1}, mine ? 1.0 : 0.0, torch::dtype(torch::kFloat32).device(rt_.device));
    group_->allreduce(f);
    return f.item<float>() > 0;
  };
  auto adopt_stop = [&] {
    if (!signals::stop_requested()) signals::request_stop(SIGTERM);  // another rank was signalled
  };
  // The weights, buffers and momentum must stay identical on every rank: checked once per epoch.
  auto check_ranks_agree = [&](const char* when) {
    if (!group_) return;
    Snapshot snap = capture(*net_, *optimizer, params, st, nlohmann::json::object(), "check",
                            ema ? &*ema->model() : nullptr);
    uint64_t mine = state_digest(snap);
    if (const char* t = std::getenv("CIFAR100_TEST_PERTURB_RANK"); t && std::atoi(t) == rank) mine ^= 1;
    const std::vector<uint64_t> all = group_->allgather(mine);
    for (int r = 1; r < world; ++r)
      if (all[static_cast<size_t>(r)] != all[0])
        fail("ranks disagree {}: the weights, buffers or optimizer state of rank {} differ from rank 0's (digest {:016x} "
             "against {:016x}); the run cannot continue consistently",
             when, r, all[static_cast<size_t>(r)], all[0]);
  };
  double backward_seconds = 0;
  int64_t backward_steps = 0;

  // Saves run in the background; a signal's save is synchronous so the process can exit right after it.
  auto last_save = Clock::now();
  auto checkpoint = [&](const std::string& reason, bool best, bool sync) {
    if (!ckpt_) return;
    if (scaler) {
      st.loss_scale = scaler->current_scale();
      st.scale_growth_tracker = scaler->growth_tracker();
      st.skipped_steps = scaler->skipped_steps();
    }
    Snapshot snap = capture(*net_, *optimizer, params, st, config_json, reason, ema ? &*ema->model() : nullptr);
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

  check_ranks_agree("at the start");
  log::info("training {} images for {} epochs of {} steps (batch {}, peak lr {:.4g}, warmup {} steps), validating on {}",
            loader.size(), epochs, steps_per_epoch, global_batch, sched.peak_lr, sched.warmup_steps, val_idx.size());

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
    torch::Tensor grad_norm_sum = torch::full({}, st.grad_norm_sum, torch::dtype(torch::kFloat64).device(rt_.device));
    // Moves the device-side meters and the elapsed time into `st` (before a checkpoint, at the epoch's end).
    auto sync_meters = [&] {
      st.loss_sum = loss_sum.item<double>();
      st.hit_sum = hit_sum.item<double>();
      st.grad_norm_sum = grad_norm_sum.item<double>();
      st.train_seconds += seconds_since(t_phase);
      t_phase = Clock::now();
    };
    log::Progress progress(fmt::format("epoch {}/{}", st.epoch + 1, epochs), steps_per_epoch, "img",
                           cfg_.i("log_interval"));
    std::string shown_loss;
    while (auto batch = next_batch()) {
      set_lr(*optimizer, sched.at(st.step));
      torch::Tensor x = device_aug ? (*device_aug)(batch->indices, batch->params)
                                   : batch->images.to(rt_.device, /*non_blocking=*/true);
      torch::Tensor y = batch->labels.to(rt_.device, /*non_blocking=*/true);
      const int64_t bs = y.size(0);

      // Dropout draws from torch's generator: in a distributed run, keyed by (step, rank), so that a resume
      // continues the same masks without every rank's generator state in the checkpoint.
      if (group_)
        torch::manual_seed(Rng(seed, Stream::Dropout, {static_cast<uint64_t>(st.step), static_cast<uint64_t>(rank)}).next() >> 1);
      Mixed mixed;
      if (mixing) {
        Rng rng(seed, Stream::MixUp, {static_cast<uint64_t>(st.step)});
        mixed = mix_batch(x, y, mix, rng);
      }
      auto forward_loss = [&] {
        torch::Tensor lg;
        {
          compat::AutocastGuard amp(rt_.device.type(), rt_.autocast(), rt_.autocast_dtype());
          lg = net_->forward(mixing ? mixed.inputs : x);
        }
        torch::Tensor l = mixing ? mixup_loss(lg, y, mixed, eps) : smoothed_cross_entropy(lg, y, eps);
        return std::make_pair(lg, l);
      };
      auto [logits, loss] = forward_loss();
      torch::Tensor hits;
      {
        torch::NoGradGuard no_grad;
        hits = mixing ? mixup_correct(logits.detach(), y, mixed)
                      : logits.detach().argmax(1).eq(y).sum().to(torch::kFloat64);
      }

      for (auto& p : params) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none)
      // SAM: this rank's own gradient (the reducer is not armed: per-rank perturbations, the paper's
      // m-sharpness), a step to w + e, and the loss there, with the batch-norm statistics left alone.
      torch::Tensor train_loss = loss;
      std::vector<at::Tensor> sam_saved;
      if (sam_rho > 0) {
        loss.backward();
        sam_saved = sam_perturb(params, sam_rho, sam_adaptive);
        for (auto& p : params) p.mutable_grad() = torch::Tensor();
        FreezeBnStats freeze(*net_);
        train_loss = forward_loss().second;
      }
      auto scaled = [&](const torch::Tensor& l) { return scaler ? scaler->scale(l) : l; };
      bool stop_now = false;
      const auto t_backward = Clock::now();
      if (reducer) {
        // Each rank's loss is its share of the global batch's mean, so the summed gradients are the
        // gradient of the global mean, whatever the shares' sizes.
        const auto opts = torch::dtype(torch::kFloat32).device(rt_.device);
        reducer->prepare({loss.detach().to(torch::kFloat32) * static_cast<double>(bs), hits.to(torch::kFloat32),
                          torch::full({1}, signals::stop_requested() ? 1.0 : 0.0, opts)});
        const int64_t step_images = by_host ? global_batch : batch->global_size;
        scaled(train_loss * (static_cast<double>(bs) / static_cast<double>(step_images))).backward();
        const at::Tensor sums = reducer->finish().to(torch::kFloat64);
        torch::NoGradGuard no_grad;
        loss_sum += sums[0];
        hit_sum += sums[1];
        stop_now = sums[2].item<double>() > 0;
      } else {
        scaled(train_loss).backward();
        torch::NoGradGuard no_grad;
        loss_sum += loss.detach().to(torch::kFloat64) * static_cast<double>(bs);
        hit_sum += hits;
        stop_now = signals::stop_requested();
      }
      backward_seconds += seconds_since(t_backward);
      ++backward_steps;
      if (sam_rho > 0) sam_restore(params, sam_saved);
      bool take_step = true;
      if (scaler) {
        scaler->unscale(params);  // before clipping, which must see the true norm
        take_step = scaler->step_ok();
      }
      if (take_step) {
        // The global norm (gradients are summed): measured on the device, read at the epoch's end.
        if (clip > 0) grad_norm_sum += torch::nn::utils::clip_grad_norm_(params, clip);
        else grad_norm_sum += global_grad_norm(params).to(torch::kFloat64);
        ++st.grad_norm_steps;
        optimizer->step();
        if (ema) ema->update(st.step + 1);
      }
      if (scaler) scaler->update();
      st.seen += by_host ? global_batch : batch->global_size;
      st.batch = batch->index + 1;
      ++st.step;
      if (batch->index % 10 == 0 || st.batch == steps_per_epoch)
        shown_loss = fmt::format("loss {:.4f}", loss_sum.item<double>() / static_cast<double>(st.seen));
      progress.update(st.batch, st.seen, shown_loss);

      if (stop_now) {
        adopt_stop();
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
    m.grad_norm = st.grad_norm_sum / static_cast<double>(std::max<int64_t>(st.grad_norm_steps, 1));
    if (!std::isfinite(m.train_loss))
      fail("training diverged: the training loss is {} in epoch {}; lower lr (now {}) or set grad_clip (now {})",
           m.train_loss, m.epoch, cfg_.text("lr"), cfg_.text("grad_clip"));
    m.train_seconds = st.train_seconds;
    m.images_per_second = static_cast<double>(st.seen) / std::max(st.train_seconds, 1e-9);
    if (reducer) {
      const dist::ReducerStats rs = reducer->take_stats();
      const double n = static_cast<double>(std::max<int64_t>(rs.steps, 1));
      const double bw = backward_seconds / static_cast<double>(std::max<int64_t>(backward_steps, 1));
      log::info("all-reduce per step: backward {:.1f} ms (all-reduce included), communication busy {:.1f} ms, exposed "
                "{:.1f} ms after backward ({:.0f}% hidden by the overlap)",
                bw * 1e3, rs.comm_busy_seconds / n * 1e3, rs.exposed_seconds / n * 1e3,
                rs.comm_busy_seconds > 0 ? 100.0 * std::max(0.0, 1.0 - rs.exposed_seconds / rs.comm_busy_seconds) : 0.0);
      backward_seconds = 0;
      backward_steps = 0;
      // Local batch norm: rank 0's running statistics are the model's (as DDP's broadcast_buffers).
      if (!sync_bn) broadcast_buffers();
      check_ranks_agree(fmt::format("after epoch {}", m.epoch).c_str());
    }
    if (scaler) {
      m.loss_scale = scaler->current_scale();
      m.skipped_steps = scaler->skipped_steps() - skipped_at_epoch_start;
      skipped_at_epoch_start = scaler->skipped_steps();
    }
    bool improved = true;
    bool ema_won = false;
    if (has_val) {
      // Each rank validates its share; the sums are reduced, so every rank sees the same figures.
      const auto [vb, ve] = data::rank_share(0, static_cast<int64_t>(val_idx.size()), lo.rank, lo.world);
      const std::vector<int64_t> share(val_idx.begin() + vb, val_idx.begin() + ve);
      auto validate = [&](model::WideResNet& model) {
        eval::Metrics v;
        if (!share.empty())
          v = eval::evaluate(model, train_split, share, rt_, cfg_.i("eval_batch_size"), lo.workers,
                             [] { return signals::stop_requested(); }, false, eval::parse_tta(cfg_.s("tta")));
        if (group_) {
          const auto c = static_cast<double>(v.count);
          at::Tensor sums = torch::tensor({v.loss * c, v.top1 * c, v.top5 * c, c, v.interrupted ? 1.0 : 0.0},
                                          torch::dtype(torch::kFloat64));
          group_->allreduce(sums);
          const double total = std::max(sums[3].item<double>(), 1.0);
          v.loss = sums[0].item<double>() / total;
          v.top1 = sums[1].item<double>() / total;
          v.top5 = sums[2].item<double>() / total;
          v.count = static_cast<int64_t>(total);
          v.interrupted = sums[4].item<double>() > 0;
          if (v.interrupted) adopt_stop();
        }
        return v;
      };
      const eval::Metrics v = validate(net_);
      if (v.interrupted) return interrupted(signals::stop_signal());  // validation is redone on resume
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_top1 = v.top1;
      m.val_top5 = v.top5;
      double score = v.top1;
      if (ema) {
        const eval::Metrics e = validate(ema->model());
        if (e.interrupted) return interrupted(signals::stop_signal());
        m.has_ema = true;
        m.ema_loss = e.loss;
        m.ema_top1 = e.top1;
        m.ema_top5 = e.top5;
        // The better of the two is the epoch's score and, if it is the best so far, the best weights.
        ema_won = e.top1 > v.top1;
        m.selected = ema_won ? "ema" : "raw";
        score = std::max(score, e.top1);
      }
      improved = stopper.update(m.epoch, score);
    }
    m.epoch_seconds = st.train_seconds + seconds_since(t_phase);
    if (run_) run_->append_metrics(to_json(m));
    log::info("{}", format_epoch_line(m));

    // The epoch is complete: the state now stands at the start of the next one.
    st.history.push_back(m);
    ++st.epoch;
    st.batch = st.seen = 0;
    st.loss_sum = st.hit_sum = st.train_seconds = st.grad_norm_sum = 0;
    st.grad_norm_steps = 0;
    st.es_best = stopper.best();
    st.es_best_epoch = stopper.best_epoch();
    st.es_bad_epochs = stopper.bad_epochs();
    if (improved) {
      st.best_epoch = m.epoch;
      st.best_val_top1 = m.has_ema ? std::max(m.val_top1, m.ema_top1) : m.val_top1;
    }
    if (stopper.should_stop()) {
      log::info("early stopping: validation top-1 has not improved for {} epochs (best {:.4f} at epoch {})",
                stopper.bad_epochs(), stopper.best(), stopper.best_epoch());
      st.finished = st.early_stopped = true;
    }
    if (st.epoch >= epochs) st.finished = true;
    bool saved = false;
    if (improved) {
      if (run_) model::save_weights(ema_won ? static_cast<torch::nn::Module&>(*ema->model()) : *net_, run_->best_weights());
      if (has_val) {
        checkpoint("best", true, false);
        saved = true;  // a best checkpoint is a complete resume point too
      }
    }
    if (!saved && !st.finished && every_epochs > 0 && st.epoch % every_epochs == 0) checkpoint("epoch", false, false);
    if (stop_agreed(signals::stop_requested())) {
      adopt_stop();
      return interrupted(signals::stop_signal());
    }
  }
  // ============================================================================================

  checkpoint("final", false, true);
  // With a weight average, the final weights are the average's.
  if (ema) load_state(model::state_dict(*ema->model()), *net_, "the weight average");
  if (run_) model::save_weights(*net_, run_->final_weights());
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
