#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "common/config.h"

namespace cifar::train {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t = std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(span), 0.0, 1.0);
  return min_lr + (peak_lr - min_lr) * (linear ? 1.0 - t : 0.5 * (1.0 + std::cos(M_PI * t)));
}

double peak_lr(const Config& cfg) {
  return cfg.f("lr") * static_cast<double>(cfg.i("batch_size")) / static_cast<double>(cfg.i("lr_reference_batch"));
}

LrSchedule make_schedule(const Config& cfg, int64_t steps_per_epoch) {
  LrSchedule s;
  s.peak_lr = peak_lr(cfg);
  s.min_lr = cfg.f("min_lr");
  s.linear = cfg.s("lr_schedule") == "linear";
  s.total_steps = std::max<int64_t>(1, cfg.i("epochs") * steps_per_epoch);
  s.warmup_steps = std::min<int64_t>(s.total_steps - 1,
                                     std::llround(cfg.f("warmup_epochs") * static_cast<double>(steps_per_epoch)));
  return s;
}

bool EarlyStopping::update(int64_t epoch, double metric) {
  if (metric > best_) {
    best_ = metric;
    best_epoch_ = epoch;
    bad_epochs_ = 0;
    return true;
  }
  ++bad_epochs_;
  return false;
}

}  // namespace cifar::train
