#include "serve/metrics.h"

#include <fmt/format.h>

namespace cifar::serve {

namespace {
const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const std::vector<double> kBatchBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256};
}  // namespace

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, sum_, name, braces, count_);
}

Metrics::Metrics() : batch_sizes_(kBatchBounds) {}

void Metrics::request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) it = latency_.emplace(route, Histogram(kLatencyBounds)).first;
  it->second.observe(seconds);
}

void Metrics::batch(int64_t images) {
  std::lock_guard<std::mutex> lock(mu_);
  batch_sizes_.observe(static_cast<double>(images));
}

void Metrics::set_model_load_seconds(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  model_load_seconds_ = s;
}

std::string Metrics::render(const std::function<int64_t()>& queue_depth) const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  out += "# HELP cifar100_requests_total HTTP requests by route and status code.\n";
  out += "# TYPE cifar100_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("cifar100_requests_total{{route=\"{}\",code=\"{}\"}} {}\n", key.first, key.second, n);
  out += "# HELP cifar100_request_seconds Request latency, from the request read to the response written.\n";
  out += "# TYPE cifar100_request_seconds histogram\n";
  for (const auto& [route, h] : latency_) h.render(out, "cifar100_request_seconds", "route=\"" + route + "\"");
  out += "# HELP cifar100_batch_images Images per forward pass (dynamic batching).\n";
  out += "# TYPE cifar100_batch_images histogram\n";
  batch_sizes_.render(out, "cifar100_batch_images", "");
  out += "# HELP cifar100_queue_images Images waiting for a forward pass.\n# TYPE cifar100_queue_images gauge\n";
  out += fmt::format("cifar100_queue_images {}\n", queue_depth ? queue_depth() : 0);
  out += "# HELP cifar100_model_load_seconds Time to load the model and run the warm-up pass.\n";
  out += "# TYPE cifar100_model_load_seconds gauge\n";
  out += fmt::format("cifar100_model_load_seconds {}\n", model_load_seconds_);
  return out;
}

}  // namespace cifar::serve
