#include "data/fetch.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "common/config.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/rng.h"
#include "data/cifar.h"

namespace cifar::data {

namespace stdfs = std::filesystem;

namespace {
constexpr const char* kOfficialMd5 = "03b5dce01913d631647c71ecec9e9cb8";
const std::set<std::string> kWanted = {"train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string unique_suffix() {
  Rng rng(static_cast<uint64_t>(::getpid()) ^ static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return fmt::format("{}-{:08x}", ::getpid(), rng.next() & 0xffffffffu);
}

void remove_quietly(const std::string& path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
}

// The official sizes: no member of a real archive is larger.
int64_t max_member_bytes(const std::string& base) {
  if (base == "train.bin") return int64_t{50000} * kRecordBytes;
  if (base == "test.bin") return int64_t{10000} * kRecordBytes;
  return 64 << 10;  // the label name lists
}
}  // namespace

std::string resolve_data_dir(const Config& cfg) {
  const std::string& d = cfg.s("data_dir");
  if (!d.empty()) return d;
  return (stdfs::path(fs::default_cache_dir()) / "cifar-100-binary").string();
}

FetchOptions fetch_options(const Config& cfg) {
  FetchOptions o;
  o.data_dir = resolve_data_dir(cfg);
  o.archive = cfg.s("archive");
  o.archive_md5 = lower(cfg.s("archive_md5"));
  o.url = cfg.s("data_url");
  o.download_md5 = lower(cfg.s("download_md5"));
  o.archive_sha256 = lower(cfg.s("archive_sha256"));
  o.download_sha256 = lower(cfg.s("download_sha256"));
  o.download_bytes = cfg.i("download_bytes");
  return o;
}

bool dataset_present(const std::string& dir) {
  const DataFiles f = data_files(dir);
  return fs::exists(f.train) && fs::exists(f.test) && fs::exists(f.fine_names) && fs::exists(f.coarse_names);
}

// ---------------------------------------------------------------------------------------------------
// Download (libcurl)

namespace {
struct DownloadState {
  std::FILE* out = nullptr;
  log::Progress* progress = nullptr;
  int64_t received = 0;
  int64_t limit = 0;
  bool over = false;
};

size_t write_cb(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<DownloadState*>(user);
  if (st->received + static_cast<int64_t>(size * nmemb) > st->limit) {  // also without a Content-Length
    st->over = true;
    return 0;  // curl aborts the transfer
  }
  size_t n = std::fwrite(ptr, size, nmemb, st->out);
  st->received += static_cast<int64_t>(n * size);
  return n * size;
}

int progress_cb(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* st = static_cast<DownloadState*>(user);
  if (st->progress && total > 0) st->progress->update(now >> 20, now);
  return 0;
}
}  // namespace

void download(const std::string& url, const std::string& dest, int64_t expected_bytes,
              const std::string& expected_md5, const std::string& expected_sha256) {
  if (lower(url).rfind("https://", 0) != 0 && lower(url).rfind("file://", 0) != 0)
    fail("cannot download '{}': only https:// and file:// addresses are accepted (set data_url / CIFAR100_DATA_URL, "
         "or use archive / CIFAR100_ARCHIVE for a local or s3:// copy)",
         url);
  const int64_t limit = expected_bytes > 0 ? expected_bytes : kMaxDownloadBytes;
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  const std::string part = dest + ".part";
  std::string last_error;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    std::FILE* out = std::fopen(part.c_str(), "wb");
    if (!out) fail("cannot create '{}': {}", part, std::strerror(errno));
    log::Progress progress("download", expected_bytes >> 20, "B", 0);
    DownloadState st{out, &progress, 0, limit, false};
    CURL* curl = curl_easy_init();
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &st);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // abort below 1 KiB/s ...
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);     // ... sustained for a minute
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "cifar100/0.1");
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limit));
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,file");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, CURLPROTO_HTTPS | CURLPROTO_FILE);
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, CURLPROTO_HTTPS);
#endif
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    progress.finish();
    const bool write_ok = std::fclose(out) == 0;
    if (rc == CURLE_OK && write_ok) {
      last_error.clear();
      break;
    }
    const bool too_big = st.over || rc == CURLE_FILESIZE_EXCEEDED;
    last_error = too_big ? fmt::format("it is larger than {} bytes (download_bytes); not the expected archive", limit)
                 : rc != CURLE_OK ? fmt::format("{} ({})", *errbuf ? errbuf : curl_easy_strerror(rc),
                                              status ? fmt::format("HTTP status {}", status) : "no HTTP status")
                                : fmt::format("writing '{}' failed: {}", part, std::strerror(errno));
    remove_quietly(part);
    const bool permanent = rc == CURLE_HTTP_RETURNED_ERROR && status >= 400 && status < 500;
    if (permanent || too_big || rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT || rc == CURLE_FILE_COULDNT_READ_FILE ||
        !write_ok || attempt == 3)
      break;
    log::warn("download of {} failed (attempt {} of 3): {}; retrying", url, attempt, last_error);
    std::this_thread::sleep_for(std::chrono::seconds(2 * attempt));
  }
  if (!last_error.empty()) fail("cannot download '{}': {}", url, last_error);

  const auto size = static_cast<int64_t>(stdfs::file_size(part));
  if (expected_bytes > 0 && size != expected_bytes) {
    remove_quietly(part);
    fail("download of '{}' is {} bytes, expected {}: the file is incomplete or not the official archive; nothing was "
         "kept, try again",
         url, size, expected_bytes);
  }
  const std::string md5 = hash::md5_file(part);
  if (!expected_md5.empty() && md5 != expected_md5) {
    remove_quietly(part);
    fail("download of '{}' has MD5 {}, expected {}: the archive is corrupt or not the official one; nothing was kept",
         url, md5, expected_md5);
  }
  const std::string sha256 = hash::sha256_file(part);
  if (!expected_sha256.empty() && sha256 != expected_sha256) {
    remove_quietly(part);
    fail("download of '{}' has SHA-256 {}, expected {} (download_sha256): the archive is corrupt or not the expected "
         "one; nothing was kept",
         url, sha256, expected_sha256);
  }
  if (std::rename(part.c_str(), dest.c_str()) != 0) {
    remove_quietly(part);
    fail("cannot move the download into '{}': {}", dest, std::strerror(errno));
  }
  log::info("downloaded {} ({} bytes, MD5 {}{} verified, SHA-256 {}{})", url, size, md5,
            expected_md5.empty() ? " not" : "", sha256, expected_sha256.empty() ? "" : " verified");
}

