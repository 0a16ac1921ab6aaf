// Checksums (MD5 for the official archive, SHA-256 for reports) of files and buffers, as lowercase hex.
#pragma once
#include <cstddef>
#include <string>

namespace cifar::hash {

std::string md5_file(const std::string& path);
std::string sha256_file(const std::string& path);
std::string md5(const void* data, size_t size);
std::string sha256(const void* data, size_t size);

}  // namespace cifar::hash
