#include "eval/report.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "common/fsutil.h"
#include "data/png.h"
#include "data/preview.h"

namespace cifar::eval {

Report make_report(const at::Tensor& log_probs, const std::vector<int64_t>& labels,
                   const std::vector<int64_t>& coarse_labels, const std::vector<int>& fine_to_coarse, int bins) {
  if (log_probs.dim() != 2 || log_probs.size(0) != static_cast<int64_t>(labels.size()))
    fail("make_report: {} rows of log-probabilities for {} labels", log_probs.size(0), labels.size());
  if (bins < 1) fail("make_report: need at least one calibration bin");
  Report r;
  r.count = log_probs.size(0);
  r.num_classes = log_probs.size(1);
  const int64_t n = r.count, c = r.num_classes;
  const at::Tensor lp = log_probs.to(torch::kCPU, torch::kFloat64).contiguous();
  const at::Tensor topk = std::get<1>(lp.topk(std::min<int64_t>(5, c), 1)).contiguous();
  const at::Tensor conf = std::get<0>(lp.max(1)).exp().contiguous();
  const double* lpp = lp.data_ptr<double>();
  const int64_t* tk = topk.data_ptr<int64_t>();
  const double* cf = conf.data_ptr<double>();
  const int64_t k = topk.size(1);

  r.class_count.assign(static_cast<size_t>(c), 0);
  r.class_correct.assign(static_cast<size_t>(c), 0);
  r.confusion.assign(static_cast<size_t>(c * c), 0);
  r.bins.resize(static_cast<size_t>(bins));
  for (int b = 0; b < bins; ++b) {
    r.bins[b].lower = static_cast<double>(b) / bins;
    r.bins[b].upper = static_cast<double>(b + 1) / bins;
  }
  std::vector<double> bin_acc(static_cast<size_t>(bins), 0), bin_conf(static_cast<size_t>(bins), 0);
  const bool coarse = !coarse_labels.empty() && static_cast<int64_t>(fine_to_coarse.size()) == c;
  if (!coarse_labels.empty() && static_cast<int64_t>(coarse_labels.size()) != n)
    fail("make_report: {} coarse labels for {} images", coarse_labels.size(), n);
  double loss = 0;
  int64_t top1 = 0, top5 = 0, coarse_hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[static_cast<size_t>(i)];
    if (y < 0 || y >= c) fail("make_report: label {} of image {} is outside 0..{}", y, i, c - 1);
    loss -= lpp[i * c + y];
    const int64_t pred = tk[i * k];
    const bool hit = pred == y;
    top1 += hit;
    for (int64_t j = 0; j < k; ++j) top5 += tk[i * k + j] == y;
    r.class_count[y]++;
    r.class_correct[y] += hit;
    r.confusion[static_cast<size_t>(y * c + pred)]++;
    if (coarse) coarse_hits += fine_to_coarse[static_cast<size_t>(pred)] == coarse_labels[static_cast<size_t>(i)];
    // Bin b holds confidences in (b/B, (b+1)/B]; confidence 0 goes to the first bin.
    int b = static_cast<int>(std::ceil(cf[i] * bins)) - 1;
    b = std::clamp(b, 0, bins - 1);
    r.bins[b].count++;
    bin_acc[b] += hit;
    bin_conf[b] += cf[i];
  }
  const double dn = static_cast<double>(std::max<int64_t>(n, 1));
  r.loss = loss / dn;
  r.top1 = static_cast<double>(top1) / dn;
  r.top5 = static_cast<double>(top5) / dn;
  if (coarse) r.coarse_top1 = static_cast<double>(coarse_hits) / dn;
  for (int b = 0; b < bins; ++b) {
    auto& bin = r.bins[b];
    if (!bin.count) continue;
    bin.accuracy = bin_acc[b] / static_cast<double>(bin.count);
    bin.confidence = bin_conf[b] / static_cast<double>(bin.count);
    r.ece += static_cast<double>(bin.count) / dn * std::fabs(bin.accuracy - bin.confidence);
  }
  return r;
}

nlohmann::json to_json(const Report& r, const std::vector<std::string>& names) {
  nlohmann::json per_class = nlohmann::json::array();
  for (int64_t c = 0; c < r.num_classes; ++c)
    per_class.push_back({{"class", c},
                         {"name", c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c)},
                         {"images", r.class_count[c]},
                         {"correct", r.class_correct[c]},
                         {"accuracy", r.class_accuracy(c)}});
  nlohmann::json bins = nlohmann::json::array();
  for (const auto& b : r.bins)
    bins.push_back({{"lower", b.lower}, {"upper", b.upper}, {"images", b.count}, {"accuracy", b.accuracy},
                    {"confidence", b.confidence}});
  nlohmann::json confusion = nlohmann::json::array();
  for (int64_t i = 0; i < r.num_classes; ++i)
    confusion.push_back(std::vector<int64_t>(r.confusion.begin() + i * r.num_classes,
                                             r.confusion.begin() + (i + 1) * r.num_classes));
  return {{"images", r.count},
          {"loss", r.loss},
          {"top1", r.top1},
          {"top5", r.top5},
          {"coarse_top1", r.coarse_top1 < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.coarse_top1)},
          {"ece", r.ece},
          {"calibration_bins", bins},
          {"per_class", per_class},
          {"confusion_matrix", confusion}};
}

