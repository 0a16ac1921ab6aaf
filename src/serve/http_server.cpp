#include "serve/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "common/log.h"

namespace cifar::serve::http {

namespace bhttp = boost::beast::http;
using Parser = bhttp::request_parser<bhttp::string_body>;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sends as much as the socket takes now; returns false on a socket error.
bool send_some(int fd, const std::string& data, size_t& off) {
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  return true;
}

// Sends everything, waiting at most `stall_s` for the socket to take more bytes each time.
bool send_all(int fd, const std::string& data, size_t& off, int stall_s) {
  for (;;) {
    if (!send_some(fd, data, off)) return false;
    if (off >= data.size()) return true;
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, stall_s * 1000);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
  }
}

}  // namespace

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

std::string Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && lower(k) == lower(name)) return v;
  return "";
}

std::optional<std::string> Request::query(const std::string& key) const {
  const size_t q = target.find('?');
  if (q == std::string::npos) return std::nullopt;
  const std::string qs = target.substr(q + 1);
  size_t pos = 0;
  while (pos <= qs.size()) {
    size_t amp = qs.find('&', pos);
    if (amp == std::string::npos) amp = qs.size();
    const std::string part = qs.substr(pos, amp - pos);
    const size_t eq = part.find('=');
    if (percent_decode(part.substr(0, eq)) == key)
      return eq == std::string::npos ? std::string() : percent_decode(part.substr(eq + 1));
    pos = amp + 1;
  }
  return std::nullopt;
}

// ---- connections -----------------------------------------------------------------------------------------
namespace {

enum class State { Reading, Closing };

struct Conn {
  int fd = -1;
  std::string remote;
  std::string in;                   // received, not yet parsed
  std::unique_ptr<Parser> parser;   // the request being received
  bool header_checked = false;
  bool keep_alive = true;
  int served = 0;
  State state = State::Reading;
  Clock::time_point opened, last_byte, first_byte{}, idle_since, closing_since;
  size_t discarded = 0;             // bytes read and dropped while closing
  std::string out;                  // response bytes not yet sent
  size_t out_off = 0;
  ~Conn() {
    if (fd >= 0) ::close(fd);
  }
};

struct Route {
  Handler handler;
  bool inline_ok = false;
};

struct Job {
  std::unique_ptr<Conn> conn;
  Request req;
  const Route* route = nullptr;  // nullptr: only send conn->out
};

}  // namespace

struct Server::Impl {
  Limits lim;
  ErrorBody error_body;
  Logger logger;
  std::atomic<bool>* draining = nullptr;
  std::map<std::string, std::map<std::string, Route>> routes;  // path -> method -> route
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::vector<std::unique_ptr<Conn>> conns;  // owned by the loop
  int outstanding = 0;                       // connections handed to the pool (loop thread only)
  Clock::time_point drain_start{};

  // The pool.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  std::deque<std::unique_ptr<Conn>> returned;
  bool stopping = false;
  std::vector<std::thread> threads;

  ~Impl() {
    if (listen_fd >= 0) ::close(listen_fd);
    for (int fd : wake)
      if (fd >= 0) ::close(fd);
  }

