#include "cloud/s3.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"

namespace cifar::cloud {

namespace {
namespace stdfs = std::filesystem;

std::string decode_entities(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const auto semi = s.find(';', i);
    if (semi == std::string::npos) {
      out += s[i];
      continue;
    }
    const std::string e = s.substr(i + 1, semi - i - 1);
    if (e == "amp") out += '&';
    else if (e == "lt") out += '<';
    else if (e == "gt") out += '>';
    else if (e == "quot") out += '"';
    else if (e == "apos") out += '\'';
    else if (!e.empty() && e[0] == '#') {
      const long cp = e.size() > 1 && (e[1] == 'x' || e[1] == 'X') ? std::strtol(e.c_str() + 2, nullptr, 16)
                                                                    : std::strtol(e.c_str() + 1, nullptr, 10);
      if (cp < 0x80) out += static_cast<char>(cp);
      else if (cp < 0x800) out += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
      else if (cp < 0x10000)
        out += {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                static_cast<char>(0x80 | (cp & 0x3F))};
      else
        out += {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
                static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    } else {
      out += s.substr(i, semi - i + 1);
    }
    i = semi;
  }
  return out;
}

std::string file_range_sha256(const std::string& path, int64_t offset, int64_t size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '{}' to upload it: {}", path, std::strerror(errno));
  in.seekg(offset);
  std::string data(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(data.data(), size)) fail("cannot read '{}' to upload it", path);
  return sha256_hex(data);
}

int64_t file_size(const std::string& path) {
  std::error_code ec;
  const auto n = stdfs::file_size(path, ec);
  if (ec) fail("cannot read '{}' to upload it: {}", path, ec.message());
  return static_cast<int64_t>(n);
}

std::string hint_for(const std::string& code, long status, const std::string& bucket, const std::string& region,
                     const std::string& source) {
  if (code == "NoSuchBucket")
    return fmt::format("the bucket '{}' does not exist (in region {}): check its name and AWS_REGION", bucket, region);
  if (code == "NoSuchKey" || status == 404) return "there is no object at that key: check the address";
  if (code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch")
    return fmt::format("the credentials (from {}) are not valid for S3: check the access key and secret", source);
  if (code == "AccessDenied" || status == 403)
    return fmt::format("the credentials (from {}) may not do this: check the IAM policy (the AmazonSageMakerFullAccess "
                       "policy covers only buckets whose name contains 'sagemaker') and the bucket policy",
                       source);
  if (code == "RequestTimeTooSkewed") return "this machine's clock is off by more than 15 minutes: set it right";
  return "";
}

bool retryable(long status, const std::string& code) {
  static const char* codes[] = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                                "ServiceUnavailable", "RequestLimitExceeded"};
  if (status == 0 || status >= 500 || status == 429) return true;
  return std::find(std::begin(codes), std::end(codes), code) != std::end(codes);
}

}  // namespace

bool is_s3_uri(const std::string& s) { return s.rfind("s3://", 0) == 0; }

S3Uri parse_s3_uri(const std::string& s) {
  if (!is_s3_uri(s)) fail_config("'{}' is not an s3://bucket/key address", s);
  const std::string rest = s.substr(5);
  const auto slash = rest.find('/');
  S3Uri u{rest.substr(0, slash), slash == std::string::npos ? "" : rest.substr(slash + 1)};
  if (u.bucket.size() < 3 || u.bucket.size() > 63 ||
      u.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos)
    fail_config("'{}': '{}' is not a valid bucket name (3-63 lower-case letters, digits, '.' and '-')", s, u.bucket);
  return u;
}

std::string xml_text(const std::string& xml, const std::string& tag, size_t from) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const auto a = xml.find(open, from);
  if (a == std::string::npos) return "";
  const auto b = xml.find(close, a + open.size());
  if (b == std::string::npos) return "";
  return decode_entities(xml.substr(a + open.size(), b - a - open.size()));
}

