// Per-epoch metrics as reported in metrics.jsonl, the log and checkpoints.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cifar::train {

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double lr = 0;      // at the epoch's last step
  double train_loss = 0, train_acc = 0;
  bool has_val = false;
  double val_loss = 0, val_top1 = 0, val_top5 = 0;
  bool has_ema = false;  // ema_decay > 0 (with a validation split): the weight average's validation figures
  double ema_loss = 0, ema_top1 = 0, ema_top5 = 0;
  std::string selected = "raw";  // the weights that scored this epoch (raw or ema)
  double grad_norm = 0;          // mean global L2 norm of the gradients over the epoch's steps, before clipping
  double loss_scale = 0;         // precision=fp16: the loss scale at the epoch's end (0 = not used)
  int64_t skipped_steps = 0;     // precision=fp16: steps skipped in this epoch for inf/NaN gradients
  double epoch_seconds = 0, train_seconds = 0, images_per_second = 0;
};

nlohmann::json to_json(const EpochMetrics& m);
EpochMetrics epoch_metrics_from_json(const nlohmann::json& j);
// The line printed for each epoch (documented in docs/SAGEMAKER.md for CloudWatch metric definitions).
std::string format_epoch_line(const EpochMetrics& m);
// The line printed after the final test.
std::string format_test_line(double loss, double top1, double top5, double wall_seconds);

// A SageMaker MetricDefinition: CloudWatch reads `regex`'s first capture group from every log line.
struct MetricDefinition {
  std::string name, regex;
};
// The definitions that read the epoch and test lines above (train/val loss and accuracy, lr, images/s,
// test top-1/top-5, ...): one per value, each anchored on its unambiguous `key=` and terminating ';'.
const std::vector<MetricDefinition>& metric_definitions();
// As the JSON list that CreateTrainingJob's AlgorithmSpecification.MetricDefinitions takes.
nlohmann::json metric_definitions_json();

}  // namespace cifar::train
