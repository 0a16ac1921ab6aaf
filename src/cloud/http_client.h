// One HTTP exchange over libcurl, for the cloud clients (S3, credential endpoints): a body from memory or a
// file range, a response into memory or streamed into a file (2xx only; error bodies stay in memory), and
// stall-based timeouts so that large transfers are never cut off while they make progress.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cifar::cloud {

struct HttpCall {
  std::string method = "GET", url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                  // in-memory body (when body_file is empty)
  std::string body_file;             // or this file's bytes [body_offset, body_offset + body_size)
  int64_t body_offset = 0, body_size = 0;
  std::string sink_file;             // a 2xx response body is written here instead of into memory
  long connect_timeout_s = 10;
  long stall_timeout_s = 60;         // abort when fewer than 1 byte/s flows for this long
  long total_timeout_s = 0;          // 0 = none
};

struct HttpResponse {
  long status = 0;                              // 0 when no response arrived
  std::map<std::string, std::string> headers;   // lower-case names
  std::string body;                             // unless streamed into sink_file
  std::string transport_error;                  // curl's message when the exchange failed
  int64_t received = 0;                         // body bytes received
};

// Performs the call; never throws for HTTP or network failures (they are in the response). Throws Error
// only when the body file cannot be read or the sink file cannot be written.
HttpResponse http_perform(const HttpCall& call);

}  // namespace cifar::cloud
