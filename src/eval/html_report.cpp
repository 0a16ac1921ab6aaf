#include "eval/html_report.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "data/png.h"

namespace cifar::eval {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, int digits = 4) { return fmt::format("{:.{}f}", v, digits); }
std::string pct(double v) { return fmt::format("{:.2f}%", 100.0 * v); }
std::string data_uri_png(const std::string& bytes) { return "data:image/png;base64," + hash::base64(bytes.data(), bytes.size()); }

std::string read_if(const std::string& path) { return fs::exists(path) ? fs::read_text(path) : std::string(); }

json read_json_if(const std::string& path) {
  if (!fs::exists(path)) return json();
  try {
    return json::parse(fs::read_text(path));
  } catch (const json::exception& e) {
    fail("{} is not valid JSON ({}); re-run `cifar100 eval` or training to regenerate it", path, e.what());
  }
}

// RGB pixels of image i of a planar CHW split, interleaved (HWC), as a PNG.
std::string image_png(const data::Split& s, int64_t i) {
  const uint8_t* p = s.image(i);
  const int n = data::kImageSize * data::kImageSize;
  std::vector<uint8_t> rgb(static_cast<size_t>(n) * 3);
  for (int k = 0; k < n; ++k)
    for (int c = 0; c < 3; ++c) rgb[static_cast<size_t>(k) * 3 + c] = p[c * n + k];
  return data::encode_png(data::kImageSize, data::kImageSize, rgb, s.path + " image " + std::to_string(i));
}

// ---- SVG charts ---------------------------------------------------------------------------------------------
struct Series {
  std::string name, color;
  std::vector<double> x, y;
};

// A line chart with axes, min/max tick labels, a legend, one polyline per series.
std::string line_chart(const std::string& id, const std::string& title, const std::string& ylabel,
                       const std::vector<Series>& series) {
  const double W = 460, H = 260, L = 64, R = 12, T = 28, B = 36;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  const bool non_negative = y0 >= 0;
  y0 -= pad, y1 += pad;
  if (non_negative && y0 < 0) y0 = 0;  // a learning rate that ends at 0 keeps its axis at 0
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
  std::string o = fmt::format(
      "<svg class=\"chart\" id=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">"
      "<text x=\"{}\" y=\"18\" class=\"title\">{}</text>",
      id, W, H, W, H, esc(title), L, esc(title));
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"plot\"/>", L, T, W - L - R, H - T - B);
  // Horizontal grid lines and y ticks at round values: a step of 1, 2 or 5 times a power of ten, 3 to 6 of them.
  const double raw = (y1 - y0) / 4, mag = std::pow(10.0, std::floor(std::log10(raw))), r = raw / mag;
  const double tick = mag * (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10);
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(tick))));
  for (auto k = static_cast<int64_t>(std::ceil(y0 / tick - 1e-9)); static_cast<double>(k) * tick <= y1 + 1e-9 * tick; ++k) {
    const double v = static_cast<double>(k) * tick, y = py(v);
    o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" class=\"grid\"/>", L, W - R, y, y);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">{:.{}f}</text>", L - 4, y + 4,
                     v, decimals);
  }
  // Epoch ticks: every epoch when there are few, else about six round ones.
  const double span = x1 - x0, step = span <= 10 ? 1 : std::ceil(span / 6.0);
  for (double x = std::ceil(x0); x <= x1 + 1e-9; x += step)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{:g}</text>", px(x), H - B + 16, x);
  o += fmt::format("<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">epoch</text>", (L + W - R) / 2, H - 6);
  o += fmt::format("<text x=\"12\" y=\"{}\" class=\"axis\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
                   (T + H - B) / 2, (T + H - B) / 2, esc(ylabel));
  // The legend sits on the title's row, right-aligned, clear of the lines.
  double legend_w = 0;
  for (const auto& s : series) legend_w += 24 + 7.0 * static_cast<double>(s.name.size());
  double lx = W - R - legend_w;
  for (const auto& s : series) {
    std::string pts;
    for (size_t i = 0; i < s.x.size(); ++i) pts += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
    std::string values;
    for (size_t i = 0; i < s.y.size(); ++i) values += (i ? " " : "") + fmt::format("{:.6g}", s.y[i]);
    o += fmt::format("<polyline class=\"series\" data-series=\"{}\" data-points=\"{}\" data-values=\"{}\" points=\"{}\" "
                     "stroke=\"{}\"/>",
                     esc(s.name), s.x.size(), values, pts, s.color);
    for (size_t i = 0; i < s.x.size(); ++i)  // markers: one-epoch runs still show their point
      o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>", px(s.x[i]), py(s.y[i]), s.color);
    o += fmt::format("<rect x=\"{:.0f}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0f}\" y=\"{}\" "
                     "class=\"legend\">{}</text>",
                     lx, 9, s.color, lx + 14, 18, esc(s.name));
    lx += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  return o + "</svg>";
}

// Per-class accuracy as bars sorted from best to worst.
std::string per_class_chart(const std::vector<std::pair<std::string, double>>& sorted) {
  const double W = 940, H = 240, L = 40, B = 20, T = 10;
  const double n = static_cast<double>(std::max<size_t>(sorted.size(), 1)), bw = (W - L - 10) / n;
  std::string o = fmt::format("<svg class=\"chart\" id=\"chart-per-class\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
                              "role=\"img\" aria-label=\"per-class accuracy\">",
                              W, H, W, H);
  for (int k = 0; k <= 4; ++k) {
    const double y = T + (1 - k / 4.0) * (H - T - B);
    o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1f}\" "
                     "class=\"tick\" text-anchor=\"end\">{}%</text>",
                     L, W - 10, y, y, L - 4, y + 4, 25 * k);
  }
  for (size_t i = 0; i < sorted.size(); ++i) {
    const double h = sorted[i].second * (H - T - B);
    o += fmt::format("<rect class=\"bar\" data-class=\"{}\" data-accuracy=\"{:.6g}\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" "
                     "height=\"{:.2f}\"><title>{}: {}</title></rect>",
                     esc(sorted[i].first), sorted[i].second, L + bw * static_cast<double>(i), H - B - h,
                     std::max(bw - 1, 0.5), h, esc(sorted[i].first), pct(sorted[i].second));
  }
  return o + "</svg>";
}

