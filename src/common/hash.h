// Checksums (MD5 for the official archive, SHA-256 for reports) of files and buffers, as lowercase hex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <memory>

namespace cifar::hash {

// Incremental SHA-256 (for data written or read in pieces).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void update(const void* data, size_t size);
  std::string hex();  // finishes the digest

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string md5_file(const std::string& path);
std::string sha256_file(const std::string& path);
// Git's object id of a file of `size` bytes: SHA-1 of "blob <size>\0" and the bytes.
std::string git_blob_sha1_file(const std::string& path, int64_t size);
std::string md5(const void* data, size_t size);
std::string sha256(const void* data, size_t size);
// Standard base64 (RFC 4648, with padding).
std::string base64(const void* data, size_t size);

}  // namespace cifar::hash
