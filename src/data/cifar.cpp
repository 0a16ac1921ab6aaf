#include "data/cifar.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"

namespace cifar::data {

DataFiles data_files(const std::string& dir) {
  namespace stdfs = std::filesystem;
  const stdfs::path d(dir);
  return {(d / "train.bin").string(), (d / "test.bin").string(), (d / "fine_label_names.txt").string(),
          (d / "coarse_label_names.txt").string()};
}

Split parse_split(const std::vector<uint8_t>& bytes, const std::string& path) {
  const size_t n = bytes.size();
  if (n == 0) fail("'{}' is empty: expected 3,074-byte CIFAR-100 records", path);
  if (n % kRecordBytes != 0)
    fail("'{}' is {} bytes, not a whole number of 3,074-byte records: record {} is truncated after {} bytes "
         "(the file is cut short or not a CIFAR-100 binary file; fetch it again with `cifar100 data download --force`)",
         path, n, n / kRecordBytes, n % kRecordBytes);
  const int64_t count = static_cast<int64_t>(n / kRecordBytes);
  Split s;
  s.path = path;
  s.pixels.resize(static_cast<size_t>(count) * kPixels);
  s.fine.resize(static_cast<size_t>(count));
  s.coarse.resize(static_cast<size_t>(count));
  std::array<int, kNumClasses> coarse_of;
  std::array<int64_t, kNumClasses> first_record;
  coarse_of.fill(-1);
  for (int64_t r = 0; r < count; ++r) {
    const uint8_t* rec = bytes.data() + r * kRecordBytes;
    const int coarse = rec[0], fine = rec[1];
    if (coarse >= kNumCoarse)
      fail("'{}' record {} (byte offset {}): coarse label {} is out of range 0..{}", path, r, r * kRecordBytes, coarse,
           kNumCoarse - 1);
    if (fine >= kNumClasses)
      fail("'{}' record {} (byte offset {}): fine label {} is out of range 0..{}", path, r, r * kRecordBytes + 1, fine,
           kNumClasses - 1);
    if (coarse_of[fine] < 0) {
      coarse_of[fine] = coarse;
      first_record[fine] = r;
    } else if (coarse_of[fine] != coarse) {
      fail("'{}' record {}: fine label {} has coarse label {}, but record {} gave it coarse label {} (corrupt record)",
           path, r, fine, coarse, first_record[fine], coarse_of[fine]);
    }
    s.coarse[static_cast<size_t>(r)] = static_cast<uint8_t>(coarse);
    s.fine[static_cast<size_t>(r)] = static_cast<uint8_t>(fine);
    std::copy(rec + 2, rec + kRecordBytes, s.pixels.begin() + r * kPixels);
  }
  return s;
}

Split read_split(const std::string& path) {
  if (!fs::exists(path))
    fail("data set file '{}' is missing: run `cifar100 data download`, or point CIFAR100_ARCHIVE (--archive) at "
         "cifar-100-binary.tar.gz or CIFAR100_DATA_DIR (--data-dir) at an extracted copy",
         path);
  // A linked file (a SageMaker channel staged as a data set) is named by its target in messages.
  std::error_code ec;
  const std::string name = std::filesystem::is_symlink(path, ec) ? std::filesystem::canonical(path, ec).string() : path;
  return parse_split(fs::read_bytes(path), name.empty() ? path : name);
}

std::vector<std::string> read_label_names(const std::string& path, int expected) {
  if (!fs::exists(path))
    fail("label-name file '{}' is missing: the data set directory is incomplete; run `cifar100 data download --force`",
         path);
  std::istringstream in(fs::read_text(path));
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int>(names.size()) != expected)
    fail("'{}' has {} label names, expected {} (one per line)", path, names.size(), expected);
  return names;
}

Dataset read_dataset(const std::string& dir) {
  if (!fs::exists(dir))
    fail("data set directory '{}' does not exist: run `cifar100 data download`, or set CIFAR100_ARCHIVE (--archive) "
         "to a local cifar-100-binary.tar.gz",
         dir);
  const DataFiles f = data_files(dir);
  Dataset d;
  d.dir = dir;
  d.train = read_split(f.train);
  d.test = read_split(f.test);
  d.fine_names = read_label_names(f.fine_names, kNumClasses);
  d.coarse_names = read_label_names(f.coarse_names, kNumCoarse);
  if (d.train.size() != kOfficialTrainRecords || d.test.size() != kOfficialTestRecords)
    log::warn("data set '{}' holds {} training and {} test images; the official files hold {} and {}", dir,
              d.train.size(), d.test.size(), kOfficialTrainRecords, kOfficialTestRecords);
  return d;
}

void write_split(const std::string& path, const Split& split) {
  std::vector<uint8_t> bytes(static_cast<size_t>(split.size()) * kRecordBytes);
  for (int64_t r = 0; r < split.size(); ++r) {
    uint8_t* rec = bytes.data() + r * kRecordBytes;
    rec[0] = split.coarse[static_cast<size_t>(r)];
    rec[1] = split.fine[static_cast<size_t>(r)];
    std::copy(split.image(r), split.image(r) + kPixels, rec + 2);
  }
  fs::write_atomic(path, bytes.data(), bytes.size());
}

}  // namespace cifar::data