  void notify_loop() {
    const char b = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake[1], &b, 1);
  }

  std::string serialize(const Request& req, Response& res, bool keep_alive) {
    std::string h = "HTTP/1.1 " + std::to_string(res.status) + " " + reason_phrase(res.status) + "\r\n";
    if (!res.content_type.empty()) h += "Content-Type: " + res.content_type + "\r\n";
    h += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
    for (const auto& [k, v] : res.headers) h += k + ": " + v + "\r\n";
    h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    h += "\r\n";
    if (req.method != "HEAD") h += res.body;
    return h;
  }

  const Route* find_route(const std::string& method, const std::string& path, std::string* allow) {
    auto it = routes.find(path);
    if (it == routes.end()) return nullptr;
    auto m = it->second.find(method == "HEAD" && !it->second.count("HEAD") ? "GET" : method);
    if (m != it->second.end()) return &m->second;
    for (const auto& [name, r] : it->second) *allow += (allow->empty() ? "" : ", ") + name;
    return nullptr;
  }

  // ---- the loop's side ----
  // Starts a lingering close: no more writes from us; what the client still sends is read and dropped for
  // a short while, so that it sees our answer rather than a reset.
  void start_closing(Conn& c) {
    ::shutdown(c.fd, SHUT_WR);
    c.state = State::Closing;
    c.closing_since = Clock::now();
    c.in.clear();
    c.parser.reset();
  }

  // Answers on the loop thread: what the socket takes now, the rest by a pool thread.
  // Returns false when the connection left the loop (handed to the pool).
  bool answer_inline(std::unique_ptr<Conn>& c, const Request& req, Response& res, double secs) {
    const bool keep = c->keep_alive && !res.close && !draining->load();
    c->out = serialize(req, res, keep);
    c->out_off = 0;
    if (logger) logger(req, res, secs);
    ++c->served;
    if (!send_some(c->fd, c->out, c->out_off)) {
      c.reset();
      return false;
    }
    if (c->out_off < c->out.size()) {
      c->keep_alive = keep;
      hand_to_pool(Job{std::move(c), Request{}, nullptr});
      return false;
    }
    c->out.clear();
    if (!keep) start_closing(*c);
    else c->idle_since = Clock::now();
    return true;
  }

  // An error found by this layer: answered, then the connection is closed.
  void fail_request(std::unique_ptr<Conn>& c, int status, const std::string& message, const char* extra_header = nullptr,
                    const std::string& extra_value = "") {
    Request req;
    req.remote = c->remote;
    req.received = c->first_byte == Clock::time_point{} ? Clock::now() : c->first_byte;
    if (c->parser && c->parser->is_header_done()) {
      const auto& m = c->parser->get();
      req.method = std::string(m.method_string());
      req.target = std::string(m.target());
      req.path = req.target.substr(0, req.target.find('?'));
    }
    Response res;
    res.close = true;
    error_body(res, status, message);
    if (extra_header) res.headers.emplace_back(extra_header, extra_value);
    c->keep_alive = false;
    answer_inline(c, req, res, 0.0);
  }

  void hand_to_pool(Job job) {
    ++outstanding;
    {
      std::lock_guard<std::mutex> lock(mu);
      jobs.push_back(std::move(job));
    }
    cv.notify_one();
  }

  size_t queued_jobs() {
    std::lock_guard<std::mutex> lock(mu);
    return jobs.size();
  }

  // Checks a request's header before any of its body is read. Returns false when it was refused.
  bool check_header(std::unique_ptr<Conn>& c) {
    const auto& m = c->parser->get();
    int fields = 0;
    std::string te, ce, expect;
    for (const auto& f : m) {
      ++fields;
      const std::string name = lower(std::string(f.name_string()));
      if (name == "transfer-encoding") te += (te.empty() ? "" : ",") + lower(std::string(f.value()));
      if (name == "content-encoding") ce += (ce.empty() ? "" : ",") + lower(std::string(f.value()));
      if (name == "expect") expect = lower(trim(std::string(f.value())));
    }
    if (fields > lim.max_header_fields) {
      fail_request(c, 431, "the request has " + std::to_string(fields) + " header lines; at most " +
                               std::to_string(lim.max_header_fields));
      return false;
    }
    if (!ce.empty() && trim(ce) != "identity") {
      fail_request(c, 415, "Content-Encoding '" + ce + "' is not accepted; send the body uncompressed");
      return false;
    }
    if (!te.empty() && trim(te) != "chunked") {
      fail_request(c, 501, "Transfer-Encoding '" + te + "' is not supported; use chunked or Content-Length");
      return false;
    }
    const std::string method(m.method_string());
    const std::string target(m.target());
    std::string allow;
    if (!find_route(method, target.substr(0, target.find('?')), &allow)) {
      if (allow.empty())
        fail_request(c, 404, "no route " + method + " " + target.substr(0, target.find('?')));
      else
        fail_request(c, 405, method + " is not allowed on " + target.substr(0, target.find('?')) + "; use " + allow,
                     "Allow", allow);
      return false;
    }
    const bool has_body_method = method == "POST" || method == "PUT" || method == "PATCH";
    if (has_body_method && !c->parser->content_length() && !c->parser->chunked()) {
      fail_request(c, 411, "a " + method + " request needs a Content-Length (or chunked framing)");
      return false;
    }
    if (c->parser->content_length() && *c->parser->content_length() > lim.max_body) {
      fail_request(c, 413, "the request body is " + std::to_string(*c->parser->content_length()) +
                               " bytes; the limit is " + std::to_string(lim.max_body) + " bytes");
      return false;
    }
    if (expect == "100-continue") {
      std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      size_t off = 0;
      send_some(c->fd, cont, off);
    }
    c->keep_alive = m.keep_alive();
    c->header_checked = true;
    c->parser->eager(true);
    return true;
  }

  // A complete request: answered inline or handed to the pool. Returns false when the connection left.
  bool dispatch(std::unique_ptr<Conn>& c) {
    auto& m = c->parser->get();
    Request req;
    req.method = std::string(m.method_string());
    req.target = std::string(m.target());
    req.path = req.target.substr(0, req.target.find('?'));
    req.remote = c->remote;
    req.received = c->first_byte;
    for (const auto& f : m) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.body = std::move(m.body());
    c->keep_alive = m.keep_alive();
    c->parser.reset();
    c->header_checked = false;
    c->first_byte = Clock::time_point{};
    std::string allow;
    const Route* route = find_route(req.method, req.path, &allow);
    if (route->inline_ok) {
      Response res;
      const auto t0 = Clock::now();
      try {
        route->handler(req, res);
      } catch (const std::exception& e) {
        res = Response{};
        error_body(res, 500, e.what());
      }
      return answer_inline(c, req, res, seconds_since(t0));
    }
    if (static_cast<int>(queued_jobs()) >= lim.max_queued) {
      Response res;
      error_body(res, 503, "every handler thread is busy and " + std::to_string(lim.max_queued) +
                               " requests are waiting; retry after 1 s");
      res.headers.emplace_back("Retry-After", "1");
      return answer_inline(c, req, res, 0.0);
    }
    hand_to_pool(Job{std::move(c), std::move(req), route});
    return false;
  }

  // Parses what the connection has received. Returns false when the connection left the loop.
  bool process(std::unique_ptr<Conn>& c) {
    while (!c->in.empty()) {
      if (!c->parser) {
        c->parser = std::make_unique<Parser>();
        c->parser->header_limit(static_cast<std::uint32_t>(lim.max_header_bytes));
        c->parser->body_limit(static_cast<std::uint64_t>(lim.max_body));
        c->parser->eager(false);
        c->header_checked = false;
      }
      if (c->first_byte == Clock::time_point{}) c->first_byte = Clock::now();
      boost::beast::error_code ec;
      const size_t n = c->parser->put(boost::asio::const_buffer(c->in.data(), c->in.size()), ec);
      c->in.erase(0, n);
      if (ec == bhttp::error::need_more) {
        if (n == 0) return true;
        continue;
      }
      if (ec == bhttp::error::header_limit) {
        fail_request(c, 431, "the request line and headers are larger than " + std::to_string(lim.max_header_bytes) +
                                 " bytes");
        return c != nullptr;
      }
      if (ec == bhttp::error::body_limit) {
        fail_request(c, 413, "the request body is larger than the limit of " + std::to_string(lim.max_body) + " bytes");
        return c != nullptr;
      }
      if (ec) {
        fail_request(c, 400, "malformed HTTP request: " + ec.message());
        return c != nullptr;
      }
      if (c->parser->is_header_done() && !c->header_checked && !check_header(c)) return c != nullptr;
      if (c->parser->is_done()) {
        if (!dispatch(c)) return false;
        if (c->state == State::Closing) return true;
        continue;  // pipelined bytes
      }
      if (n == 0) return true;
    }
    return true;
  }

  size_t buffered() const {
    size_t total = 0;
    for (const auto& c : conns)
      if (c) total += c->in.size() + (c->parser ? c->parser->get().body().size() : 0);
    return total;
  }

  void accept_ready(bool ignore_limit) {
    while (listen_fd >= 0 && (ignore_limit || static_cast<int>(conns.size()) + outstanding < lim.max_connections)) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      char host[INET6_ADDRSTRLEN] = "";
      if (ss.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
      else if (ss.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host, sizeof host);
      c->remote = host;
      c->opened = c->last_byte = c->idle_since = Clock::now();
      conns.push_back(std::move(c));
    }
  }

  // Timeouts of a connection in the loop; returns false when it was closed.
  bool check_deadlines(std::unique_ptr<Conn>& c, Clock::time_point now) {
    using std::chrono::seconds;
    if (c->state == State::Closing) {
      if (now - c->closing_since > std::chrono::seconds(2)) c.reset();
      return c != nullptr;
    }
    const bool partial = c->first_byte != Clock::time_point{};
    if (partial) {
      if (now - c->first_byte > seconds(lim.request_deadline_s)) {
        fail_request(c, 408, "the request did not arrive within " + std::to_string(lim.request_deadline_s) + " s");
        return c != nullptr;
      }
      if (now - c->last_byte > seconds(lim.stall_timeout_s)) {
        fail_request(c, 408, "the client sent nothing for " + std::to_string(lim.stall_timeout_s) + " s");
        return c != nullptr;
      }
      return true;
    }
    const bool fresh = c->served == 0;
    if (draining->load()) {
      // Accepted connections get a short while to send their request; idle keep-alive ones are closed.
      if (!fresh || now - drain_start > std::chrono::seconds(2)) c.reset();
      return c != nullptr;
    }
    if (fresh ? now - c->opened > seconds(lim.stall_timeout_s) : now - c->idle_since > seconds(lim.idle_timeout_s))
      c.reset();
    return c != nullptr;
  }

  // Reads what arrived; returns false when the connection was closed.
  bool read_from(std::unique_ptr<Conn>& c) {
    char buf[64 << 10];
    for (int rounds = 0; rounds < 4; ++rounds) {
      const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n > 0) {
        c->last_byte = Clock::now();
        if (c->state == State::Closing) {
          c->discarded += static_cast<size_t>(n);
          if (c->discarded > lim.max_body + (1u << 20)) c.reset();
          if (!c) return false;
          continue;
        }
        c->in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      c.reset();  // closed by the peer, or an error
      return false;
    }
    return true;
  }

  void worker() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stopping || !jobs.empty(); });
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      Conn& c = *job.conn;
      bool ok = true;
      if (job.route) {
        Response res;
        const auto t0 = Clock::now();
        try {
          job.route->handler(job.req, res);
        } catch (const std::exception& e) {
          res = Response{};
          error_body(res, 500, e.what());
        }
        const bool keep = c.keep_alive && !res.close && !draining->load();
        c.keep_alive = keep;
        c.out = serialize(job.req, res, keep);
        c.out_off = 0;
        if (logger) logger(job.req, res, seconds_since(t0));
        ++c.served;
      }
      ok = send_all(c.fd, c.out, c.out_off, lim.write_timeout_s);
      c.out.clear();
      c.out_off = 0;
      if (!ok) job.conn.reset();
      {
        std::lock_guard<std::mutex> lock(mu);
        returned.push_back(std::move(job.conn));  // null: closed
      }
      notify_loop();
    }
  }
};

