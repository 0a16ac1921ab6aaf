// A small S3 client over libcurl and our SigV4 signer: objects to and from files (multipart uploads and
// ranged downloads in parallel parts above a size), small objects in memory, HEAD, DELETE, and
// ListObjectsV2 with pagination. Retries with exponential backoff and full jitter on 5xx, SlowDown,
// throttling and network failures (AWS_MAX_ATTEMPTS attempts, default 5); refreshes expired temporary
// credentials once; errors that retrying cannot fix fail at once with S3's code, the s3:// address and
// what to check. Path-style addressing when an endpoint is given (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL),
// virtual-hosted otherwise.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud/credentials.h"
#include "cloud/http_client.h"

namespace cifar::cloud {

struct S3Uri {
  std::string bucket, key;  // key may be "" or a prefix
  std::string str() const { return "s3://" + bucket + "/" + key; }
};
bool is_s3_uri(const std::string& s);
// Parses s3://bucket/key; throws ConfigError naming the text when it is not one.
S3Uri parse_s3_uri(const std::string& s);

struct S3Object {
  std::string key;
  int64_t size = 0;
  std::string etag;
};

struct S3Options {
  std::string region;            // "" = aws_region()
  std::string endpoint;          // "" = s3_endpoint_override(), else AWS
  int max_attempts = 0;          // 0 = AWS_MAX_ATTEMPTS, else 5
  int64_t part_size = 16 << 20;  // multipart part and ranged-read size
  int64_t multipart_threshold = 64 << 20;
  int parallel = 4;              // parts in flight
};

class S3Client {
 public:
  explicit S3Client(S3Options opts = {}, std::shared_ptr<CredentialsProvider> creds = CredentialsProvider::standard_chain());

  void put_file(const S3Uri& dst, const std::string& path);
  void put_string(const S3Uri& dst, const std::string& data, const std::string& content_type = "application/octet-stream");
  // Streams the object into `path` through a temporary file beside it, renamed when complete.
  void get_file(const S3Uri& src, const std::string& path);
  std::string get_string(const S3Uri& src);
  // Bytes [offset, offset + length) of an object.
  std::string get_range(const S3Uri& src, int64_t offset, int64_t length);
  std::optional<S3Object> head(const S3Uri& uri);
  // Every object under the prefix (all pages), keys in S3's order.
  std::vector<S3Object> list(const S3Uri& prefix);
  void remove(const S3Uri& uri);

  const std::string& region() const { return region_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  struct Request {
    std::string op, method;                                   // op names it in messages (GetObject, ...)
    S3Uri uri;
    std::vector<std::pair<std::string, std::string>> query;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body, body_file, sink_file;
    int64_t body_offset = 0, body_size = 0;
  };
  // Signs, sends and retries; returns a 2xx response or throws Error. `ok_404` returns a 404 instead.
  HttpResponse send(const Request& r, bool ok_404 = false);
  std::string url_and_host(const Request& r, std::string& host, std::string& path) const;

  S3Options opts_;
  std::shared_ptr<CredentialsProvider> creds_;
  std::string region_, endpoint_;
  int max_attempts_;
};

// The text of the first <tag>...</tag> in an XML document (entities decoded), "" when absent.
std::string xml_text(const std::string& xml, const std::string& tag, size_t from = 0);

}  // namespace cifar::cloud
