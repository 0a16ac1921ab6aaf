#include "cloud/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace cifar::cloud {

namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

std::string hmac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Header values are signed trimmed, with runs of spaces folded into one.
std::string fold_spaces(const std::string& v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string uri_encode(const std::string& s, bool keep_slash) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  for (const auto& [k, v] : query) enc.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) out += (out.empty() ? "" : "&") + k + "=" + v;
  return out;
}

std::string sha256_hex(const std::string& data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  return hex(d, sizeof d);
}

Signature sign_v4(const HttpRequest& r, const Credentials& c, const std::string& region, const std::string& service,
                  std::time_t now) {
  std::tm tm{};
  gmtime_r(&now, &tm);
  char amz_date[17], date[9];
  std::strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
  std::strftime(date, sizeof date, "%Y%m%d", &tm);

  Signature s;
  s.headers["x-amz-date"] = amz_date;
  if (service == "s3") s.headers["x-amz-content-sha256"] = r.payload_sha256;
  if (!c.session_token.empty()) s.headers["x-amz-security-token"] = c.session_token;

  std::map<std::string, std::string> canonical;  // sorted by lower-case name
  canonical["host"] = fold_spaces(r.host);
  for (const auto& [k, v] : r.headers) canonical[lower(k)] = fold_spaces(v);
  for (const auto& [k, v] : s.headers) canonical[k] = fold_spaces(v);
  std::string header_block;
  for (const auto& [k, v] : canonical) {
    header_block += k + ":" + v + "\n";
    s.signed_headers += (s.signed_headers.empty() ? "" : ";") + k;
  }
  s.canonical_request = r.method + "\n" + (r.path.empty() ? "/" : r.path) + "\n" + canonical_query(r.query) + "\n" +
                        header_block + "\n" + s.signed_headers + "\n" + r.payload_sha256;
  const std::string scope = fmt::format("{}/{}/{}/aws4_request", date, region, service);
  s.string_to_sign = std::string("AWS4-HMAC-SHA256\n") + amz_date + "\n" + scope + "\n" + sha256_hex(s.canonical_request);
  const std::string key = hmac(hmac(hmac(hmac("AWS4" + c.secret_access_key, date), region), service), "aws4_request");
  const std::string sig = hmac(key, s.string_to_sign);
  s.signature = hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
  s.authorization = fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}", c.access_key_id,
                                scope, s.signed_headers, s.signature);
  s.headers["Authorization"] = s.authorization;
  return s;
}

}  // namespace cifar::cloud
