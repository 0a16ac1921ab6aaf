// Files: whole-file reads that name the file on failure, atomic writes (temporary file, fsync, rename,
// fsync of the directory) so a file is complete or absent, and the default cache location.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cifar::fs {

std::vector<uint8_t> read_bytes(const std::string& path);
std::string read_text(const std::string& path);
// Writes `data` to `path` atomically. Throws Error naming the path (e.g. on a full disk); the previous
// content of `path`, if any, is untouched on failure.
void write_atomic(const std::string& path, const void* data, size_t size);
void write_atomic(const std::string& path, const std::string& data);
// Streams a file to a temporary name next to `path`; commit() fsyncs and renames it into place. Destroyed
// without commit() (an error, an exception) it removes the temporary, leaving `path` as it was.
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  void write(const void* data, size_t size);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Appends one line and flushes it to the OS (metrics.jsonl).
void append_line(const std::string& path, const std::string& line);
void make_dirs(const std::string& path);
bool exists(const std::string& path);
// fsync a directory so that a rename inside it is durable.
void sync_dir(const std::string& dir);
// $XDG_CACHE_HOME/cifar100, else $HOME/.cache/cifar100.
std::string default_cache_dir();

}  // namespace cifar::fs
