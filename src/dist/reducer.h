// Data-parallel gradient reduction, the way PyTorch's DDP reducer does it: parameters are grouped into
// buckets in reverse order (the order backward produces their gradients; the first bucket is small so
// communication starts early), an autograd hook copies each gradient into its bucket as soon as it is
// computed, and a full bucket is all-reduced asynchronously while backward goes on. Buckets are launched
// strictly in order, so every rank issues the same collectives in the same order. finish() waits and
// writes the summed gradients back. A few extra values (the step's loss and hit counts, a stop flag) ride
// along in the last bucket, so they cost no collective of their own.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

namespace c10d {
class Work;
}

namespace cifar::dist {

class Group;

struct ReducerStats {
  int64_t steps = 0;
  double comm_busy_seconds = 0;  // wall time with at least one bucket's all-reduce in flight
  double exposed_seconds = 0;    // time finish() waited after backward: communication not hidden
};

class Reducer {
 public:
  Reducer(Group& group, std::vector<at::Tensor> params, int64_t bucket_bytes, int64_t first_bucket_bytes,
          int64_t extras);
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Before backward: the extra values (each a one-element tensor) to sum along with the gradients.
  void prepare(const std::vector<at::Tensor>& extras);
  // After backward: launches the buckets still pending (missing gradients count as zero), waits for all,
  // and sets every parameter's .grad to the sum over ranks. Returns the summed extras (1-D, on the device).
  at::Tensor finish();
  ReducerStats take_stats();
  size_t bucket_count() const { return buckets_.size(); }
  int64_t bytes() const;

 private:
  struct Bucket;
  void on_grad(size_t param, const at::Tensor& grad);
  void launch_ready();
  void launch(Bucket& b);

  Group& group_;
  std::vector<at::Tensor> params_;
  std::vector<unsigned> hooks_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::pair<size_t, int64_t>> where_;  // per parameter: bucket, offset
  size_t next_launch_ = 0;
  int64_t extras_ = 0;
  bool armed_ = false;
  std::chrono::steady_clock::time_point first_launch_;
  ReducerStats stats_;
};

}  // namespace cifar::dist
