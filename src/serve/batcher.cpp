#include "serve/batcher.h"

#include <torch/torch.h>

#include <cstring>

#include "model/inference.h"

namespace cifar::serve {

Batcher::Batcher(const model::InferenceModel& engine, BatcherOptions opts, std::function<void(int64_t)> on_batch)
    : engine_(engine), opts_(opts), on_batch_(std::move(on_batch)) {
  thread_ = std::thread([this] { loop(); });
}

Batcher::~Batcher() { stop(); }

std::optional<std::future<Probabilities>> Batcher::submit(std::vector<uint8_t> pixels, int64_t count) {
  auto job = std::make_unique<Job>();
  job->pixels = std::move(pixels);
  job->count = count;
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
  if (thread_.joinable()) thread_.join();
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
          images += queue_.front()->count;
          queued_ -= queue_.front()->count;
          jobs.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (images >= opts_.max_batch || stopping_ || !queue_.empty()) break;
        if (cv_.wait_until(lock, deadline, [&] { return stopping_ || !queue_.empty(); })) continue;
        break;  // waited long enough
      }
    }
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
