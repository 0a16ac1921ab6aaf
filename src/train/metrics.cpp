#include "train/metrics.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cifar::train {

nlohmann::json to_json(const EpochMetrics& m) {
  nlohmann::json j = {{"epoch", m.epoch},
                      {"lr", m.lr},
                      {"train_loss", m.train_loss},
                      {"train_acc", m.train_acc},
                      {"grad_norm", m.grad_norm},
                      {"epoch_seconds", m.epoch_seconds},
                      {"train_seconds", m.train_seconds},
                      {"images_per_second", m.images_per_second}};
  if (m.has_val) {
    j["val_loss"] = m.val_loss;
    j["val_top1"] = m.val_top1;
    j["val_top5"] = m.val_top5;
  }
  if (m.has_ema) {
    j["ema_loss"] = m.ema_loss;
    j["ema_top1"] = m.ema_top1;
    j["ema_top5"] = m.ema_top5;
    j["selected"] = m.selected;
  }
  if (m.loss_scale > 0) {
    j["loss_scale"] = m.loss_scale;
    j["skipped_steps"] = m.skipped_steps;
  }
  return j;
}

EpochMetrics epoch_metrics_from_json(const nlohmann::json& j) {
  EpochMetrics m;
  m.epoch = j.at("epoch").get<int64_t>();
  m.lr = j.at("lr").get<double>();
  m.train_loss = j.at("train_loss").get<double>();
  m.train_acc = j.at("train_acc").get<double>();
  m.grad_norm = j.value("grad_norm", 0.0);
  m.epoch_seconds = j.at("epoch_seconds").get<double>();
  m.train_seconds = j.at("train_seconds").get<double>();
  m.images_per_second = j.at("images_per_second").get<double>();
  m.has_val = j.contains("val_top1");
  if (m.has_val) {
    m.val_loss = j.at("val_loss").get<double>();
    m.val_top1 = j.at("val_top1").get<double>();
    m.val_top5 = j.at("val_top5").get<double>();
  }
  m.has_ema = j.contains("ema_top1");
  if (m.has_ema) {
    m.ema_loss = j.at("ema_loss").get<double>();
    m.ema_top1 = j.at("ema_top1").get<double>();
    m.ema_top5 = j.at("ema_top5").get<double>();
    m.selected = j.value("selected", "raw");
  }
  if (j.contains("loss_scale")) {
    m.loss_scale = j.at("loss_scale").get<double>();
    m.skipped_steps = j.value("skipped_steps", int64_t{0});
  }
  return m;
}

std::string format_epoch_line(const EpochMetrics& m) {
  std::string s = fmt::format("epoch={}; lr={:.6f}; train_loss={:.4f}; train_acc={:.4f};", m.epoch, m.lr,
                              m.train_loss, m.train_acc);
  if (m.has_val)
    s += fmt::format(" val_loss={:.4f}; val_top1={:.4f}; val_top5={:.4f};", m.val_loss, m.val_top1, m.val_top5);
  if (m.has_ema)
    s += fmt::format(" ema_loss={:.4f}; ema_top1={:.4f}; ema_top5={:.4f}; selected={};", m.ema_loss, m.ema_top1,
                     m.ema_top5, m.selected);
  if (m.loss_scale > 0) s += fmt::format(" loss_scale={:g}; skipped_steps={};", m.loss_scale, m.skipped_steps);
  s += fmt::format(" epoch_seconds={:.1f}; images_per_second={:.1f};", m.epoch_seconds, m.images_per_second);
  return s;
}

std::string format_test_line(double loss, double top1, double top5, double wall_seconds) {
  return fmt::format("test_loss={:.4f}; test_top1={:.4f}; test_top5={:.4f}; wall_seconds={:.1f};", loss, top1, top5,
                     wall_seconds);
}

const std::vector<MetricDefinition>& metric_definitions() {
  // No key is a suffix of another (lr / min_lr, loss / train_loss): each regex starts at a key boundary.
  static const std::vector<MetricDefinition> defs = [] {
    const char* number = "([-+0-9.eE]+);";
    std::vector<MetricDefinition> d = {{"epoch", "INFO  epoch=([0-9]+);"}, {"lr", std::string(" lr=") + number}};
    for (const char* key : {"train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "epoch_seconds",
                            "images_per_second", "test_loss", "test_top1", "test_top5", "wall_seconds"})
      d.push_back({key, std::string(key) + "=" + number});
    return d;
  }();
  return defs;
}

nlohmann::json metric_definitions_json() {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& d : metric_definitions()) j.push_back({{"Name", d.name}, {"Regex", d.regex}});
  return j;
}

}  // namespace cifar::train