// Reliability diagram: accuracy against mean confidence per bin, with the diagonal.
std::string calibration_chart(const json& bins, double ece) {
  const double S = 300, L = 44, T = 24, B = 34, R = 10, side = S - L - R;
  std::string o = fmt::format("<svg class=\"chart\" id=\"chart-calibration\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
                              "role=\"img\" aria-label=\"calibration\"><text x=\"{}\" y=\"16\" class=\"title\">"
                              "reliability (ECE {})</text>",
                              S, T + side + B, S, T + side + B, L, num(ece));
  const double base = T + side;
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"plot\"/>", L, T, side, side);
  o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"diagonal\"/>", L, base, L + side, T);
  for (int k = 0; k <= 4; ++k) {
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">{:g}</text>", L - 4,
                     base - side * k / 4.0 + 4, k / 4.0);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{:g}</text>", L + side * k / 4.0,
                     base + 14, k / 4.0);
  }
  o += fmt::format("<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">confidence</text>", L + side / 2, base + 28);
  for (const auto& b : bins) {
    const double lo = b.at("lower").get<double>(), hi = b.at("upper").get<double>();
    const double acc = b.at("accuracy").get<double>();
    const auto n = b.at("images").get<int64_t>();
    o += fmt::format("<rect class=\"bin\" data-lower=\"{:.6g}\" data-upper=\"{:.6g}\" data-accuracy=\"{:.6g}\" "
                     "data-confidence=\"{:.6g}\" data-images=\"{}\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" "
                     "height=\"{:.2f}\"><title>{:.2f}-{:.2f}: {} images, accuracy {}</title></rect>",
                     lo, hi, acc, b.at("confidence").get<double>(), n, L + lo * side, base - acc * side,
                     std::max((hi - lo) * side - 1, 0.5), acc * side, lo, hi, n, pct(acc));
  }
  return o + "</svg>";
}

