// The batch loader: worker threads turn uint8 images into normalised float batches (already in the
// model's memory format) ahead of the training loop, through a bounded queue. Shuffling is per epoch and
// every augmentation draw is keyed by (seed, epoch, sample index), so batches are identical whatever
// the number of workers, and an epoch can start at any batch (resume).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/transforms.h"
#include "data/cifar.h"

namespace cifar::data {

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = false;
  bool drop_last = false;
  std::shared_ptr<const Pipeline> augment;  // null: no augmentation
  uint64_t seed = 0;
  int workers = 1;   // 0 = build batches in the calling thread
  int prefetch = 4;  // batches prepared ahead
  bool channels_last = true;
};

struct Batch {
  at::Tensor images;  // float32 [B, 3, 32, 32], channels-last strides when requested
  at::Tensor labels;  // int64 [B] fine labels
  int64_t index = 0;  // batch number within the epoch
};

class Loader {
 public:
  Loader(const Split& split, std::vector<int64_t> indices, LoaderOptions opts);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return static_cast<int64_t>(indices_.size()); }
  int64_t batches_per_epoch() const { return batches_; }
  // Starts producing the batches of `epoch`, beginning at batch `first_batch`.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, or nothing at its end.
  std::optional<Batch> next();
  // The sample indices of the current epoch, in order (for tests).
  std::vector<int64_t> order() const { return order_ ? *order_ : std::vector<int64_t>{}; }

 private:
  using Order = std::shared_ptr<const std::vector<int64_t>>;
  Batch make_batch(int64_t b, int64_t epoch, const Order& order) const;
  void worker_loop();

  const Split& split_;
  std::vector<int64_t> indices_;
  LoaderOptions opts_;
  int64_t batches_ = 0;

  std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int64_t epoch_ = -1;
  Order order_;  // replaced (never mutated) by start_epoch, so workers can hold a snapshot
  int64_t next_assign_ = 0, next_deliver_ = 0;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
};

}  // namespace cifar::data
