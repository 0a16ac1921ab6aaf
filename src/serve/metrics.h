// Server metrics in the Prometheus text format: requests by route and status, request latency and batch size
// histograms, queue depth and model load time. Thread-safe; cheap enough to update on every request.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace cifar::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name` with `labels` ("" or `route="/x"`).
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& route, int status, double seconds);
  void batch(int64_t images);
  void set_model_load_seconds(double s);
  // `queue_depth` is read at render time.
  std::string render(const std::function<int64_t()>& queue_depth) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram batch_sizes_;
  double model_load_seconds_ = 0;
};

}  // namespace cifar::serve
