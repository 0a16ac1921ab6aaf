#include "serve/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <numeric>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "model/artifact.h"
#include "serve/assets.h"
#include "serve/codec.h"
#include "serve/http_server.h"
#include "serve/metrics.h"

namespace cifar::serve {

namespace {
using Clock = std::chrono::steady_clock;
using nlohmann::json;

const char* code_for(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 406: return "not_acceptable";
    case 408: return "request_timeout";
    case 411: return "length_required";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal_error" : "error";
  }
}

void send_error(http::Response& res, int status, const std::string& code, const std::string& message) {
  res.status = status;
  // Messages may quote bytes of the request: invalid UTF-8 is replaced, never an exception.
  res.set(json{{"error", {{"code", code}, {"message", message}}}}.dump(-1, ' ', false, json::error_handler_t::replace) +
              "\n",
          "application/json");
}

std::string route_of(const std::string& path) {
  for (const char* r : {"/ping", "/invocations", "/execution-parameters", "/metrics", "/", "/app.js"})
    if (path == r) return r;
  return "other";
}

struct State {
  std::atomic<bool> ready{false};
  std::atomic<bool> load_failed{false};
  std::atomic<bool> load_done{false};
  std::unique_ptr<model::Artifact> artifact;
  std::unique_ptr<model::InferenceModel> engine;
  std::unique_ptr<Batcher> batcher;
  Metrics metrics;
};

// A counting semaphore (C++17): image decoding is CPU work, so at most this many requests decode at once.
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

// The socket the `cifar100` launcher bound and listened on before LibTorch loaded (cli/launcher.cpp), when
// it is a listening TCP socket for exactly this host and port; -1 otherwise (then it is closed).
int take_listen_fd(const std::string& host, int port) {
  const char* fd_text = std::getenv("CIFAR100_LISTEN_FD");
  const char* addr = std::getenv("CIFAR100_LISTEN_ADDR");
  if (!fd_text || !addr) return -1;
  const int fd = std::atoi(fd_text);
  const bool same_addr = std::string(addr) == host + " " + std::to_string(port);
  ::unsetenv("CIFAR100_LISTEN_FD");
  ::unsetenv("CIFAR100_LISTEN_ADDR");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int listening = 0;
  socklen_t optlen = sizeof listening;
  const bool ok = fd > 2 && same_addr && ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
                  ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening &&
                  (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
                  ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port) == port;
  if (ok) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
  }
  if (fd > 2) ::close(fd);
  return -1;
}

}  // namespace

