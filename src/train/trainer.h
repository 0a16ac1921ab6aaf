// The training loop: per-iteration LR schedule, MixUp, label smoothing, bf16 autocast, gradient
// clipping, SGD; validation every epoch with early stopping and best-model selection; metrics to the
// run directory and the log.
#pragma once
#include <cstdint>
#include <vector>

#include "data/cifar.h"
#include "model/device.h"
#include "model/wide_resnet.h"
#include "train/run_dir.h"

namespace cifar {
class Config;
}

namespace cifar::train {

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double lr = 0;      // at the epoch's last step
  double train_loss = 0, train_acc = 0;
  bool has_val = false;
  double val_loss = 0, val_top1 = 0, val_top5 = 0;
  double epoch_seconds = 0, train_seconds = 0, images_per_second = 0;
};

struct FitResult {
  std::vector<EpochMetrics> history;
  int64_t best_epoch = 0;  // 1-based; the last epoch when there is no validation set
  double best_val_top1 = 0;
  bool early_stopped = false;
};

class Trainer {
 public:
  Trainer(const Config& cfg, const model::Runtime& rt, model::WideResNet net, const RunDir& run);
  // Trains on `train_idx` of `train_split`, validating on `val_idx` (may be empty). Leaves the model with
  // its final weights; best.pt and final.pt are written to the run directory.
  FitResult fit(const data::Split& train_split, const std::vector<int64_t>& train_idx,
                const std::vector<int64_t>& val_idx);

 private:
  const Config& cfg_;
  model::Runtime rt_;
  model::WideResNet net_;
  const RunDir& run_;
};

// The line printed for each epoch (documented in the README for CloudWatch metric definitions).
std::string format_epoch_line(const EpochMetrics& m);

}  // namespace cifar::train
