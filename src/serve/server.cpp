#include "serve/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/torch.h>

#include <atomic>
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
#include "serve/metrics.h"

namespace cifar::serve {

namespace {
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// httplib's thread pool with a bound on accepted connections waiting for a thread: beyond it the accept loop
// waits, so further connections stay in the kernel's listen backlog instead of piling up in memory.
class BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool(int threads, int max_pending) : max_pending_(static_cast<size_t>(max_pending)) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    space_.wait(lock, [&] { return jobs_.size() < max_pending_ || shutdown_; });
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }
  size_t pending() {
    std::lock_guard<std::mutex> lock(mu_);
    return jobs_.size();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    ready_.notify_all();
    space_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [&] { return shutdown_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // shut down and drained
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      fn();
    }
  }
  size_t max_pending_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<std::function<void()>> jobs_;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

const char* code_for(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 406: return "not_acceptable";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal_error" : "error";
  }
}

void send_error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  res.status = status;
  // Messages may quote bytes of the request: invalid UTF-8 is replaced, never an exception.
  res.set_content(json{{"error", {{"code", code}, {"message", message}}}}.dump(-1, ' ', false,
                                                                              json::error_handler_t::replace) +
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
  std::unique_ptr<model::Artifact> artifact;
  std::unique_ptr<model::InferenceModel> engine;
  std::unique_ptr<Batcher> batcher;
  Metrics metrics;
};

thread_local Clock::time_point t_request_start;

// httplib's server on a socket that is already listening.
class ListeningServer : public httplib::Server {
 public:
  void adopt(int fd) { svr_sock_ = fd; }
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
thread_local const httplib::Request* t_request = nullptr;

}  // namespace