int run_server(const ServerOptions& o, const std::function<bool()>& should_stop) {
  State st;
  http::Limits lim;
  lim.max_body = o.max_body;
  lim.stall_timeout_s = o.read_timeout_s;
  lim.request_deadline_s = o.request_deadline_s;
  lim.idle_timeout_s = o.idle_timeout_s;
  lim.write_timeout_s = o.read_timeout_s;
  lim.threads = o.http_threads;
  lim.max_queued = o.max_pending;
  lim.max_connections = o.max_connections;
  lim.max_header_bytes = o.max_header_bytes;
  lim.max_header_fields = o.max_header_fields;
  lim.max_buffered = std::max<size_t>(o.max_buffered, 2 * o.max_body);
  http::Server svr(
      lim, [](http::Response& res, int status, const std::string& msg) { send_error(res, status, code_for(status), msg); },
      [&st](const http::Request& req, const http::Response& res, double secs) {
        st.metrics.request(route_of(req.path), res.status, secs);
        log::info("{}", json{{"method", req.method}, {"path", req.path}, {"status", res.status},
                             {"ms", std::round(secs * 1e4) / 10}, {"bytes_in", req.body.size()},
                             {"bytes_out", res.body.size()}, {"remote", req.remote}}
                            .dump(-1, ' ', false, json::error_handler_t::replace));
      });

  // ---- routes (cheap ones answered on the event loop: /ping stays fast while every thread is busy) ------
  svr.route("GET", "/ping", [&st, &svr](const http::Request&, http::Response& res) {
    if (svr.draining()) {
      res.headers.emplace_back("Retry-After", "2");
      return send_error(res, 503, "stopping", "the server is stopping");
    }
    if (st.ready) return res.set("", "text/plain");
    res.headers.emplace_back("Retry-After", "2");
    send_error(res, 503, "loading", st.load_failed ? "the model failed to load (see the server log)" : "loading the model");
  }, /*inline_ok=*/true);

  svr.route("GET", "/execution-parameters", [&o](const http::Request&, http::Response& res) {
    res.set(json{{"MaxConcurrentTransforms", o.max_concurrent_transforms > 0 ? o.max_concurrent_transforms
                                                                              : o.http_threads},
                 {"BatchStrategy", o.batch_strategy},
                 {"MaxPayloadInMB", static_cast<int>(o.max_body >> 20)}}
                .dump(),
            "application/json");
  }, true);

  svr.route("GET", "/metrics", [&st](const http::Request&, http::Response& res) {
    // `ready` is set after the batcher exists (release/acquire through the atomic).
    res.set(st.metrics.render([&st] { return st.ready ? st.batcher->queued_images() : int64_t{0}; }),
            "text/plain; version=0.0.4");
  }, true);

  for (const Asset& a : assets()) {
    const std::string path = a.path == std::string("/index.html") ? "/" : a.path;
    svr.route("GET", path, [a](const http::Request&, http::Response& res) {
      res.set(std::string(reinterpret_cast<const char*>(a.data), a.size), a.type);
    }, true);
  }

  Slots decode_slots(o.max_concurrent_decodes > 0 ? o.max_concurrent_decodes
                                                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  svr.route("POST", "/invocations", [&st, &o, &decode_slots](const http::Request& req, http::Response& res) {
    if (!st.ready) {
      res.headers.emplace_back("Retry-After", "2");
      return send_error(res, 503, "loading", "the model is not loaded yet");
    }
    const std::string accept = req.header("Accept");
    const bool npy = accept.find("application/x-npy") != std::string::npos;
    if (!npy && !accept.empty() && accept.find("application/json") == std::string::npos &&
        accept.find("*/*") == std::string::npos)
      return send_error(res, 406, "not_acceptable",
                        "Accept '" + accept + "' is not available; use application/json or application/x-npy");
    const model::ArtifactInfo& info = st.engine->info();
    Images images;
    int top_k = o.default_top_k;
    try {
      DecodeOptions d;
      d.image_size = info.image_size;
      d.max_images = o.max_images;
      d.max_image_pixels = o.max_image_pixels;
      d.max_request_pixels = o.max_request_pixels;
      d.max_json_elements = o.max_json_elements;
      decode_slots.acquire();
      try {
        images = decode_request(req.header("Content-Type"), req.body, d);
      } catch (...) {
        decode_slots.release();
        throw;
      }
      decode_slots.release();
      if (const auto top = req.query("top_k")) {
        const std::string v = *top;
        char* end = nullptr;
        const long k = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || k < 1) throw RequestError(400, "bad_top_k", "top_k must be a positive integer");
        images.top_k = static_cast<int>(std::min<long>(k, 1 << 20));
      }
      if (images.top_k) {
        const int64_t limit = std::min<int64_t>(o.max_top_k, info.arch.num_classes);
        if (*images.top_k > limit)
          throw RequestError(400, "bad_top_k", "top_k must be at most " + std::to_string(limit));
        top_k = *images.top_k;
      }
    } catch (const RequestError& e) {
      return send_error(res, e.status(), e.code(), e.what());
    }
    const auto deadline = req.received + std::chrono::seconds(o.request_timeout_s);
    auto fut = st.batcher->submit(std::move(images.pixels), images.count, deadline);
    if (!fut) {
      res.headers.emplace_back("Retry-After", std::to_string(o.retry_after_s));
      return send_error(res, 503, "queue_full", "the server is at capacity; retry after " +
                                                     std::to_string(o.retry_after_s) + " s");
    }
    auto timed_out = [&] {
      send_error(res, 504, "timeout", "the request was not answered within " + std::to_string(o.request_timeout_s) +
                                          " s (SAGEMAKER_MODEL_SERVER_TIMEOUT, --timeout); the server is overloaded");
    };
    if (fut->wait_until(deadline) != std::future_status::ready) return timed_out();
    const Probabilities p = fut->get();
    if (p.timed_out) return timed_out();
    if (!p.error.empty()) return send_error(res, 500, "inference_failed", p.error);
    if (npy) return res.set(encode_npy_f32(p.values.data(), p.rows, p.classes), "application/x-npy");
    json preds = json::array();
    const int k = static_cast<int>(std::min<int64_t>(top_k, p.classes));
    std::vector<int> idx(static_cast<size_t>(p.classes));
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* row = p.values.data() + r * p.classes;
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return row[a] > row[b]; });
      json top = json::array();
      for (int j = 0; j < k; ++j)
        top.push_back({{"class", idx[j]}, {"name", info.class_names[static_cast<size_t>(idx[j])]}, {"probability", row[idx[j]]}});
      preds.push_back({{"top_k", top}});
    }
    res.set(json{{"predictions", preds}}.dump(), "application/json");
  });

  // ---- start: listen first, load in the background --------------------------------------------------
  if (const int fd = take_listen_fd(o.host, o.port); fd >= 0) svr.adopt(fd);
  else if (!svr.bind(o.host, o.port))
    fail("cannot listen on {}:{} (in use, or not permitted); choose another --port", o.host, o.port);
  log::info("listening on http://{}:{} (model {}, {} HTTP threads, {} inference worker{}, batches up to {} images, "
            "wait {} us, timeout {} s, body limit {} MiB)",
            o.host, o.port, o.model_dir, o.http_threads, o.batch.workers, o.batch.workers == 1 ? "" : "s",
            o.batch.max_batch, o.batch.max_wait.count(), o.request_timeout_s, o.max_body >> 20);
  std::thread loader([&] {
    try {
      const auto t0 = Clock::now();
      if (const char* delay = std::getenv("CIFAR100_TEST_LOAD_DELAY_MS"))  // tests: a model that loads slowly
        std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
      st.artifact = std::make_unique<model::Artifact>(model::load_artifact(o.model_dir));
      st.engine = std::make_unique<model::InferenceModel>(*st.artifact, o.engine);
      // Warm-up: one image and one full batch, so the first requests do not pay for kernel selection.
      (void)st.engine->logits_u8(torch::zeros({1, st.engine->info().image_size, st.engine->info().image_size, 3}, torch::kUInt8));
      (void)st.engine->logits_u8(
          torch::zeros({o.batch.max_batch, st.engine->info().image_size, st.engine->info().image_size, 3}, torch::kUInt8));
      st.batcher = std::make_unique<Batcher>(*st.engine, o.batch, [&st](int64_t n) { st.metrics.batch(n); });
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      st.metrics.set_model_load_seconds(secs);
      st.ready = true;
      log::info("model loaded and warmed up in {:.2f} s: {}; ready", secs, st.engine->describe());
    } catch (const std::exception& e) {
      st.load_failed = true;
      log::error("cannot load the model: {}", e.what());
    }
    st.load_done = true;
  });
  svr.run(should_stop, [] { log::info("stopping: /ping answers 503, no new connections; answering the requests already received"); });
  if (!st.load_done) {
    // Stopped while the model was still loading: nothing to drain, and a load cannot be interrupted, so the
    // process ends here rather than waiting for it.
    log::info("stopped before the model finished loading");
    std::fflush(nullptr);
    std::_Exit(0);
  }
  loader.join();
  if (st.batcher) st.batcher->stop();
  log::info("stopped");
  return st.load_failed ? 1 : 0;
}

}  // namespace cifar::serve
