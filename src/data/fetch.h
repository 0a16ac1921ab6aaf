// Getting the data set onto disk: download the official archive over HTTPS (size and MD5 verified),
// or take a local archive, and extract it with libarchive into the data directory. Extraction goes to
// a temporary directory that is validated and then renamed into place, so the data directory is
// either complete or absent.
#pragma once
#include <cstdint>
#include <string>

namespace cifar {
class Config;
}

namespace cifar::data {

struct FetchOptions {
  std::string data_dir;      // where the extracted files live or go
  std::string archive;       // local archive to use instead of downloading ("" = none)
  std::string archive_md5;   // expected MD5 of the local archive ("" = warn if not official)
  std::string url;           // download address
  std::string download_md5;  // expected MD5 of the download
  std::string archive_sha256, download_sha256;  // expected SHA-256 ("" = not checked; both are logged)
  int64_t download_bytes = 0;
  bool force = false;        // replace an existing data directory
};

FetchOptions fetch_options(const Config& cfg);
// data_dir from the config, else the default under the cache directory.
std::string resolve_data_dir(const Config& cfg);
// True when the directory holds the four files of the data set.
bool dataset_present(const std::string& dir);
// Makes sure the data set is present (extracting the local archive or downloading as needed) and
// returns its directory.
std::string ensure_dataset(const FetchOptions& opts);

// Downloads `url` (https:// or file:// only) to `dest` (through dest.part), verifying size, MD5 and, when
// given, SHA-256; never receives more than `expected_bytes` (or 1 GiB when 0); throws and removes the partial
// file on any failure.
void download(const std::string& url, const std::string& dest, int64_t expected_bytes, const std::string& expected_md5,
              const std::string& expected_sha256 = "");
constexpr int64_t kMaxDownloadBytes = int64_t{1} << 30;
// Extracts a cifar-100-binary tar.gz into `data_dir` atomically and validates its contents. Only gzip and
// tar are read (libarchive runs no external filter program), and no member may be larger than the official
// one (train.bin 153,700,000 bytes, test.bin 30,740,000, each name list 64 KiB). An existing
// directory is replaced only when `replace` is set or it holds nothing but data-set files.
void extract_archive(const std::string& archive, const std::string& data_dir, bool replace);

}  // namespace cifar::data
