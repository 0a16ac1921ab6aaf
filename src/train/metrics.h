// Per-epoch metrics as reported in metrics.jsonl, the log and checkpoints.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cifar::train {

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double lr = 0;      // at the epoch's last step
  double train_loss = 0, train_acc = 0;
  bool has_val = false;
  double val_loss = 0, val_top1 = 0, val_top5 = 0;
  double epoch_seconds = 0, train_seconds = 0, images_per_second = 0;
};

nlohmann::json to_json(const EpochMetrics& m);
EpochMetrics epoch_metrics_from_json(const nlohmann::json& j);
// The line printed for each epoch (documented in the README for CloudWatch metric definitions).
std::string format_epoch_line(const EpochMetrics& m);

}  // namespace cifar::train
