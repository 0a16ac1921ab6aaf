// Dynamic batching over the inference engine: requests from many connection threads wait in one bounded
// queue; a single inference thread takes up to `max_batch` images (waiting at most `max_wait` after the
// first one arrives), runs one forward pass and hands each request its own rows of probabilities.
// A full queue refuses at once (the server answers 503 with Retry-After) instead of queueing without end.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace cifar::model {
class InferenceModel;
}

namespace cifar::serve {

struct BatcherOptions {
  int64_t max_batch = 64;                        // images per forward pass
  std::chrono::microseconds max_wait{2000};      // after the first queued image
  int64_t queue_capacity = 1024;                 // images waiting, all requests together
};

struct Probabilities {
  int64_t rows = 0, classes = 0;
  std::vector<float> values;  // rows x classes
  std::string error;          // set when the forward pass failed (a server fault: 500)
};

class Batcher {
 public:
  // `on_batch(images)` is called after every forward pass (for metrics).
  Batcher(const model::InferenceModel& engine, BatcherOptions opts, std::function<void(int64_t)> on_batch = {});
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // `pixels`: count x S x S x 3 uint8. Empty optional: the queue is full.
  std::optional<std::future<Probabilities>> submit(std::vector<uint8_t> pixels, int64_t count);
  int64_t queued_images() const;
  // Finishes everything queued, then stops the inference thread.
  void stop();

 private:
  struct Job {
    std::vector<uint8_t> pixels;
    int64_t count;
    std::promise<Probabilities> done;
  };
  void loop();

  const model::InferenceModel& engine_;
  BatcherOptions opts_;
  std::function<void(int64_t)> on_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  int64_t queued_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cifar::serve
