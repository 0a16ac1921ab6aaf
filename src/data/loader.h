// The batch loader: worker threads turn uint8 images into normalised float batches (already in the
// model's memory format) ahead of the training loop, through a bounded queue. Shuffling is per epoch and
// every augmentation draw is keyed by (seed, epoch, sample index), so batches are identical whatever
// the number of workers, and an epoch can start at any batch (resume).
// Distributed training: every rank shuffles the same permutation (seed, epoch), cuts it into the same
// global batches, and takes its own contiguous share of each; the union of the ranks' batches of a step is
// the batch a single process would see, so the data a step sees does not depend on the world size.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
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
  int rank = 0, world = 1;  // distributed sampling: this process's share of every global batch
  // Augmentation runs on the device (DeviceAugmenter): batches carry image indices and each image's
  // random draws instead of pixels.
  bool params_only = false;
};

// The global batches of an epoch of `n` samples with global batch size `batch` over `world` ranks: how
// many, and where each lies in the epoch's order. Every rank must get a sample of every batch, so a tail
// smaller than `world` joins the batch before it (drop_last=false); drop_last drops any partial tail.
// Throws when n < world or batch < world.
int64_t global_batches(int64_t n, int64_t batch, bool drop_last, int64_t world);
std::pair<int64_t, int64_t> global_batch_range(int64_t n, int64_t batch, bool drop_last, int64_t world, int64_t b);
// Rank `rank`'s contiguous share of [begin, end): sizes differ by at most one.
std::pair<int64_t, int64_t> rank_share(int64_t begin, int64_t end, int64_t rank, int64_t world);

struct Batch {
  at::Tensor images;  // float32 [B, 3, 32, 32], channels-last strides when requested
  at::Tensor labels;  // int64 [B] fine labels
  int64_t index = 0;  // batch number within the epoch
  int64_t global_size = 0;  // images in the global batch (all ranks together); == labels.size(0) with one rank
  at::Tensor indices;  // params_only: int64 [B] indices into the split
  at::Tensor params;   // params_only: int32 [B, device_param_width] random draws per image
};

class Loader {
 public:
  Loader(const Split& split, std::vector<int64_t> indices, LoaderOptions opts);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return static_cast<int64_t>(indices_.size()); }
  int64_t batches_per_epoch() const { return batches_; }
  // Stops every epoch after `n` batches (hosts with shards of different sizes agree on the shortest).
  void limit_batches(int64_t n) { batches_ = std::min(batches_, n); }
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