Server::Server(Limits limits, ErrorBody error_body, Logger logger) : impl_(std::make_unique<Impl>()) {
  impl_->lim = limits;
  impl_->error_body = std::move(error_body);
  impl_->logger = std::move(logger);
  impl_->draining = &draining_;
  if (::pipe2(impl_->wake, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}

Server::~Server() = default;

void Server::route(const std::string& method, const std::string& path, Handler handler, bool inline_ok) {
  impl_->routes[path][method] = Route{std::move(handler), inline_ok};
}

void Server::adopt(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  impl_->listen_fd = fd;
}

bool Server::bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) return false;
  impl_->listen_fd = fd;
  return true;
}

void Server::run(const std::function<bool()>& should_stop, const std::function<void()>& on_drain) {
  Impl& s = *impl_;
  for (int i = 0; i < s.lim.threads; ++i) s.threads.emplace_back([&s] { s.worker(); });
  std::vector<pollfd> fds;
  std::vector<size_t> which;  // conns index of fds[i], for i >= 2
  for (;;) {
    // Connections back from the pool.
    std::deque<std::unique_ptr<Conn>> back;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      back.swap(s.returned);
    }
    for (auto& c : back) {
      --s.outstanding;
      if (!c) continue;
      if (!c->keep_alive) s.start_closing(*c);
      else c->idle_since = Clock::now();
      s.conns.push_back(std::move(c));
      // Pipelined bytes already received are parsed now, without waiting for the socket.
      auto& ref = s.conns.back();
      if (ref->state == State::Reading && !ref->in.empty()) s.process(ref);
    }
    if (!draining_ && should_stop()) {
      draining_ = true;
      s.drain_start = Clock::now();
      if (on_drain) on_drain();
      s.accept_ready(/*ignore_limit=*/true);  // what the kernel already accepted is answered too
      if (s.listen_fd >= 0) ::close(s.listen_fd);
      s.listen_fd = -1;
    }
    const auto now = Clock::now();
    for (auto& c : s.conns)
      if (c) s.check_deadlines(c, now);
    s.conns.erase(std::remove(s.conns.begin(), s.conns.end(), nullptr), s.conns.end());
    if (draining_ && s.conns.empty() && s.outstanding == 0) break;

    const bool over_budget = s.buffered() >= s.lim.max_buffered;
    fds.clear();
    which.clear();
    fds.push_back(pollfd{s.wake[0], POLLIN, 0});
    const bool accepting = s.listen_fd >= 0 && static_cast<int>(s.conns.size()) + s.outstanding < s.lim.max_connections;
    fds.push_back(pollfd{accepting ? s.listen_fd : -1, POLLIN, 0});
    for (size_t i = 0; i < s.conns.size(); ++i) {
      const Conn& c = *s.conns[i];
      // Over the budget, connections in the middle of a body wait (their deadlines still run).
      if (over_budget && c.state == State::Reading && c.parser && c.header_checked) continue;
      fds.push_back(pollfd{c.fd, POLLIN, 0});
      which.push_back(i);
    }
    const int r = ::poll(fds.data(), fds.size(), 50);
    if (r < 0 && errno != EINTR) log::warn("poll: {}", std::strerror(errno));
    if (r <= 0) continue;
    if (fds[0].revents) {
      char b[256];
      while (::read(s.wake[0], b, sizeof b) > 0) {
      }
    }
    if (fds[1].revents) s.accept_ready(false);
    for (size_t k = 2; k < fds.size(); ++k) {
      if (!fds[k].revents) continue;
      auto& c = s.conns[which[k - 2]];
      if (!c) continue;
      if (!s.read_from(c) || !c) continue;
      if (c->state == State::Reading) s.process(c);
    }
    s.conns.erase(std::remove(s.conns.begin(), s.conns.end(), nullptr), s.conns.end());
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.stopping = true;
  }
  s.cv.notify_all();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

}  // namespace cifar::serve::http
