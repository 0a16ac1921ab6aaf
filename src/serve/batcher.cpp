#include "serve/batcher.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "model/inference.h"

namespace cifar::serve {

Batcher::Batcher(const model::InferenceModel& engine, BatcherOptions opts, std::function<void(int64_t)> on_batch)
    : engine_(engine), opts_(opts), on_batch_(std::move(on_batch)) {
  for (int i = 0; i < std::max(1, opts_.workers); ++i)
    threads_.emplace_back([this] {
      // OpenMP's thread count is per calling thread: each worker sets its own share.
      if (opts_.threads_per_worker > 0) at::set_num_threads(opts_.threads_per_worker);
      loop();
    });
}

Batcher::~Batcher() { stop(); }

std::optional<std::future<Probabilities>> Batcher::submit(std::vector<uint8_t> pixels, int64_t count,
                                                          Clock::time_point deadline) {
  auto job = std::make_unique<Job>();
  job->pixels = std::move(pixels);
  job->count = count;
  job->deadline = deadline;
  std::future<Probabilities> f = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A request larger than the whole queue is still taken when the queue is empty, so it can be served.
    if (stopping_ || (queued_ > 0 && queued_ + count > opts_.queue_capacity)) return std::nullopt;
    queued_ += count;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return f;
}

int64_t Batcher::queued_images() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void Batcher::loop() {
  const int64_t s = engine_.info().image_size;
  const int64_t image_bytes = s * s * 3;
  for (;;) {
    std::vector<std::unique_ptr<Job>> jobs;
    int64_t images = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is answered
      // Gather until the batch is full or the first image has waited max_wait.
      const auto deadline = std::chrono::steady_clock::now() + opts_.max_wait;
      for (;;) {
        while (!queue_.empty() && (images == 0 || images + queue_.front()->count <= opts_.max_batch)) {
          std::unique_ptr<Job> job = std::move(queue_.front());
          queue_.pop_front();
          queued_ -= job->count;
          if (Clock::now() > job->deadline) {  // its client has been answered already: do not compute it
            Probabilities late;
            late.timed_out = true;
            job->done.set_value(std::move(late));
            continue;
          }
          images += job->count;
          jobs.push_back(std::move(job));
        }
        // Full, stopping, more waiting than fits, or all it took had timed out (then wait anew).
        if (images == 0 || images >= opts_.max_batch || stopping_ || !queue_.empty()) break;
        if (cv_.wait_until(lock, deadline, [&] { return stopping_ || !queue_.empty(); })) continue;
        break;  // waited long enough
      }
    }
    if (jobs.empty()) continue;
    Probabilities all;
    try {
      at::Tensor x = torch::empty({images, s, s, 3}, torch::kUInt8);
      auto* dst = x.data_ptr<uint8_t>();
      for (const auto& j : jobs) {
        std::memcpy(dst, j->pixels.data(), static_cast<size_t>(j->count * image_bytes));
        dst += j->count * image_bytes;
      }
      const at::Tensor p = torch::softmax(engine_.logits_u8(x), 1).contiguous();
      all.rows = p.size(0);
      all.classes = p.size(1);
      all.values.assign(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
    } catch (const std::exception& e) {
      all.error = e.what();
    }
    if (on_batch_) on_batch_(images);
    int64_t row = 0;
    for (auto& j : jobs) {
      Probabilities mine;
      mine.rows = j->count;
      mine.classes = all.classes;
      mine.error = all.error;
      if (all.error.empty())
        mine.values.assign(all.values.begin() + row * all.classes, all.values.begin() + (row + j->count) * all.classes);
      row += j->count;
      j->done.set_value(std::move(mine));
    }
  }
}

}  // namespace cifar::serve
