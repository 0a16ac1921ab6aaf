#include "cloud/storage.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>

#include "cloud/s3.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/log.h"

namespace cifar::cloud {

namespace {
namespace stdfs = std::filesystem;

std::string strip_file_scheme(const std::string& a) { return a.rfind("file://", 0) == 0 ? a.substr(7) : a; }

void copy_atomic(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) fail("cannot read '{}': {}", from, std::strerror(errno));
  fs::make_dirs(stdfs::absolute(to).parent_path().string());
  fs::AtomicWriter out(to);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) out.write(buf.data(), static_cast<size_t>(in.gcount()));
  }
  out.commit();
}

class LocalStorage : public Storage {
 public:
  void get(const std::string& address, const std::string& path) override {
    copy_atomic(strip_file_scheme(address), path);
  }
  void put(const std::string& path, const std::string& address) override {
    copy_atomic(path, strip_file_scheme(address));
  }
  std::vector<Entry> list(const std::string& prefix) override {
    std::vector<Entry> out;
    const std::string dir = strip_file_scheme(prefix);
    std::error_code ec;
    if (!stdfs::is_directory(dir, ec)) return out;
    for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file()) out.push_back(stat_of(it->path().string(), stdfs::relative(it->path(), dir).string()));
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
    return out;
  }
  Entry stat(const std::string& address) override {
    const std::string p = strip_file_scheme(address);
    std::error_code ec;
    if (!stdfs::is_regular_file(p, ec)) return {};
    return stat_of(p, p);
  }
  void remove(const std::string& address) override {
    std::error_code ec;
    stdfs::remove(strip_file_scheme(address), ec);
  }
  std::string local_path(const std::string& address) const override { return strip_file_scheme(address); }

 private:
  static Entry stat_of(const std::string& path, const std::string& name) {
    struct stat st{};
    ::stat(path.c_str(), &st);
    return {name, static_cast<int64_t>(st.st_size),
            std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec)};
  }
};

class S3Storage : public Storage {
 public:
  void get(const std::string& address, const std::string& path) override { client().get_file(parse_s3_uri(address), path); }
  void put(const std::string& path, const std::string& address) override { client().put_file(parse_s3_uri(address), path); }
  std::vector<Entry> list(const std::string& prefix) override {
    S3Uri u = parse_s3_uri(prefix);
    if (!u.key.empty() && u.key.back() != '/') u.key += '/';
    std::vector<Entry> out;
    for (const auto& o : client().list(u)) out.push_back({o.key.substr(u.key.size()), o.size, o.etag});
    return out;
  }
  Entry stat(const std::string& address) override {
    const auto o = client().head(parse_s3_uri(address));
    return o ? Entry{o->key, o->size, o->etag} : Entry{};
  }
  void remove(const std::string& address) override { client().remove(parse_s3_uri(address)); }
  std::string local_path(const std::string&) const override { return ""; }

 private:
  S3Client& client() {
    std::call_once(once_, [this] { client_ = std::make_unique<S3Client>(); });
    return *client_;
  }
  std::once_flag once_;
  std::unique_ptr<S3Client> client_;
};

std::string basename_of(const std::string& name) {
  const auto slash = name.rfind('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

void check(int rc, struct archive* a, const std::string& what, const std::string& path) {
  if (rc < ARCHIVE_WARN) fail("{} '{}': {}", what, path, archive_error_string(a) ? archive_error_string(a) : "error");
}

}  // namespace

bool is_remote(const std::string& address) { return is_s3_uri(address); }

bool is_tar_gz(const std::string& address) {
  return address.size() > 7 && address.compare(address.size() - 7, 7, ".tar.gz") == 0;
}

Storage& storage_for(const std::string& address) {
  static LocalStorage local;
  static S3Storage s3;
  if (is_s3_uri(address)) return s3;
  return local;
}

std::string join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return prefix.back() == '/' ? prefix + name : prefix + "/" + name;
}

std::string cache_path(const std::string& address) {
  const S3Uri u = parse_s3_uri(address);
  return (stdfs::path(fs::default_cache_dir()) / "remote" / u.bucket / u.key).string();
}

std::string localize_file(const std::string& address) {
  Storage& st = storage_for(address);
  if (std::string p = st.local_path(address); !p.empty()) return p;
  const Entry e = st.stat(address);
  if (e.name.empty()) fail("{} does not exist: check the address", address);
  const std::string path = cache_path(address), stamp = path + ".version";
  const std::string version = std::to_string(e.size) + " " + e.version;
  if (fs::exists(path) && fs::exists(stamp) && fs::read_text(stamp) == version) return path;
  log::info("downloading {} ({:.1f} MB)", address, static_cast<double>(e.size) / 1e6);
  st.get(address, path);
  fs::write_atomic(stamp, version);
  return path;
}