int run_server(const ServerOptions& o, const std::function<bool()>& should_stop) {
  State st;
  ListeningServer svr;
  std::atomic<BoundedPool*> pool{nullptr};
  svr.new_task_queue = [&o, &pool] {
    auto* p = new BoundedPool(o.http_threads, o.max_pending);
    pool = p;
    return p;
  };
  // Fairness: while connections wait for a thread, a served keep-alive connection is closed after its
  // response, so waiting clients (a health check among them) get a thread within one request's time.
  svr.set_post_routing_handler([&pool](const httplib::Request&, httplib::Response& res) {
    BoundedPool* p = pool.load();
    if (p && p->pending() > 0) res.set_header("Connection", "close");
  });
  svr.set_payload_max_length(o.max_body);
  svr.set_read_timeout(o.read_timeout_s, 0);
  svr.set_write_timeout(o.read_timeout_s, 0);
  svr.set_keep_alive_timeout(o.idle_timeout_s);
  svr.set_keep_alive_max_count(1000);
  svr.set_tcp_nodelay(true);  // headers and body go out as written: no 40 ms delayed-ACK stalls

  svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    t_request_start = Clock::now();
    t_request = &req;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Any error status without a body (httplib's own 400/404/413, ...) gets the JSON error body.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg = "HTTP " + std::to_string(res.status);
    if (res.status == 404) msg = "no route " + req.method + " " + req.path + " (routes: /ping, /invocations, "
                                 "/execution-parameters, /metrics, /)";
    if (res.status == 413) msg = "the request body is larger than the limit";
    if (res.status == 400) msg = "malformed HTTP request";
    send_error(res, res.status, code_for(res.status), msg);
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal_error", what);
  });
  svr.set_logger([&st](const httplib::Request& req, const httplib::Response& res) {
    const double secs = t_request == &req ? std::chrono::duration<double>(Clock::now() - t_request_start).count() : 0.0;
    const std::string route = route_of(req.path);
    st.metrics.request(route, res.status, secs);
    log::info("{}", json{{"method", req.method}, {"path", req.path}, {"status", res.status},
                         {"ms", std::round(secs * 1e4) / 10}, {"bytes_in", req.body.size()},
                         {"bytes_out", res.body.size()}, {"remote", req.remote_addr}}
                        .dump(-1, ' ', false, json::error_handler_t::replace));
  });

  // ---- routes ------------------------------------------------------------------------------------------
  auto method_not_allowed = [](const std::string& allow) {
    return [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      send_error(res, 405, "method_not_allowed", req.method + " is not allowed on " + req.path + "; use " + allow);
    };
  };
  auto only = [&](const std::string& path, const std::string& allow) {
    if (allow != "GET") svr.Get(path, method_not_allowed(allow));
    if (allow != "POST") svr.Post(path, method_not_allowed(allow));
    svr.Put(path, method_not_allowed(allow));
    svr.Delete(path, method_not_allowed(allow));
    svr.Patch(path, method_not_allowed(allow));
    svr.Options(path, method_not_allowed(allow));
  };

  svr.Get("/ping", [&st](const httplib::Request&, httplib::Response& res) {
    if (st.ready) {
      res.set_content("", "text/plain");
      return;
    }
    res.set_header("Retry-After", "2");
    send_error(res, 503, "loading", st.load_failed ? "the model failed to load (see the server log)" : "loading the model");
  });
  only("/ping", "GET");

  svr.Get("/execution-parameters", [&o](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"MaxConcurrentTransforms", o.max_concurrent_transforms > 0 ? o.max_concurrent_transforms
                                                                                      : o.http_threads},
                         {"BatchStrategy", o.batch_strategy},
                         {"MaxPayloadInMB", static_cast<int>(o.max_body >> 20)}}
                        .dump(),
                    "application/json");
  });
  only("/execution-parameters", "GET");

  svr.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    // `ready` is set after the batcher exists (release/acquire through the atomic).
    res.set_content(st.metrics.render([&st] { return st.ready ? st.batcher->queued_images() : int64_t{0}; }),
                    "text/plain; version=0.0.4");
  });
  only("/metrics", "GET");

  for (const Asset& a : assets()) {
    const std::string path = a.path == std::string("/index.html") ? "/" : a.path;
    svr.Get(path, [a](const httplib::Request&, httplib::Response& res) {
      res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.type);
    });
    only(path, "GET");
  }

  svr.Post("/invocations", [&st, &o](const httplib::Request& req, httplib::Response& res) {
    if (!st.ready) {
      res.set_header("Retry-After", "2");
      return send_error(res, 503, "loading", "the model is not loaded yet");
    }
    const std::string accept = req.get_header_value("Accept");
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
      images = decode_request(req.get_header_value("Content-Type"), req.body, d);
      if (req.has_param("top_k")) {
        const std::string v = req.get_param_value("top_k");
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
    const auto deadline = t_request_start + std::chrono::seconds(o.request_timeout_s);
    auto fut = st.batcher->submit(std::move(images.pixels), images.count, deadline);
    if (!fut) {
      res.set_header("Retry-After", std::to_string(o.retry_after_s));
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
    if (npy) return res.set_content(encode_npy_f32(p.values.data(), p.rows, p.classes), "application/x-npy");
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
    res.set_content(json{{"predictions", preds}}.dump(), "application/json");
  });
  only("/invocations", "POST");

  // ---- start: listen first, load in the background --------------------------------------------------
  if (const int fd = take_listen_fd(o.host, o.port); fd >= 0) svr.adopt(fd);
  else if (!svr.bind_to_port(o.host, o.port))
    fail("cannot listen on {}:{} (in use, or not permitted); choose another --port", o.host, o.port);
  log::info("listening on http://{}:{} (model {}, {} HTTP threads, {} inference worker{}, batches up to {} images, "
            "wait {} us, timeout {} s, body limit {} MiB)",
            o.host, o.port, o.model_dir, o.http_threads, o.batch.workers, o.batch.workers == 1 ? "" : "s",
            o.batch.max_batch, o.batch.max_wait.count(), o.request_timeout_s, o.max_body >> 20);
  std::thread loader([&] {
    try {
      const auto t0 = Clock::now();
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
  });
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!should_stop() && !done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (done) return;
    log::info("stopping: no new connections; finishing the requests in flight");
    svr.stop();
  });
  svr.listen_after_bind();  // returns after stop() once every connection thread has finished
  done = true;
  watcher.join();
  loader.join();
  if (st.batcher) st.batcher->stop();
  log::info("stopped");
  return st.load_failed ? 1 : 0;
}

}  // namespace cifar::serve