S3Client::S3Client(S3Options opts, std::shared_ptr<CredentialsProvider> creds)
    : opts_(std::move(opts)), creds_(std::move(creds)) {
  region_ = opts_.region.empty() ? aws_region() : opts_.region;
  endpoint_ = opts_.endpoint.empty() ? s3_endpoint_override() : opts_.endpoint;
  max_attempts_ = opts_.max_attempts;
  if (max_attempts_ <= 0) {
    const char* v = std::getenv("AWS_MAX_ATTEMPTS");
    max_attempts_ = v && std::atoi(v) > 0 ? std::atoi(v) : 5;
  }
}

std::string S3Client::url_and_host(const Request& r, std::string& host, std::string& path) const {
  const std::string key = uri_encode(r.uri.key, true);
  std::string scheme = "https://";
  if (!endpoint_.empty()) {  // path-style on the given endpoint
    const auto p = endpoint_.find("://");
    scheme = p == std::string::npos ? "https://" : endpoint_.substr(0, p + 3);
    host = p == std::string::npos ? endpoint_ : endpoint_.substr(p + 3);
    path = "/" + r.uri.bucket + "/" + key;
  } else if (r.uri.bucket.find('.') == std::string::npos) {  // virtual-hosted
    host = r.uri.bucket + ".s3." + region_ + ".amazonaws.com";
    path = "/" + key;
  } else {  // a dotted bucket does not match the wildcard certificate: path-style
    host = "s3." + region_ + ".amazonaws.com";
    path = "/" + r.uri.bucket + "/" + key;
  }
  const std::string q = canonical_query(r.query);
  return scheme + host + path + (q.empty() ? "" : "?" + q);
}

HttpResponse S3Client::send(const Request& r, bool ok_404) {
  const std::string payload = !r.body_file.empty() ? file_range_sha256(r.body_file, r.body_offset, r.body_size)
                                                   : sha256_hex(r.body);
  bool refreshed = false;
  std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 1;; ++attempt) {
    HttpRequest hr;
    hr.method = r.method;
    HttpCall call;
    call.method = r.method;
    call.url = url_and_host(r, hr.host, hr.path);
    hr.query = r.query;
    hr.payload_sha256 = payload;
    for (const auto& [k, v] : r.headers) hr.headers[k] = v;
    const Credentials creds = creds_->get();
    const Signature sig = sign_v4(hr, creds, region_, "s3", std::time(nullptr));
    call.headers = r.headers;
    for (const auto& [k, v] : sig.headers) call.headers.emplace_back(k, v);
    call.body = r.body;
    call.body_file = r.body_file;
    call.body_offset = r.body_offset;
    call.body_size = r.body_size;
    call.sink_file = r.sink_file;
    HttpResponse resp = http_perform(call);
    if (resp.status >= 200 && resp.status < 300) {
      // CompleteMultipartUpload (and CopyObject) can fail with 200 and an <Error> body.
      if (r.method != "POST" || xml_text(resp.body, "Code").empty()) return resp;
    }
    if (resp.status == 404 && ok_404) return resp;
    std::string code = xml_text(resp.body, "Code"), message = xml_text(resp.body, "Message");
    if (code.empty() && resp.status == 404) code = "NoSuchKey";
    if (code.empty() && resp.status == 403) code = "AccessDenied";
    // The bucket lives in another region: S3 says which; sign for it and try again.
    const auto region_hdr = resp.headers.find("x-amz-bucket-region");
    if (endpoint_.empty() && region_hdr != resp.headers.end() && region_hdr->second != region_ &&
        (resp.status == 301 || resp.status == 400 || resp.status == 403) && attempt <= max_attempts_) {
      log::info("bucket {} is in {}, not {}: using that region", r.uri.bucket, region_hdr->second, region_);
      region_ = region_hdr->second;
      continue;
    }
    // HEAD answers carry no body, so a 400 there may be an expired token too.
    const bool bodiless_400 = code.empty() && resp.status == 400 && r.method == "HEAD" && !creds.session_token.empty();
    if ((code == "ExpiredToken" || code == "TokenRefreshRequired" || code == "InvalidToken" || bodiless_400) &&
        !refreshed) {
      creds_->invalidate();  // temporary credentials ran out: fetch new ones once
      refreshed = true;
      continue;
    }
    if (retryable(resp.status, code) && attempt < max_attempts_) {
      // Exponential backoff with full jitter: uniform in [0, min(20 s, 0.2 s * 2^attempt)].
      const double cap = std::min(20.0, 0.2 * static_cast<double>(1 << std::min(attempt, 10)));
      const double wait = std::uniform_real_distribution<double>(0.0, cap)(rng);
      log::debug("S3 {} {}: {}; retrying in {:.2f} s", r.op, r.uri.str(),
                 resp.status ? std::to_string(resp.status) + " " + code : resp.transport_error, wait);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      continue;
    }
    if (resp.status == 0)
      fail("S3 {} {}: cannot reach {} ({}) after {} attempt{}: check the network{}", r.op, r.uri.str(),
           endpoint_.empty() ? "S3" : endpoint_, resp.transport_error, attempt, attempt == 1 ? "" : "s",
           endpoint_.empty() ? "" : " and AWS_ENDPOINT_URL_S3");
    const std::string hint = hint_for(code, resp.status, r.uri.bucket, region_, creds.source);
    fail("S3 {} {}: HTTP {} {}{}{}{}", r.op, r.uri.str(), resp.status, code.empty() ? "error" : code,
         message.empty() ? "" : " (" + message + ")",
         attempt > 1 ? fmt::format(" after {} attempts", attempt) : "", hint.empty() ? "" : ": " + hint);
  }
}

