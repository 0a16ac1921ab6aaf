// `cifar100 serve`: the SageMaker hosting contract (GET /ping, POST /invocations, GET /execution-parameters)
// plus /metrics and a small web page, over the dynamic batcher. A thin route table: decoding lives in
// codec.h, batching in batcher.h, numbers in metrics.h. Listening starts before the model is loaded;
// /ping says 503 until the model is loaded and a warm-up pass has run.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "model/inference.h"
#include "serve/batcher.h"

namespace cifar::serve {

struct ServerOptions {
  std::string model_dir = "/opt/ml/model";
  std::string host = "0.0.0.0";
  int port = 8080;
  model::InferenceOptions engine;
  BatcherOptions batch;            // max_wait defaults to 0 here: greedy batching (see cli/serve.cpp)
  int http_threads = 64;           // handler threads (idle and slow connections hold none)
  int max_pending = 256;           // complete requests waiting for a handler thread; beyond, 503
  int max_connections = 1024;      // open connections; beyond, they wait in the kernel's listen backlog
  size_t max_body = 6u << 20;      // bytes (SageMaker's 6 MB payload limit), whatever the framing
  size_t max_header_bytes = 16 << 10;  // request line and headers together
  int max_header_fields = 100;
  size_t max_buffered = 64u << 20;     // request bytes held by all connections together (at least 2 bodies)
  int64_t max_images = 256;        // per request
  int64_t max_image_pixels = 4'000'000;    // per decoded image (4 MP)
  int64_t max_request_pixels = 32'000'000; // decoded pixels per request, all images together
  int64_t max_json_elements = 1'000'000;   // JSON values per request body
  int max_concurrent_decodes = 0;  // requests decoding images at once (0 = the number of CPU cores)
  int read_timeout_s = 10;         // a client that sends nothing for this long is dropped
  int request_deadline_s = 30;     // a whole request must arrive within this (slow-drip clients)
  int idle_timeout_s = 5;          // keep-alive connections idle this long are closed
  int default_top_k = 5, max_top_k = 100;
  int retry_after_s = 1;           // Retry-After of a 503 when the queue is full
  int request_timeout_s = 60;      // an invocation not answered by then gets 504 (SageMaker waits 60 s)
  // What GET /execution-parameters tells Batch Transform.
  int max_concurrent_transforms = 0;               // 0 = http_threads
  std::string batch_strategy = "MULTI_RECORD";
};

// Runs until `should_stop()` turns true (polled every 50 ms; SIGTERM), then stops accepting, finishes the
// requests in flight and returns 0. Throws Error when the port cannot be bound; a model that fails to load
// is logged and /ping keeps answering 503 (exit status 1 after stop).
int run_server(const ServerOptions& opts, const std::function<bool()>& should_stop);

}  // namespace cifar::serve
