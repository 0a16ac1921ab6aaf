#include "cloud/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/error.h"

namespace cifar::cloud {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Exchange {
  const HttpCall* call;
  HttpResponse* resp;
  CURL* curl;
  std::FILE* in = nullptr;
  int64_t in_left = 0;
  std::FILE* out = nullptr;
  bool out_failed = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) x->resp->headers.clear();  // a new response (after 100 Continue, redirects)
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto a = value.find_first_not_of(" \t"), b = value.find_last_not_of(" \t\r\n");
    x->resp->headers[name] = a == std::string::npos ? "" : value.substr(a, b - a + 1);
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
  x->resp->received += static_cast<int64_t>(len);
  if (!x->call->sink_file.empty() && status >= 200 && status < 300) {
    if (!x->out) {
      x->out = std::fopen(x->call->sink_file.c_str(), "wb");
      if (!x->out) {
        x->out_failed = true;
        return 0;
      }
    }
    if (std::fwrite(data, 1, len, x->out) != len) {
      x->out_failed = true;
      return 0;
    }
    return len;
  }
  if (x->resp->body.size() < (64u << 20)) x->resp->body.append(data, len);
  return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const size_t want = std::min<int64_t>(static_cast<int64_t>(size * n), x->in_left);
  if (want == 0) return 0;
  const size_t got = std::fread(buf, 1, want, x->in);
  x->in_left -= static_cast<int64_t>(got);
  return got == 0 ? CURL_READFUNC_ABORT : got;
}

}  // namespace

HttpResponse http_perform(const HttpCall& call) {
  global_init();
  HttpResponse resp;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    resp.transport_error = "cannot initialise libcurl";
    return resp;
  }
  Exchange x{&call, &resp, curl.get()};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, call.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, call.stall_timeout_s);
  if (call.total_timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, call.total_timeout_s);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);

  const bool file_body = !call.body_file.empty();
  const int64_t body_len = file_body ? call.body_size : static_cast<int64_t>(call.body.size());
  if (file_body) {
    x.in = std::fopen(call.body_file.c_str(), "rb");
    if (!x.in) fail("cannot read '{}' to upload it: {}", call.body_file, std::strerror(errno));
    if (std::fseek(x.in, static_cast<long>(call.body_offset), SEEK_SET) != 0)
      fail("cannot seek in '{}': {}", call.body_file, std::strerror(errno));
    x.in_left = call.body_size;
  }
  if (call.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (file_body) {  // uploads from a file are PUTs (objects, parts)
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &x);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_len));
    if (call.method != "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  } else if (call.method == "PUT" || call.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_len));
    if (call.method == "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
  } else if (call.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }

  curl_slist* list = nullptr;
  for (const auto& [k, v] : call.headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);

  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (x.in) std::fclose(x.in);
  if (x.out && std::fclose(x.out) != 0) x.out_failed = true;
  if (x.out_failed) fail("cannot write '{}': {}", call.sink_file, std::strerror(errno));
  if (rc != CURLE_OK) {
    resp.transport_error = curl_easy_strerror(rc);
    resp.status = 0;
    return resp;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  if (!call.sink_file.empty() && !x.out && resp.status >= 200 && resp.status < 300) {  // an empty body
    std::FILE* f = std::fopen(call.sink_file.c_str(), "wb");
    if (!f || std::fclose(f) != 0) fail("cannot write '{}': {}", call.sink_file, std::strerror(errno));
  }
  return resp;
}

}  // namespace cifar::cloud
