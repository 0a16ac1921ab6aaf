// Learning-rate schedule, stepped per iteration: linear warmup to the peak, then cosine annealing (or, with
// `linear`, a straight line) down to min_lr. The peak is lr scaled linearly with the batch size: lr * batch_size / lr_reference_batch.
#pragma once
#include <cstdint>

namespace cifar {
class Config;
}

namespace cifar::train {

struct LrSchedule {
  double peak_lr = 0.1;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  bool linear = false;
  // Learning rate for step `step` (0-based): warmup gives peak*(step+1)/warmup_steps, then with
  // t = (step - warmup) / (total - warmup): min + (peak-min) * (1 + cos(pi * t)) / 2, or min + (peak-min) * (1 - t).
  double at(int64_t step) const;
};

double peak_lr(const Config& cfg);
LrSchedule make_schedule(const Config& cfg, int64_t steps_per_epoch);

// Early stopping on a metric that should grow (validation top-1).
class EarlyStopping {
 public:
  explicit EarlyStopping(int64_t patience) : patience_(patience) {}
  // Records the metric of `epoch`; returns true when it is a new best.
  bool update(int64_t epoch, double metric);
  bool should_stop() const { return patience_ > 0 && bad_epochs_ >= patience_; }
  double best() const { return best_; }
  int64_t best_epoch() const { return best_epoch_; }
  int64_t bad_epochs() const { return bad_epochs_; }
  // Continue from a saved state (resume).
  void restore(double best, int64_t best_epoch, int64_t bad_epochs) {
    best_ = best;
    best_epoch_ = best_epoch;
    bad_epochs_ = bad_epochs;
  }

 private:
  int64_t patience_;
  double best_ = -1e300;
  int64_t best_epoch_ = -1;
  int64_t bad_epochs_ = 0;
};

}  // namespace cifar::train
