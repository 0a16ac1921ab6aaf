#include "data/loader.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <torch/torch.h>

#include "common/error.h"
#include "common/rng.h"
#include "data/augment.h"
#include "data/device_augment.h"

namespace cifar::data {

int64_t global_batches(int64_t n, int64_t batch, bool drop_last, int64_t world) {
  if (batch < 1) fail("loader: batch size must be at least 1");
  if (world < 1 || batch < world)
    fail("loader: the global batch ({}) must hold at least one image per rank ({} ranks)", batch, world);
  if (n < world) fail("loader: {} images cannot be shared among {} ranks", n, world);
  const int64_t full = n / batch, tail = n % batch;
  if (drop_last && full > 0) return full;
  if (tail == 0) return full;
  if (tail < world && full > 0) return full;  // the tail joins the last full batch
  return full + 1;
}

std::pair<int64_t, int64_t> global_batch_range(int64_t n, int64_t batch, bool drop_last, int64_t world, int64_t b) {
  const int64_t batches = global_batches(n, batch, drop_last, world);
  const int64_t begin = b * batch;
  int64_t end = std::min(begin + batch, n);
  if (b == batches - 1 && !drop_last) end = n;  // a merged tail
  return {begin, end};
}

std::pair<int64_t, int64_t> rank_share(int64_t begin, int64_t end, int64_t rank, int64_t world) {
  const int64_t m = end - begin;
  return {begin + m * rank / world, begin + m * (rank + 1) / world};
}

Loader::Loader(const Split& split, std::vector<int64_t> indices, LoaderOptions opts)
    : split_(split), indices_(std::move(indices)), opts_(opts) {
  if (opts_.rank < 0 || opts_.rank >= opts_.world) fail("loader: rank {} outside a world of {}", opts_.rank, opts_.world);
  batches_ = global_batches(static_cast<int64_t>(indices_.size()), opts_.batch_size, opts_.drop_last, opts_.world);
  for (int i = 0; i < opts_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : threads_) t.join();
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  std::vector<int64_t> order = indices_;
  if (opts_.shuffle) {
    Rng rng(opts_.seed, Stream::Shuffle, {static_cast<uint64_t>(epoch)});
    rng.shuffle(order.begin(), order.end());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;
    epoch_ = epoch;
    order_ = std::make_shared<const std::vector<int64_t>>(std::move(order));
    next_assign_ = next_deliver_ = std::clamp<int64_t>(first_batch, 0, batches_);
    ready_.clear();
    error_ = nullptr;
  }
  cv_work_.notify_all();
}

Batch Loader::make_batch(int64_t b, int64_t epoch, const Order& order_ptr) const {
  const std::vector<int64_t>& order = *order_ptr;
  const auto n = static_cast<int64_t>(order.size());
  const auto [gbegin, gend] = global_batch_range(n, opts_.batch_size, opts_.drop_last, opts_.world, b);
  const auto [begin, end] = rank_share(gbegin, gend, opts_.rank, opts_.world);
  const int64_t bs = end - begin;
  Batch batch;
  batch.index = b;
  batch.global_size = gend - gbegin;
  const Pipeline* pipeline = opts_.augment.get();
  if (opts_.params_only) {
    static const Pipeline kNone;
    const Pipeline& p = pipeline ? *pipeline : kNone;
    const int64_t width = device_param_width(p);
    batch.indices = torch::empty({bs}, torch::kInt64);
    batch.params = torch::zeros({bs, std::max<int64_t>(width, 1)}, torch::kInt32);
    batch.labels = torch::empty({bs}, torch::kInt64);
    for (int64_t k = 0; k < bs; ++k) {
      const int64_t idx = order[static_cast<size_t>(begin + k)];
      Rng rng(opts_.seed, Stream::Augment, {static_cast<uint64_t>(epoch), static_cast<uint64_t>(idx)});
      draw_device_params(p, rng, batch.params.data_ptr<int32_t>() + k * batch.params.size(1));
      batch.indices.data_ptr<int64_t>()[k] = idx;
      batch.labels.data_ptr<int64_t>()[k] = split_.fine[static_cast<size_t>(idx)];
    }
    return batch;
  }
  at::Tensor images = opts_.channels_last ? torch::empty({bs, kImageSize, kImageSize, kChannels}, torch::kFloat32)
                                          : torch::empty({bs, kChannels, kImageSize, kImageSize}, torch::kFloat32);
  at::Tensor labels = torch::empty({bs}, torch::kInt64);
  float* img = images.data_ptr<float>();
  int64_t* lab = labels.data_ptr<int64_t>();
  for (int64_t k = 0; k < bs; ++k) {
    const int64_t idx = order[static_cast<size_t>(begin + k)];
    Rng rng(opts_.seed, Stream::Augment, {static_cast<uint64_t>(epoch), static_cast<uint64_t>(idx)});
    augment_normalize(split_.image(idx), img + k * kPixels, opts_.channels_last, pipeline, rng);
    lab[k] = split_.fine[static_cast<size_t>(idx)];
  }
  batch.images = opts_.channels_last ? images.permute({0, 3, 1, 2}) : images;
  batch.labels = labels;
  return batch;
}

void Loader::worker_loop() {
  // Loader threads need a sliver of a core; at a lower priority they take it from idle time instead of
  // preempting the compute threads (measured: the seed pipeline's cost fell from 3% to within noise).
  // Best effort: failure leaves the default priority.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 5);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_work_.wait(lock, [&] {
      return stop_ || (epoch_ >= 0 && next_assign_ < batches_ && next_assign_ < next_deliver_ + opts_.prefetch);
    });
    if (stop_) return;
    const int64_t b = next_assign_++;
    const uint64_t gen = generation_;
    const int64_t epoch = epoch_;
    const Order order = order_;
    lock.unlock();
    Batch batch;
    std::exception_ptr err;
    try {
      batch = make_batch(b, epoch, order);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (gen != generation_) continue;  // the epoch was restarted meanwhile; drop the stale batch
    if (err) error_ = err;
    else ready_.emplace(b, std::move(batch));
    cv_ready_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  if (epoch_ < 0) fail("loader: next() called before start_epoch()");
  if (threads_.empty()) {
    if (next_deliver_ >= batches_) return std::nullopt;
    const int64_t b = next_deliver_++;
    return make_batch(b, epoch_, order_);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (next_deliver_ >= batches_) return std::nullopt;
  cv_ready_.wait(lock, [&] { return error_ || ready_.count(next_deliver_); });
  if (error_) std::rethrow_exception(error_);
  auto it = ready_.find(next_deliver_);
  Batch batch = std::move(it->second);
  ready_.erase(it);
  ++next_deliver_;
  lock.unlock();
  cv_work_.notify_all();
  return batch;
}

}  // namespace cifar::data