namespace {
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) o += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return o + "\"";
}
std::string name_of(const std::vector<std::string>& names, int64_t c) {
  return c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c);
}
}  // namespace

void write_confusion_csv(const std::string& path, const Report& r, const std::vector<std::string>& names) {
  std::string out = "true\\predicted";
  // Appended piece by piece: GCC 12 warns (wrongly, -Wstringop-overflow) about "," + std::string temporaries.
  for (int64_t c = 0; c < r.num_classes; ++c) {
    out += ',';
    out += csv_field(name_of(names, c));
  }
  out += '\n';
  for (int64_t i = 0; i < r.num_classes; ++i) {
    out += csv_field(name_of(names, i));
    for (int64_t j = 0; j < r.num_classes; ++j) {
      out += ',';
      out += std::to_string(r.confusion[i * r.num_classes + j]);
    }
    out += '\n';
  }
  fs::write_atomic(path, out);
}

void write_per_class_csv(const std::string& path, const Report& r, const std::vector<std::string>& names) {
  std::string out = "class,name,images,correct,accuracy\n";
  for (int64_t c = 0; c < r.num_classes; ++c)
    out += fmt::format("{},{},{},{},{:.4f}\n", c, csv_field(name_of(names, c)), r.class_count[c], r.class_correct[c],
                       r.class_accuracy(c));
  fs::write_atomic(path, out);
}

void write_confusion_png(const std::string& path, const Report& r, const std::vector<std::string>& names) {
  // Cells of 8 px (7 coloured + a 1 px light gap) so one 7 px text row fits each class; colour = fraction of
  // the true class's images given that prediction (square root, to make small confusions visible).
  const int n = static_cast<int>(r.num_classes);
  constexpr int kCell = 8;
  size_t longest = 0;
  for (int c = 0; c < n; ++c) longest = std::max(longest, name_of(names, c).size() + 4);
  const int label = static_cast<int>(longest) * 6 + 6;
  const int title = 40;
  const int left = label, top = title + label;
  const int width = left + n * kCell + 10, height = top + n * kCell + 10;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 255);
  data::draw_text(rgb, width, height, 6, 6, "confusion matrix: rows = true class, columns = predicted", 1, 0, 0, 0);
  data::draw_text(rgb, width, height, 6, 20,
                  fmt::format("{} images, top-1 {:.2f}%, darker = larger share of the row", r.count, 100 * r.top1), 1,
                  0, 0, 0);
  for (int i = 0; i < n; ++i) {
    const std::string text = fmt::format("{:>2} {}", i, name_of(names, i));
    // Row label, right-aligned against the matrix.
    data::draw_text(rgb, width, height, left - 6 - static_cast<int>(text.size()) * 6, top + i * kCell, text, 1, 0, 0, 0);
    // Column label, rotated to read bottom-up, ending just above the matrix.
    const int tw = static_cast<int>(text.size()) * 6;
    std::vector<uint8_t> tmp(static_cast<size_t>(tw) * 7 * 3, 255);
    data::draw_text(tmp, tw, 7, 0, 0, text, 1, 0, 0, 0);
    for (int ty = 0; ty < 7; ++ty)
      for (int tx = 0; tx < tw; ++tx) {
        const uint8_t* p = tmp.data() + (static_cast<size_t>(ty) * tw + tx) * 3;
        if (p[0] == 255) continue;
        const int px = left + i * kCell + ty, py = top - 4 - tx;
        if (px < 0 || py < 0 || px >= width || py >= height) continue;
        std::fill_n(rgb.data() + (static_cast<size_t>(py) * width + px) * 3, 3, 0);
      }
    const double row = static_cast<double>(std::max<int64_t>(r.class_count[i], 1));
    for (int j = 0; j < n; ++j) {
      const double v = std::sqrt(static_cast<double>(r.confusion[static_cast<size_t>(i) * n + j]) / row);
      const uint8_t cr = static_cast<uint8_t>(std::lround(255 - v * (255 - 8)));
      const uint8_t cg = static_cast<uint8_t>(std::lround(255 - v * (255 - 48)));
      const uint8_t cb = static_cast<uint8_t>(std::lround(255 - v * (255 - 107)));
      for (int y = 0; y < kCell; ++y)
        for (int x = 0; x < kCell; ++x) {
          uint8_t* o = rgb.data() + (static_cast<size_t>(top + i * kCell + y) * width + left + j * kCell + x) * 3;
          const bool gap = x == kCell - 1 || y == kCell - 1;
          o[0] = gap ? 230 : cr, o[1] = gap ? 230 : cg, o[2] = gap ? 230 : cb;
        }
    }
  }
  data::write_png(path, width, height, rgb);
}

void write_report_dir(const std::string& dir, const Report& r, const nlohmann::json& metrics,
                      const std::vector<std::string>& class_names) {
  fs::make_dirs(dir);
  const std::filesystem::path d(dir);
  fs::write_atomic((d / "metrics.json").string(), metrics.dump(2) + "\n");
  write_confusion_csv((d / "confusion.csv").string(), r, class_names);
  write_per_class_csv((d / "per_class.csv").string(), r, class_names);
  write_confusion_png((d / "confusion.png").string(), r, class_names);
}

}  // namespace cifar::eval