std::string img_tag(const std::string& id, const std::string& png, const std::string& alt, const std::string& cls = "") {
  return fmt::format("<img id=\"{}\" class=\"{}\" alt=\"{}\" src=\"{}\">", id, cls, esc(alt), data_uri_png(png));
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:0}.kpis div{background:#f0f4fa;border-radius:6px;padding:8px 12px;min-width:110px}
.kpis dt{font-size:12px;color:#5a6472}.kpis dd{margin:0;font-size:20px;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;max-width:100%;height:auto}svg .title{font-size:13px;font-weight:600}
svg .tick,svg .legend{font-size:11px;fill:#5a6472}svg .axis{font-size:11px;fill:#333}
svg .plot{fill:#fbfcfd;stroke:#cfd5dd}svg .grid{stroke:#e6e9ee}svg polyline{fill:none;stroke-width:2}
svg .bar{fill:#457b9d}svg .bin{fill:#e76f51;opacity:.85}svg .diagonal{stroke:#888;stroke-dasharray:4 3}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eceff3;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;gap:28px}
#confusion-img{max-width:100%;border:1px solid #e2e5ea}
#augmented-img{max-width:100%;image-rendering:pixelated}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
figure.sample{margin:0;border:1px solid #e2e5ea;border-radius:6px;padding:6px;background:#fafbfc}
figure.sample img{width:96px;height:96px;image-rendering:pixelated;display:block;margin:0 auto 4px}
figure.mistake{border-color:#e76f51}figcaption{font-size:12px}figcaption ol{margin:2px 0 0;padding-left:18px}
.ok{color:#2a9d8f;font-weight:600}.bad{color:#d62828;font-weight:600}
pre{background:#f3f5f8;padding:10px;border-radius:6px;overflow:auto;font-size:12px;max-height:420px}
.muted{color:#6b7480}
)";

}  // namespace

json make_gallery(const data::Split& test, const at::Tensor& log_probs, const std::vector<std::string>& class_names,
                  int first, int mistakes) {
  const at::Tensor probs = log_probs.to(torch::kFloat).exp().contiguous();
  const int64_t n = probs.size(0), k = std::min<int64_t>(3, probs.size(1));
  const auto [top_p, top_i] = probs.topk(k, 1);
  const auto P = top_p.accessor<float, 2>();
  const auto I = top_i.accessor<int64_t, 2>();
  auto name = [&](int64_t c) { return c < static_cast<int64_t>(class_names.size()) ? class_names[c] : std::to_string(c); };
  auto entry = [&](int64_t i, const char* kind) {
    json top = json::array();
    for (int64_t j = 0; j < k; ++j) top.push_back({{"class", I[i][j]}, {"name", name(I[i][j])}, {"probability", P[i][j]}});
    const int64_t label = test.fine[static_cast<size_t>(i)];
    return json{{"index", i},         {"kind", kind},       {"label", label},
                {"label_name", name(label)}, {"top3", top},  {"correct", I[i][0] == label},
                {"png_base64", [&] {
                   const std::string png = image_png(test, i);
                   return hash::base64(png.data(), png.size());
                 }()}};
  };
  json items = json::array();
  for (int64_t i = 0; i < std::min<int64_t>(first, n); ++i) items.push_back(entry(i, "first"));
  std::vector<int64_t> wrong;
  for (int64_t i = 0; i < n; ++i)
    if (I[i][0] != test.fine[static_cast<size_t>(i)]) wrong.push_back(i);
  std::stable_sort(wrong.begin(), wrong.end(), [&](int64_t a, int64_t b) { return P[a][0] > P[b][0]; });
  for (size_t j = 0; j < std::min<size_t>(static_cast<size_t>(std::max(mistakes, 0)), wrong.size()); ++j)
    items.push_back(entry(wrong[j], "mistake"));
  return {{"images", n}, {"items", items}};
}

std::string render_report_html(const std::string& run_dir, const std::string& model_dir) {
  auto path = [&](const std::string& f) { return (stdfs::path(run_dir) / f).string(); };
  if (!fs::exists(path("metrics.jsonl")) || !fs::exists(path("results.json")))
    fail("'{}' holds no finished training run: {} is missing (a report needs metrics.jsonl and results.json; "
         "run `cifar100 train --out {}` to the end first)",
         run_dir, fs::exists(path("metrics.jsonl")) ? path("results.json") : path("metrics.jsonl"), run_dir);
  std::vector<json> epochs;
  {
    std::ifstream in(path("metrics.jsonl"));
    std::string line;
    int64_t no = 0;
    while (std::getline(in, line)) {
      ++no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        epochs.push_back(json::parse(line));
      } catch (const json::exception& e) {
        fail("{} line {} is not valid JSON: {}", path("metrics.jsonl"), no, e.what());
      }
    }
  }
  const json results = read_json_if(path("results.json"));
  const json report = read_json_if(path("report/metrics.json"));
  const json gallery = read_json_if(path("report/gallery.json"));
  const json model_cfg =
      read_json_if(model_dir.empty() ? path("model/config.json") : (stdfs::path(model_dir) / "config.json").string());
  const std::string config_yaml = read_if(path("config.yaml"));
  auto rget = [&](const char* k, double d = -1) { return results.contains(k) && results[k].is_number() ? results[k].get<double>() : d; };

  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">";
  const std::string model = results.value("model", std::string("model"));
  h += "<title>" + esc(model + " on CIFAR-100: training report") + "</title><style>" + kStyle + "</style></head><body>";
  h += "<header><h1>" + esc(model) + " on CIFAR-100</h1><p>training report of " + esc(run_dir) + "</p></header><main>";

  // Summary figures.
  h += "<section id=\"summary\"><h2>Results</h2><dl class=\"kpis\">";
  auto kpi = [&](const std::string& id, const std::string& label, double v, const std::string& shown) {
    h += fmt::format("<div><dt>{}</dt><dd id=\"{}\" data-value=\"{:.10g}\">{}</dd></div>", esc(label), id, v, esc(shown));
  };
  kpi("test-top1", "test top-1", rget("test_top1"), pct(rget("test_top1")));
  kpi("test-top5", "test top-5", rget("test_top5"), pct(rget("test_top5")));
  kpi("test-loss", "test loss", rget("test_loss"), num(rget("test_loss")));
  if (report.contains("coarse_top1") && report["coarse_top1"].is_number() && report["coarse_top1"].get<double>() >= 0)
    kpi("coarse-top1", "superclass top-1", report["coarse_top1"].get<double>(), pct(report["coarse_top1"].get<double>()));
  if (report.contains("ece") && report["ece"].is_number()) kpi("ece", "calibration error (ECE)", report["ece"].get<double>(), num(report["ece"].get<double>()));
  if (results.contains("best_val_top1") && results["best_val_top1"].is_number())
    kpi("best-val-top1", "best validation top-1", rget("best_val_top1"), pct(rget("best_val_top1")));
  kpi("epochs-run", "epochs", rget("epochs_run", 0), fmt::format("{}", static_cast<int64_t>(rget("epochs_run", 0))));
  kpi("wall-seconds", "wall time", rget("wall_seconds", 0), fmt::format("{:.0f} s", rget("wall_seconds", 0)));
  h += "</dl>";
  h += fmt::format("<p class=\"muted\">{} images tested with the {} weights{}.</p></section>",
                   static_cast<int64_t>(rget("test_images", 0)), esc(results.value("weights_tested", std::string("?"))),
                   results.contains("best_epoch") && results.value("weights_tested", "") == "best"
                       ? fmt::format(" (epoch {})", results["best_epoch"].get<int64_t>())
                       : "");

  // Learning curves.
  auto series = [&](const std::string& name, const std::string& key, const std::string& color) {
    Series s{name, color, {}, {}};
    for (const auto& e : epochs)
      if (e.contains(key) && e[key].is_number()) {
        s.x.push_back(e.at("epoch").get<double>());
        s.y.push_back(e[key].get<double>());
      }
    return s;
  };
  auto present = [](std::vector<Series> v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](const Series& s) { return s.x.empty(); }), v.end());
    return v;
  };
  h += "<section id=\"curves\"><h2>Learning curves</h2><div class=\"charts\">";
  h += line_chart("chart-loss", "loss", "cross-entropy",
                  present({series("train", "train_loss", "#1d3557"), series("validation", "val_loss", "#e76f51"),
                           series("ema", "ema_loss", "#2a9d8f")}));
  h += line_chart("chart-top1", "top-1 accuracy", "accuracy",
                  present({series("train", "train_acc", "#1d3557"), series("validation", "val_top1", "#e76f51"),
                           series("ema", "ema_top1", "#2a9d8f")}));
  h += line_chart("chart-lr", "learning rate (at each epoch's end)", "lr", present({series("lr", "lr", "#6a4c93")}));
  h += line_chart("chart-speed", "throughput", "images/s", present({series("images/s", "images_per_second", "#457b9d")}));
  h += "</div><p class=\"muted\">Training loss and accuracy are measured on the augmented images as they were "
       "trained, so they can sit below validation.</p></section>";

  // Confusion matrix.
  h += "<section id=\"confusion\"><h2>Confusion matrix</h2>";
  if (fs::exists(path("report/confusion.png")))
    h += img_tag("confusion-img", fs::read_text(path("report/confusion.png")), "confusion matrix, rows: true class") +
         "<p class=\"muted\">Row-normalised: row = true class, column = predicted class.</p>";
  else
    h += "<p class=\"muted\">no report/confusion.png in this run</p>";
  h += "</section>";

  // Per-class accuracy, best and worst.
  std::vector<std::pair<std::string, double>> classes;
  std::vector<int64_t> class_images;
  if (report.contains("per_class"))
    for (const auto& c : report["per_class"]) {
      classes.emplace_back(c.at("name").get<std::string>(), c.at("accuracy").get<double>());
      class_images.push_back(c.at("images").get<int64_t>());
    }
  std::vector<size_t> order(classes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return classes[a].second > classes[b].second; });
  std::vector<std::pair<std::string, double>> sorted;
  for (size_t i : order) sorted.push_back(classes[i]);
  h += "<section id=\"per-class\"><h2>Per-class accuracy</h2>";
  if (sorted.empty()) {
    h += "<p class=\"muted\">no per-class figures (report/metrics.json is missing)</p>";
  } else {
    h += per_class_chart(sorted) + "<div class=\"cols\">";
    auto table = [&](const std::string& id, const std::string& title, bool best) {
      h += "<div><h3>" + title + "</h3><table id=\"" + id + "\"><tr><th>class</th><th>accuracy</th><th>images</th></tr>";
      const size_t n = std::min<size_t>(10, order.size());
      for (size_t j = 0; j < n; ++j) {
        const size_t i = best ? order[j] : order[order.size() - 1 - j];
        h += fmt::format("<tr data-class=\"{}\" data-accuracy=\"{:.6g}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                         esc(classes[i].first), classes[i].second, esc(classes[i].first), pct(classes[i].second),
                         class_images[i]);
      }
      h += "</table></div>";
    };
    table("best-classes", "Best 10", true);
    table("worst-classes", "Worst 10", false);
    h += "</div>";
  }
  h += "</section>";

  // Superclass accuracy: a prediction counts when its class lies in the true class's superclass.
  h += "<section id=\"superclass\"><h2>Superclass accuracy</h2>";
  const bool have_coarse = model_cfg.contains("coarse_class_names") && model_cfg.contains("fine_to_coarse") &&
                           report.contains("confusion_matrix") && !model_cfg["coarse_class_names"].empty();
  if (have_coarse) {
    const auto coarse_names = model_cfg["coarse_class_names"].get<std::vector<std::string>>();
    const auto f2c = model_cfg["fine_to_coarse"].get<std::vector<int>>();
    const auto& cm = report["confusion_matrix"];
    std::vector<int64_t> total(coarse_names.size()), hit(coarse_names.size());
    for (size_t t = 0; t < cm.size() && t < f2c.size(); ++t)
      for (size_t p = 0; p < cm[t].size() && p < f2c.size(); ++p) {
        const auto v = cm[t][p].get<int64_t>();
        total[static_cast<size_t>(f2c[t])] += v;
        if (f2c[t] == f2c[p]) hit[static_cast<size_t>(f2c[t])] += v;
      }
    std::vector<size_t> so(coarse_names.size());
    std::iota(so.begin(), so.end(), 0);
    auto acc = [&](size_t s) { return total[s] ? static_cast<double>(hit[s]) / static_cast<double>(total[s]) : 0.0; };
    std::stable_sort(so.begin(), so.end(), [&](size_t a, size_t b) { return acc(a) > acc(b); });
    h += "<table id=\"superclass-table\"><tr><th>superclass</th><th>accuracy</th><th>images</th></tr>";
    for (size_t s : so)
      h += fmt::format("<tr data-superclass=\"{}\" data-accuracy=\"{:.6g}\" data-images=\"{}\"><td>{}</td><td class=\"n\">{}</td>"
                       "<td class=\"n\">{}</td></tr>",
                       esc(coarse_names[s]), acc(s), total[s], esc(coarse_names[s]), pct(acc(s)), total[s]);
    h += "</table>";
  } else {
    h += report.contains("confusion_matrix")
             ? "<p class=\"muted\">no superclass labels in this model's config</p>"
             : "<p class=\"muted\">no confusion matrix (report/metrics.json is missing)</p>";
  }
  h += "</section>";

  // Calibration.
  h += "<section id=\"calibration\"><h2>Calibration</h2>";
  if (report.contains("calibration_bins"))
    h += calibration_chart(report["calibration_bins"], report.contains("ece") && report["ece"].is_number() ? report["ece"].get<double>() : 0.0) +
         "<p class=\"muted\">Bars: accuracy of the test images whose top-1 confidence falls in each bin; a calibrated "
         "model follows the diagonal.</p>";
  else
    h += "<p class=\"muted\">no calibration figures</p>";
  h += "</section>";

  // Gallery.
  h += "<section id=\"gallery\"><h2>Test images and predictions</h2>";
  if (gallery.contains("items") && !gallery["items"].empty()) {
    for (const char* kind : {"first", "mistake"}) {
      h += std::string("<h3>") +
           (std::string(kind) == "first" ? "The first test images" : "The most confident mistakes") +
           "</h3><div class=\"gallery\" id=\"gallery-" + kind + "\">";
      for (const auto& it : gallery["items"]) {
        if (it.at("kind").get<std::string>() != kind) continue;
        const bool ok = it.at("correct").get<bool>();
        const auto& top = it.at("top3");
        h += fmt::format("<figure class=\"sample{}\" data-index=\"{}\" data-label=\"{}\" data-pred=\"{}\" data-correct=\"{}\" "
                         "data-kind=\"{}\"><img alt=\"test image {}\" src=\"data:image/png;base64,{}\"><figcaption>"
                         "true: <b>{}</b> <span class=\"{}\">{}</span><ol>",
                         ok ? "" : " mistake", it.at("index").get<int64_t>(), esc(it.at("label_name").get<std::string>()),
                         esc(top.at(0).at("name").get<std::string>()), ok ? "true" : "false", kind,
                         it.at("index").get<int64_t>(), it.at("png_base64").get<std::string>(),
                         esc(it.at("label_name").get<std::string>()), ok ? "ok" : "bad", ok ? "&#10003;" : "&#10007;");
        for (const auto& t : top)
          h += fmt::format("<li data-class=\"{}\" data-prob=\"{:.6g}\">{} {}</li>", esc(t.at("name").get<std::string>()),
                           t.at("probability").get<double>(), esc(t.at("name").get<std::string>()),
                           pct(t.at("probability").get<double>()));
        h += "</ol></figcaption></figure>";
      }
      h += "</div>";
    }
  } else {
    h += "<p class=\"muted\">no report/gallery.json in this run</p>";
  }
  h += "</section>";

  h += "<section id=\"augmented\"><h2>Augmented training samples</h2>";
  if (fs::exists(path("report/augmented_samples.png")))
    h += img_tag("augmented-img", fs::read_text(path("report/augmented_samples.png")), "augmented training images");
  else
    h += "<p class=\"muted\">no report/augmented_samples.png in this run</p>";
  h += "</section>";

  // Hardware and timing.
  double epoch_sum = 0, ips_sum = 0;
  for (const auto& e : epochs) {
    epoch_sum += e.value("epoch_seconds", 0.0);
    ips_sum += e.value("images_per_second", 0.0);
  }
  const double ne = static_cast<double>(std::max<size_t>(epochs.size(), 1));
  h += "<section id=\"hardware\"><h2>Hardware and timing</h2><table id=\"hardware-table\">";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>";
  };
  if (results.contains("hardware") && results["hardware"].is_object())
    for (const auto& [k, v] : results["hardware"].items()) row(k, v.is_string() ? v.get<std::string>() : v.dump());
  row("runtime", results.value("runtime", std::string("?")));
  row("parameters", fmt::format("{}", static_cast<int64_t>(rget("parameters", 0))));
  row("wall time", fmt::format("{:.1f} s (data preparation, training, the test and the artifact)", rget("wall_seconds", 0)));
  row("mean epoch", fmt::format("{:.2f} s", epoch_sum / ne));
  row("mean training throughput", fmt::format("{:.1f} images/s", ips_sum / ne));
  if (results.contains("sagemaker")) row("SageMaker job", results["sagemaker"].value("job_name", std::string("?")));
  h += "</table></section>";

  h += "<section id=\"config\"><h2>Configuration</h2><pre id=\"config-yaml\">" +
       (config_yaml.empty() ? std::string("no config.yaml in this run") : esc(config_yaml)) + "</pre></section>";
  h += "</main></body></html>\n";
  return h;
}

std::string write_report_html(const std::string& run_dir, const std::string& out, const std::string& model_dir) {
  const std::string path = out.empty() ? (stdfs::path(run_dir) / "report.html").string() : out;
  fs::write_atomic(path, render_report_html(run_dir, model_dir));
  return path;
}

}  // namespace cifar::eval