void S3Client::put_string(const S3Uri& dst, const std::string& data, const std::string& content_type) {
  Request r{"PutObject", "PUT", dst};
  r.headers = {{"Content-Type", content_type}};
  r.body = data;
  send(r);
}

void S3Client::put_file(const S3Uri& dst, const std::string& path) {
  const int64_t size = file_size(path);
  if (size < opts_.multipart_threshold) {
    Request r{"PutObject", "PUT", dst};
    r.body_file = path;
    r.body_size = size;
    send(r);
    return;
  }
  // Multipart: create, upload the parts in parallel, complete (or abort on failure).
  Request create{"CreateMultipartUpload", "POST", dst, {{"uploads", ""}}};
  const std::string upload_id = xml_text(send(create).body, "UploadId");
  if (upload_id.empty()) fail("S3 CreateMultipartUpload {}: no UploadId in the answer", dst.str());
  const int64_t parts = (size + opts_.part_size - 1) / opts_.part_size;
  if (parts > 10000) fail("'{}' needs {} parts of {} bytes; S3 allows 10,000", path, parts, opts_.part_size);
  std::vector<std::string> etags(static_cast<size_t>(parts));
  std::atomic<int64_t> next{0};
  std::mutex mu;
  std::string first_error;
  auto worker = [&] {
    for (int64_t i = next++; i < parts; i = next++) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error.empty()) return;
      }
      try {
        Request part{"UploadPart", "PUT", dst, {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}}};
        part.body_file = path;
        part.body_offset = i * opts_.part_size;
        part.body_size = std::min(opts_.part_size, size - part.body_offset);
        const HttpResponse resp = send(part);
        const auto it = resp.headers.find("etag");
        if (it == resp.headers.end()) fail("S3 UploadPart {} part {}: no ETag in the answer", dst.str(), i + 1);
        etags[static_cast<size_t>(i)] = it->second;
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.empty()) first_error = e.what();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min<int64_t>(opts_.parallel, parts); ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (!first_error.empty()) {
    try {
      send(Request{"AbortMultipartUpload", "DELETE", dst, {{"uploadId", upload_id}}});
    } catch (const std::exception&) {
    }
    throw Error(first_error);
  }
  std::string xml = "<CompleteMultipartUpload>";
  for (int64_t i = 0; i < parts; ++i)
    xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1, etags[static_cast<size_t>(i)]);
  xml += "</CompleteMultipartUpload>";
  Request complete{"CompleteMultipartUpload", "POST", dst, {{"uploadId", upload_id}}};
  complete.headers = {{"Content-Type", "application/xml"}};
  complete.body = xml;
  send(complete);
}

std::optional<S3Object> S3Client::head(const S3Uri& uri) {
  const HttpResponse resp = send(Request{"HeadObject", "HEAD", uri}, /*ok_404=*/true);
  if (resp.status == 404) return std::nullopt;
  S3Object o{uri.key, 0, ""};
  if (auto it = resp.headers.find("content-length"); it != resp.headers.end()) o.size = std::atoll(it->second.c_str());
  if (auto it = resp.headers.find("etag"); it != resp.headers.end()) o.etag = it->second;
  return o;
}

