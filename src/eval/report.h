// The full evaluation report of `cifar100 eval`: loss, top-1, top-5, superclass (coarse) accuracy,
// per-class accuracy, the confusion matrix and calibration (expected calibration error over equal-width
// confidence bins, as in Guo et al. 2017), computed from log-probabilities; plus its files (JSON, CSV and
// a PNG heatmap of the confusion matrix).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace cifar::eval {

struct CalibrationBin {
  double lower = 0, upper = 0;  // confidence in (lower, upper] (the first bin includes 0)
  int64_t count = 0;
  double accuracy = 0, confidence = 0;  // means over the bin's images (0 when empty)
};

struct Report {
  int64_t count = 0, num_classes = 0;
  double loss = 0, top1 = 0, top5 = 0;
  double coarse_top1 = -1;  // -1: no coarse labels; the fine prediction mapped to its superclass
  double ece = 0;
  std::vector<CalibrationBin> bins;
  std::vector<int64_t> class_count, class_correct;  // per true class
  std::vector<int64_t> confusion;                   // num_classes^2, row = true class, column = predicted

  double class_accuracy(int64_t c) const {
    return class_count[c] ? static_cast<double>(class_correct[c]) / static_cast<double>(class_count[c]) : 0.0;
  }
};

// `log_probs`: N x C (any float type, CPU), `labels`: N fine labels; `coarse_labels` (N, may be empty) and
// `fine_to_coarse` (C, may be empty) give the superclass accuracy.
Report make_report(const at::Tensor& log_probs, const std::vector<int64_t>& labels,
                   const std::vector<int64_t>& coarse_labels, const std::vector<int>& fine_to_coarse, int bins = 15);

nlohmann::json to_json(const Report& r, const std::vector<std::string>& class_names);
// confusion.csv (header row and column of class names), per_class.csv, confusion.png (row-normalised heat map,
// class names on both axes).
void write_confusion_csv(const std::string& path, const Report& r, const std::vector<std::string>& class_names);
void write_per_class_csv(const std::string& path, const Report& r, const std::vector<std::string>& class_names);
void write_confusion_png(const std::string& path, const Report& r, const std::vector<std::string>& class_names);
// The report directory: metrics.json (`metrics`, the report's JSON with any extra fields), confusion.csv,
// per_class.csv and confusion.png.
void write_report_dir(const std::string& dir, const Report& r, const nlohmann::json& metrics,
                      const std::vector<std::string>& class_names);

}  // namespace cifar::eval
