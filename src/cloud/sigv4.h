// AWS Signature Version 4 (our own signer over OpenSSL: curl 7.88's CURLOPT_AWS_SIGV4 leaves out
// x-amz-content-sha256 and session tokens and signs the query as sent). Checked against AWS's published
// test vectors and against botocore's signer on generated S3 requests (tests/unit, tests/integration).
#pragma once
#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cifar::cloud {

struct Credentials {
  std::string access_key_id, secret_access_key, session_token;  // token "" for long-term keys
  std::time_t expiration = 0;                                    // 0 = does not expire
  std::string source;                                            // where they came from (for messages)
};

struct HttpRequest {
  std::string method;                                  // GET, PUT, ...
  std::string host;                                    // as in the Host header (with :port when not default)
  std::string path;                                    // already URI-encoded, as sent ("/bucket/my%20key")
  std::vector<std::pair<std::string, std::string>> query;  // decoded names and values, in any order
  std::map<std::string, std::string> headers;          // besides Host; names in any case
  std::string payload_sha256;                          // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

// RFC 3986 percent-encoding of everything but unreserved characters (and '/' when `keep_slash`).
std::string uri_encode(const std::string& s, bool keep_slash);
// The query string as signed and sent: names and values encoded, sorted by name then value.
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);
std::string sha256_hex(const std::string& data);

struct Signature {
  std::string canonical_request, string_to_sign, signed_headers, signature, authorization;
  std::map<std::string, std::string> headers;  // to add to the request: Authorization, x-amz-date, ...
};

// Signs `r` for `region` and `service` at time `now` (UTC). Adds x-amz-date, x-amz-content-sha256 (for s3)
// and x-amz-security-token (temporary credentials) to the signed headers. S3's path is used as given (it is
// not encoded twice, unlike the other services').
Signature sign_v4(const HttpRequest& r, const Credentials& c, const std::string& region, const std::string& service,
                  std::time_t now);

}  // namespace cifar::cloud
