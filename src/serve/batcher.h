// Dynamic batching over the inference engine: requests from many connection threads wait in one bounded
// queue; an inference worker takes up to `max_batch` images (waiting at most `max_wait` after the first one
// arrives), runs one forward pass and hands each request its own rows of probabilities. With several
// workers, passes run concurrently, each on its share of the CPU threads. A full queue refuses at once (the
// server answers 503 with Retry-After) instead of queueing without end; a request whose deadline passed
// while it waited is answered as timed out without being computed.
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
  int workers = 1;                               // concurrent forward passes
  int threads_per_worker = 0;                    // intra-op CPU threads of each worker (0 = leave as set)
};

struct Probabilities {
  int64_t rows = 0, classes = 0;
  std::vector<float> values;  // rows x classes
  std::string error;          // set when the forward pass failed (a server fault: 500)
  bool timed_out = false;     // the deadline passed before a worker took the request
};

class Batcher {
 public:
  // `on_batch(images)` is called after every forward pass (for metrics).
  Batcher(const model::InferenceModel& engine, BatcherOptions opts, std::function<void(int64_t)> on_batch = {});
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  using Clock = std::chrono::steady_clock;
  // `pixels`: count x S x S x 3 uint8. Empty optional: the queue is full.
  std::optional<std::future<Probabilities>> submit(std::vector<uint8_t> pixels, int64_t count,
                                                   Clock::time_point deadline = Clock::time_point::max());
  int64_t queued_images() const;
  // Finishes everything queued, then stops the inference workers.
  void stop();

 private:
  struct Job {
    std::vector<uint8_t> pixels;
    int64_t count;
    Clock::time_point deadline;
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
  std::vector<std::thread> threads_;
};

}  // namespace cifar::serve