std::string localize_dir(const std::string& prefix, const std::vector<std::string>& names) {
  Storage& st = storage_for(prefix);
  if (std::string p = st.local_path(prefix); !p.empty()) return p;
  const std::vector<Entry> entries = st.list(prefix);
  const std::string dir = cache_path(prefix);
  std::vector<std::string> missing;
  auto fetch = [&](const Entry& e, const std::string& as) {
    const std::string local = localize_file(join(prefix, e.name));
    const std::string target = (stdfs::path(dir) / as).string();
    if (local != target) {
      fs::make_dirs(stdfs::path(target).parent_path().string());
      std::error_code ec;
      stdfs::remove(target, ec);
      stdfs::create_symlink(local, target, ec);
      if (ec) fail("cannot link '{}' to '{}': {}", target, local, ec.message());
    }
  };
  if (names.empty()) {
    for (const auto& e : entries) fetch(e, e.name);
    return dir;
  }
  for (const auto& n : names) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return basename_of(e.name) == n; });
    if (it == entries.end()) missing.push_back(n);
    else fetch(*it, n);
  }
  if (!missing.empty()) {
    std::string have, want;
    for (size_t i = 0; i < entries.size() && i < 8; ++i) have += (have.empty() ? "" : ", ") + entries[i].name;
    for (const auto& m : missing) want += (want.empty() ? "" : ", ") + m;
    fail("{} holds no {} (it holds {}{})", prefix, want, have.empty() ? "nothing" : have,
         entries.size() > 8 ? ", ..." : "");
  }
  return dir;
}

void publish_file(const std::string& path, const std::string& address) {
  Storage& st = storage_for(address);
  const std::string local = st.local_path(address);
  std::error_code ec;
  if (!local.empty() && stdfs::exists(local, ec) && stdfs::equivalent(path, local, ec)) return;
  st.put(path, address);
}

void publish_dir(const std::string& dir, const std::string& prefix, const std::vector<std::string>& order) {
  std::vector<std::string> files;
  for (const auto& e : stdfs::directory_iterator(dir))
    if (e.is_regular_file() && std::find(order.begin(), order.end(), e.path().filename().string()) == order.end())
      files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  for (const auto& o : order)
    if (fs::exists((stdfs::path(dir) / o).string())) files.push_back(o);
  for (const auto& f : files) publish_file((stdfs::path(dir) / f).string(), join(prefix, f));
}

TempDir::TempDir() {
  std::string t = (stdfs::temp_directory_path() / "cifar100-XXXXXX").string();
  if (!::mkdtemp(t.data())) fail("cannot create a temporary directory in {}: {}", t, std::strerror(errno));
  path_ = t;
}

TempDir::~TempDir() {
  std::error_code ec;
  stdfs::remove_all(path_, ec);
}

Output::Output(std::string address, bool directory) : address_(std::move(address)), directory_(directory) {
  path_ = storage_for(address_).local_path(address_);
  if (!path_.empty()) return;
  tmp_ = std::make_unique<TempDir>();
  path_ = directory_ ? tmp_->path() : (stdfs::path(tmp_->path()) / address_.substr(address_.find_last_of('/') + 1)).string();
}

Output::~Output() = default;

void Output::commit(const std::vector<std::string>& order) {
  if (!tmp_) return;  // written in place
  if (directory_) publish_dir(path_, address_, order);
  else publish_file(path_, address_);
}

void write_tar_gz(const std::string& dir, const std::string& archive) {
  std::vector<stdfs::path> files;
  for (const auto& e : stdfs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  fs::make_dirs(stdfs::absolute(archive).parent_path().string());
  const std::string tmp = archive + ".tmp";
  std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  check(archive_write_add_filter_gzip(a.get()), a.get(), "cannot write", archive);
  check(archive_write_set_format_pax_restricted(a.get()), a.get(), "cannot write", archive);
  check(archive_write_open_filename(a.get(), tmp.c_str()), a.get(), "cannot write", tmp);
  std::vector<char> buf(1 << 20);
  for (const auto& f : files) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), f.filename().c_str());
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(stdfs::file_size(f)));
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_mtime(e.get(), std::time(nullptr), 0);
    check(archive_write_header(a.get(), e.get()), a.get(), "cannot write", archive);
    std::ifstream in(f, std::ios::binary);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() > 0 && archive_write_data(a.get(), buf.data(), static_cast<size_t>(in.gcount())) < 0)
        fail("cannot write '{}': {}", archive, archive_error_string(a.get()));
    }
  }
  check(archive_write_close(a.get()), a.get(), "cannot write", archive);
  a.reset();
  std::error_code ec;
  stdfs::rename(tmp, archive, ec);
  if (ec) fail("cannot move '{}' to '{}': {}", tmp, archive, ec.message());
}

void extract_tar_gz(const std::string& archive, const std::string& dir) {
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_tar(a.get());
  check(archive_read_open_filename(a.get(), archive.c_str(), 1 << 20), a.get(), "cannot open the archive", archive);
  fs::make_dirs(dir);
  archive_entry* e = nullptr;
  std::vector<char> buf(1 << 20);
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    while (name.rfind("./", 0) == 0) name = name.substr(2);
    if (name.empty() || name == ".") continue;
    const stdfs::path rel(name);
    if (rel.is_absolute() || std::any_of(rel.begin(), rel.end(), [](const stdfs::path& p) { return p == ".."; }))
      fail("'{}' holds an entry outside its directory ('{}'): refused", archive, name);
    const auto type = archive_entry_filetype(e);
    const stdfs::path out = stdfs::path(dir) / rel;
    if (type == AE_IFDIR) {
      fs::make_dirs(out.string());
      continue;
    }
    if (type != AE_IFREG) fail("'{}' holds '{}', which is not a regular file: refused", archive, name);
    fs::make_dirs(out.parent_path().string());
    fs::AtomicWriter w(out.string());
    for (;;) {
      const la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
      if (n < 0) fail("'{}' is corrupt at '{}': {}", archive, name, archive_error_string(a.get()));
      if (n == 0) break;
      w.write(buf.data(), static_cast<size_t>(n));
    }
    w.commit();
  }
  if (rc != ARCHIVE_EOF) fail("'{}' is not a readable tar.gz: {}", archive, archive_error_string(a.get()));
}

}  // namespace cifar::cloud
