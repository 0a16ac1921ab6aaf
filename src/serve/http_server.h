// The HTTP/1.1 layer of `cifar100 serve`: Boost.Beast's request parser (header and body limits counted as
// bytes arrive, whatever the framing) under one event loop of our own, and a bounded pool of handler threads.
//
// - One thread polls every connection that is waiting for (the rest of) a request, so idle keep-alive and
//   slow clients hold no handler thread. A complete request goes to the pool; the connection comes back to
//   the loop after its response.
// - Limits: header bytes and header lines; the body (Content-Length is checked before a byte of the body is
//   read, chunked bodies are counted as they arrive); a stall timeout between bytes; a whole-request deadline
//   from the first byte (slowloris); an idle keep-alive timeout; a write timeout; the number of open
//   connections (beyond it new ones wait in the kernel's listen backlog, sized SOMAXCONN); a budget of
//   request bytes buffered by all connections together (beyond it, bodies are not read until it frees).
// - Refused framing: Content-Encoding other than identity (415), transfer codings other than chunked (501),
//   a POST without Content-Length or chunked framing (411). Unknown routes and methods are answered (404,
//   405) before any body is read. Every such answer closes the connection.
// - Cheap routes (flagged `inline_ok`) are answered on the loop thread itself, so /ping stays fast even when
//   every handler thread is busy.
// - Draining (stop requested): the connections waiting in the listen backlog are accepted too, every request
//   already received or arriving on an open connection is answered with `Connection: close`, idle
//   connections are closed, and run() returns when nothing is left.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cifar::serve::http {

using Clock = std::chrono::steady_clock;

struct Request {
  std::string method, target, path, remote;
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent
  std::string body;
  Clock::time_point received;  // when the first byte of the request arrived
  // Case-insensitive; "" when absent.
  std::string header(const std::string& name) const;
  // A query parameter of the target, percent-decoded; nullopt when absent.
  std::optional<std::string> query(const std::string& key) const;
};

struct Response {
  int status = 200;
  std::string content_type, body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
  void set(std::string content, std::string type) {
    body = std::move(content);
    content_type = std::move(type);
  }
};

using Handler = std::function<void(const Request&, Response&)>;

struct Limits {
  size_t max_body = 6u << 20;
  size_t max_header_bytes = 16 << 10;  // request line and every header line together
  int max_header_fields = 100;
  int stall_timeout_s = 10;            // no byte for this long while a request is incomplete: 408
  int request_deadline_s = 30;         // a whole request (headers and body) must arrive within this: 408
  int idle_timeout_s = 5;              // an idle keep-alive connection is closed after this
  int write_timeout_s = 10;            // a client that takes no response bytes for this long is dropped
  int threads = 64;                    // handler threads
  int max_queued = 256;                // complete requests waiting for a handler thread; beyond, 503
  int max_connections = 1024;          // open connections; beyond, the kernel's listen backlog
  size_t max_buffered = 64u << 20;     // request bytes held by all connections together
};

// Makes the body of an error answer (the server's JSON error format).
using ErrorBody = std::function<void(Response&, int status, const std::string& message)>;
// Called once per answered request (also for errors answered by this layer) with the handler time.
using Logger = std::function<void(const Request&, const Response&, double seconds)>;

class Server {
 public:
  Server(Limits limits, ErrorBody error_body, Logger logger);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // `inline_ok`: the handler is cheap and never blocks; it runs on the event loop. A GET route also
  // answers HEAD.
  void route(const std::string& method, const std::string& path, Handler handler, bool inline_ok = false);

  // Either adopt a listening socket (made non-blocking here) or bind one (listen backlog SOMAXCONN).
  void adopt(int listen_fd);
  bool bind(const std::string& host, int port);

  // Serves until `should_stop()` turns true (polled at least every 50 ms), then drains and returns.
  // `on_drain` runs on the loop thread when draining starts.
  void run(const std::function<bool()>& should_stop, const std::function<void()>& on_drain = {});
  bool draining() const { return draining_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> draining_{false};
};

const char* reason_phrase(int status);

}  // namespace cifar::serve::http
