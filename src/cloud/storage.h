// Storage by address: one interface with a local implementation (paths, file://) and an S3 one (s3://).
// Callers never ask which: they fetch what they read into local files (`localize_*`) and publish what they
// wrote (`publish_*`); local addresses cost nothing (no copies). Every transfer is complete or absent.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cifar::cloud {

struct Entry {
  std::string name;  // relative to the listed prefix or directory ("a/b.bin")
  int64_t size = 0;
  std::string version;  // an ETag or a modification time: changes when the content does
};

class Storage {
 public:
  virtual ~Storage() = default;
  // Copies the object at `address` into the local file `path` (through a temporary file).
  virtual void get(const std::string& address, const std::string& path) = 0;
  // Stores the local file `path` at `address`, replacing what is there.
  virtual void put(const std::string& path, const std::string& address) = 0;
  // Everything below `prefix` (a directory or key prefix), recursively.
  virtual std::vector<Entry> list(const std::string& prefix) = 0;
  // Size and version of one object; name "" when it does not exist.
  virtual Entry stat(const std::string& address) = 0;
  virtual void remove(const std::string& address) = 0;
  // The local path of `address` when it is local (no copy needed), "" otherwise.
  virtual std::string local_path(const std::string& address) const = 0;
};

// The storage for an address: S3 for s3://..., local otherwise (file:// prefixes are stripped).
Storage& storage_for(const std::string& address);
bool is_remote(const std::string& address);
// Whether the address names a gzip tar (".tar.gz"), such as SageMaker's model.tar.gz.
bool is_tar_gz(const std::string& address);
// `prefix` and `name` joined with one '/'.
std::string join(const std::string& prefix, const std::string& name);

// Where remote objects are cached: $XDG_CACHE_HOME/cifar100/remote/<bucket>/<key>.
std::string cache_path(const std::string& address);
// A local file with the content of `address`: the path itself when local, else a cached copy that is
// downloaded again when the object's size or version changed.
std::string localize_file(const std::string& address);
// A local directory with the files below `prefix` (only `names`, by their last path component, when given;
// they must all exist): the directory itself when local.
std::string localize_dir(const std::string& prefix, const std::vector<std::string>& names = {});
// Stores a local file at `address` (a no-op when both are the same local file).
void publish_file(const std::string& path, const std::string& address);
// Stores the files of `dir` (non-recursive) below `prefix`, in the given order when `order` names them
// (the last one is the manifest: a reader that sees it sees everything).
void publish_dir(const std::string& dir, const std::string& prefix, const std::vector<std::string>& order = {});

// A fresh temporary directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Where a command writes an output that belongs at `address`: the address itself when it is local, else a
// temporary file or directory that commit() publishes (files in `order` last, as for publish_dir) and the
// destructor removes.
class Output {
 public:
  Output(std::string address, bool directory);
  ~Output();
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;
  const std::string& path() const { return path_; }
  void commit(const std::vector<std::string>& order = {});

 private:
  std::string address_, path_;
  std::unique_ptr<TempDir> tmp_;
  bool directory_;
};

// A gzip tar of the regular files of `dir` at the archive's root (how SageMaker packs model.tar.gz), and
// its safe extraction (no absolute paths, no '..', regular files and directories only).
void write_tar_gz(const std::string& dir, const std::string& archive);
void extract_tar_gz(const std::string& archive, const std::string& dir);

}  // namespace cifar::cloud