// ---------------------------------------------------------------------------------------------------
// Extraction (libarchive)

void extract_archive(const std::string& archive_path, const std::string& data_dir, bool replace) {
  if (!fs::exists(archive_path))
    fail("archive '{}' does not exist (set CIFAR100_ARCHIVE / --archive to the path of cifar-100-binary.tar.gz)",
         archive_path);
  const stdfs::path target = stdfs::absolute(data_dir);
  fs::make_dirs(target.parent_path().string());
  const std::string tmp = (target.parent_path() / ("." + target.filename().string() + ".partial-" + unique_suffix())).string();
  fs::make_dirs(tmp);

  struct archive* a = archive_read_new();
  // gzip and tar only: "all" would let libarchive run external programs (lrzip, lzop, grzip...) on input.
  archive_read_support_filter_gzip(a);
  archive_read_support_format_tar(a);
  auto fail_cleanup = [&](const std::string& msg) {
    archive_read_free(a);
    remove_quietly(tmp);
    throw Error(msg);
  };
  if (archive_read_open_filename(a, archive_path.c_str(), 1 << 20) != ARCHIVE_OK)
    fail_cleanup(fmt::format("cannot open archive '{}' as a gzip-compressed tar (cifar-100-binary.tar.gz): {}",
                             archive_path, archive_error_string(a)));

  std::set<std::string> found;
  struct archive_entry* entry = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
    const std::string name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
    const std::string base = stdfs::path(name).filename().string();
    if (archive_entry_filetype(entry) != AE_IFREG || !kWanted.count(base) || found.count(base)) {
      archive_read_data_skip(a);
      continue;
    }
    const int64_t cap = max_member_bytes(base);
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > cap)
      fail_cleanup(fmt::format("archive '{}': '{}' is {} bytes, larger than the official {} bytes: not the CIFAR-100 "
                               "archive",
                               archive_path, name, archive_entry_size(entry), cap));
    const std::string out_path = (stdfs::path(tmp) / base).string();
    std::ofstream out(out_path, std::ios::binary);
    if (!out) fail_cleanup(fmt::format("cannot create '{}': {}", out_path, std::strerror(errno)));
    const void* buf;
    size_t size;
    la_int64_t offset;
    int r;
    int64_t written = 0;
    while ((r = archive_read_data_block(a, &buf, &size, &offset)) == ARCHIVE_OK) {
      written += static_cast<int64_t>(size);
      if (written > cap || offset + static_cast<la_int64_t>(size) > cap)
        fail_cleanup(fmt::format("archive '{}': '{}' holds more than the official {} bytes: not the CIFAR-100 archive",
                                 archive_path, name, cap));
      out.write(static_cast<const char*>(buf), static_cast<std::streamsize>(size));
    }
    if (r != ARCHIVE_EOF)
      fail_cleanup(fmt::format("archive '{}' is corrupt or truncated while reading '{}': {}", archive_path, name,
                               archive_error_string(a)));
    out.close();
    if (!out) fail_cleanup(fmt::format("cannot write '{}' (disk full?)", out_path));
    found.insert(base);
  }
  if (rc != ARCHIVE_EOF)
    fail_cleanup(fmt::format("archive '{}' is corrupt or truncated: {}", archive_path, archive_error_string(a)));
  archive_read_free(a);
  a = nullptr;
  std::string missing;
  for (const auto& w : kWanted)
    if (!found.count(w)) missing += (missing.empty() ? "" : ", ") + w;
  if (!missing.empty()) {
    remove_quietly(tmp);
    fail("archive '{}' has no {}: it is not the CIFAR-100 binary archive (cifar-100-binary.tar.gz)", archive_path,
         missing);
  }

  // Validate every record before the directory becomes visible.
  try {
    (void)read_dataset(tmp);
  } catch (const Error& e) {
    remove_quietly(tmp);
    fail("archive '{}' holds a bad data set: {}", archive_path, e.what());
  }
  for (const auto& w : kWanted) {
    const std::string p = (stdfs::path(tmp) / w).string();
    int fd = ::open(p.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

  std::string old;
  std::error_code ec;
  if (stdfs::exists(target, ec) && !stdfs::is_empty(target, ec)) {
    // Without --force only a directory holding nothing but data-set files (an incomplete copy) is replaced,
    // so a mistyped --data-dir never loses someone's files.
    bool only_ours = stdfs::is_directory(target, ec);
    for (const auto& e : stdfs::directory_iterator(target, ec))
      if (!kWanted.count(e.path().filename().string())) only_ours = false;
    if (!replace && !only_ours) {
      remove_quietly(tmp);
      fail("data directory '{}' exists and holds other files; choose another --data-dir or use "
           "`cifar100 data download --force` to replace it",
           target.string());
    }
    old = (target.parent_path() / ("." + target.filename().string() + ".old-" + unique_suffix())).string();
    stdfs::rename(target, old, ec);
    if (ec) {
      remove_quietly(tmp);
      fail("cannot move the old data directory '{}' aside: {}", target.string(), ec.message());
    }
  }
  stdfs::rename(tmp, target, ec);
  if (ec) {
    remove_quietly(tmp);
    if (!old.empty()) stdfs::rename(old, target, ec);
    fail("cannot move the extracted data set into '{}': {}", target.string(), ec.message());
  }
  fs::sync_dir(target.parent_path().string());
  if (!old.empty()) remove_quietly(old);
}

std::string ensure_dataset(const FetchOptions& o) {
  if (dataset_present(o.data_dir) && !o.force) return o.data_dir;
  if (!o.archive.empty()) {
    log::info("extracting local archive {} into {}", o.archive, o.data_dir);
    if (!fs::exists(o.archive)) fail("archive '{}' (CIFAR100_ARCHIVE / --archive) does not exist", o.archive);
    const std::string md5 = hash::md5_file(o.archive);
    if (!o.archive_md5.empty() && md5 != o.archive_md5)
      fail("archive '{}' has MD5 {}, but archive_md5 expects {}: the file is corrupt or not the expected copy", o.archive,
           md5, o.archive_md5);
    if (!o.archive_sha256.empty()) {
      const std::string sha = hash::sha256_file(o.archive);
      if (sha != o.archive_sha256)
        fail("archive '{}' has SHA-256 {}, but archive_sha256 expects {}: the file is corrupt or not the expected copy",
             o.archive, sha, o.archive_sha256);
    }
    if (o.archive_md5.empty() && o.archive_sha256.empty() && md5 != kOfficialMd5)
      log::warn("archive '{}' has MD5 {}, not the official {}: using it anyway, every record is validated "
                "(set archive_md5 to require a checksum)",
                o.archive, md5, kOfficialMd5);
    extract_archive(o.archive, o.data_dir, o.force);
  } else {
    const stdfs::path target = stdfs::absolute(o.data_dir);
    fs::make_dirs(target.parent_path().string());
    const std::string dest = (target.parent_path() / "cifar-100-binary.tar.gz").string();
    log::info("downloading {} into {}", o.url, dest);
    download(o.url, dest, o.download_bytes, o.download_md5, o.download_sha256);
    extract_archive(dest, o.data_dir, o.force);
    remove_quietly(dest);
  }
  log::info("data set ready in {}", o.data_dir);
  return o.data_dir;
}

}  // namespace cifar::data