std::string S3Client::get_string(const S3Uri& src) { return send(Request{"GetObject", "GET", src}).body; }

std::string S3Client::get_range(const S3Uri& src, int64_t offset, int64_t length) {
  Request r{"GetObject", "GET", src};
  r.headers = {{"Range", fmt::format("bytes={}-{}", offset, offset + length - 1)}};
  std::string body = send(r).body;
  if (static_cast<int64_t>(body.size()) != length)
    fail("S3 GetObject {} bytes {}-{}: {} bytes arrived", src.str(), offset, offset + length - 1, body.size());
  return body;
}

void S3Client::get_file(const S3Uri& src, const std::string& path) {
  const auto obj = head(src);
  if (!obj) fail("S3 GetObject {}: HTTP 404 NoSuchKey: there is no object at that key: check the address", src.str());
  const stdfs::path target = stdfs::absolute(path);
  fs::make_dirs(target.parent_path().string());
  std::string tmp = (target.parent_path() / ("." + target.filename().string() + ".part-XXXXXX")).string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail("cannot create a temporary file next to '{}': {}", path, std::strerror(errno));
  try {
    if (obj->size <= opts_.multipart_threshold) {
      ::close(fd);
      Request r{"GetObject", "GET", src};
      r.sink_file = tmp;
      send(r);
    } else {  // ranged reads in parallel, each written at its offset
      const int64_t parts = (obj->size + opts_.part_size - 1) / opts_.part_size;
      std::atomic<int64_t> next{0};
      std::mutex mu;
      std::string first_error;
      auto worker = [&] {
        for (int64_t i = next++; i < parts; i = next++) {
          try {
            const int64_t off = i * opts_.part_size, len = std::min(opts_.part_size, obj->size - off);
            const std::string bytes = get_range(src, off, len);
            if (::pwrite(fd, bytes.data(), bytes.size(), off) != static_cast<ssize_t>(bytes.size()))
              fail("cannot write '{}': {}", tmp, std::strerror(errno));
          } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(mu);
            if (first_error.empty()) first_error = e.what();
            return;
          }
        }
      };
      std::vector<std::thread> threads;
      for (int t = 0; t < std::min<int64_t>(opts_.parallel, parts); ++t) threads.emplace_back(worker);
      for (auto& t : threads) t.join();
      ::close(fd);
      if (!first_error.empty()) throw Error(first_error);
    }
    const int64_t got = file_size(tmp);
    if (got != obj->size) fail("S3 GetObject {}: {} of {} bytes arrived", src.str(), got, obj->size);
    const int wfd = ::open(tmp.c_str(), O_RDONLY);
    if (wfd >= 0) {
      ::fsync(wfd);
      ::close(wfd);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) fail("cannot move the download into '{}': {}", path, std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

std::vector<S3Object> S3Client::list(const S3Uri& prefix) {
  std::vector<S3Object> out;
  std::string token;
  for (;;) {
    Request r{"ListObjectsV2", "GET", {prefix.bucket, ""}, {{"list-type", "2"}, {"prefix", prefix.key}}};
    if (!token.empty()) r.query.emplace_back("continuation-token", token);
    const std::string xml = send(r).body;
    for (size_t pos = xml.find("<Contents>"); pos != std::string::npos; pos = xml.find("<Contents>", pos + 1)) {
      const size_t end = xml.find("</Contents>", pos);
      const std::string item = xml.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      out.push_back({xml_text(item, "Key"), std::atoll(xml_text(item, "Size").c_str()), xml_text(item, "ETag")});
    }
    if (xml_text(xml, "IsTruncated") != "true") break;
    token = xml_text(xml, "NextContinuationToken");
    if (token.empty()) fail("S3 ListObjectsV2 {}: a truncated page without a continuation token", prefix.str());
  }
  return out;
}

void S3Client::remove(const S3Uri& uri) { send(Request{"DeleteObject", "DELETE", uri}); }

}  // namespace cifar::cloud
