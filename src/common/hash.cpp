#include "common/hash.h"

#include <cstdint>

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "common/error.h"

namespace cifar::hash {
namespace {

struct Digest {
  explicit Digest(const EVP_MD* md) : ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) fail("OpenSSL digest initialisation failed");
  }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx.get(), p, n); }
  std::string hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), out, &len);
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (unsigned int i = 0; i < len; ++i) s += {digits[out[i] >> 4], digits[out[i] & 15]};
    return s;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx;
};

std::string digest_file(const std::string& path, const EVP_MD* md, const std::string& prefix = "") {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}': {}", path, std::strerror(errno));
  Digest d(md);
  d.update(prefix.data(), prefix.size());
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) d.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail("cannot read '{}': {}", path, std::strerror(errno));
  return d.hex();
}

}  // namespace

struct Sha256::Impl {
  Digest d{EVP_sha256()};
};
Sha256::Sha256() : impl_(std::make_unique<Impl>()) {}
Sha256::~Sha256() = default;
void Sha256::update(const void* data, size_t size) { impl_->d.update(data, size); }
std::string Sha256::hex() { return impl_->d.hex(); }

std::string md5_file(const std::string& path) { return digest_file(path, EVP_md5()); }
std::string sha256_file(const std::string& path) { return digest_file(path, EVP_sha256()); }
std::string git_blob_sha1_file(const std::string& path, int64_t size) {
  return digest_file(path, EVP_sha1(), "blob " + std::to_string(size) + std::string(1, '\0'));
}
std::string md5(const void* data, size_t size) {
  Digest d(EVP_md5());
  d.update(data, size);
  return d.hex();
}
std::string sha256(const void* data, size_t size) {
  Digest d(EVP_sha256());
  d.update(data, size);
  return d.hex();
}

std::string base64(const void* bytes, size_t size) {
  const auto* data = static_cast<const uint8_t*>(bytes);
  const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < size; i += 3) {
    const uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    for (int k = 3; k >= 0; --k) out.push_back(a[(v >> (6 * k)) & 63]);
  }
  if (i < size) {
    uint32_t v = data[i] << 16;
    if (i + 1 < size) v |= data[i + 1] << 8;
    out.push_back(a[(v >> 18) & 63]);
    out.push_back(a[(v >> 12) & 63]);
    out.push_back(i + 1 < size ? a[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace cifar::hash
