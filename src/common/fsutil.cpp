#include "common/fsutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace cifar::fs {

namespace stdfs = std::filesystem;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot open '{}': {}", path, std::strerror(errno));
  const std::streamoff end = in.tellg();
  if (end < 0) fail("cannot read '{}': its size is unknown (not a regular file?)", path);
  const auto size = static_cast<size_t>(end);
  std::vector<uint8_t> data(size);
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size)))
    fail("cannot read '{}': {}", path, std::strerror(errno));
  return data;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open '{}': {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void sync_dir(const std::string& dir) {
  const std::string d = dir.empty() ? "." : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open the directory '{}' to make its entries durable: {}", d, std::strerror(errno));
  // EINVAL: this file system cannot sync directories (some FUSE and network mounts); nothing to do there.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    fail("cannot make the entries of '{}' durable (fsync): {}", d, std::strerror(err));
  }
  ::close(fd);
}

AtomicWriter::AtomicWriter(std::string path) : path_(std::move(path)) {
  const stdfs::path target(path_);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  tmp_ = (stdfs::path(dir) / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  fd_ = ::mkstemp(tmp_.data());
  if (fd_ < 0) fail("cannot create a temporary file next to '{}': {}", path_, std::strerror(errno));
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicWriter::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '{}' (write failed: {}); the previous file, if any, is unchanged", path_, std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicWriter::commit() {
  if (::fsync(fd_) != 0 || ::fchmod(fd_, 0644) != 0)
    fail("cannot write '{}' (fsync failed: {}); the previous file, if any, is unchanged", path_, std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("cannot write '{}' (close failed: {})", path_, std::strerror(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("cannot rename the new '{}' into place: {}", path_, std::strerror(errno));
  tmp_.clear();
  const stdfs::path target(path_);
  sync_dir(target.has_parent_path() ? target.parent_path().string() : ".");
}

void write_atomic(const std::string& path, const void* data, size_t size) {
  AtomicWriter w(path);
  w.write(data, size);
  w.commit();
}

void write_atomic(const std::string& path, const std::string& data) { write_atomic(path, data.data(), data.size()); }

void append_line(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) fail("cannot open '{}' for appending: {}", path, std::strerror(errno));
  std::string buf = line + "\n";
  ssize_t n = ::write(fd, buf.data(), buf.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(buf.size())) fail("cannot append to '{}': {}", path, std::strerror(err));
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  stdfs::create_directories(path, ec);
  if (ec) fail("cannot create directory '{}': {}", path, ec.message());
}

bool exists(const std::string& path) {
  std::error_code ec;
  return stdfs::exists(path, ec);
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (stdfs::path(x) / "cifar100").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (stdfs::path(h) / ".cache" / "cifar100").string();
  return (stdfs::temp_directory_path() / "cifar100-cache").string();
}

}  // namespace cifar::fs
