// The CIFAR-100 binary format: train.bin / test.bin hold 3,074-byte records (coarse label, fine label,
// 1,024 red, 1,024 green, 1,024 blue pixel bytes, each plane row by row); label names one per line.
// Readers check everything and name the file and record in every error.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cifar::data {

constexpr int kImageSize = 32;
constexpr int kChannels = 3;
constexpr int kPixels = kChannels * kImageSize * kImageSize;  // 3,072
constexpr int kRecordBytes = kPixels + 2;                      // 3,074
constexpr int kNumClasses = 100;
constexpr int kNumCoarse = 20;
constexpr int64_t kOfficialTrainRecords = 50000;
constexpr int64_t kOfficialTestRecords = 10000;

// Per-channel mean and standard deviation of the 50,000 training images (the usual CIFAR-100 constants,
// whose means the real-data test recomputes), used to normalise inputs.
constexpr std::array<float, 3> kMean = {0.5071f, 0.4865f, 0.4409f};
constexpr std::array<float, 3> kStd = {0.2673f, 0.2564f, 0.2762f};

// One split in memory: images are planar CHW uint8, exactly as in the file.
struct Split {
  std::string path;  // where it was read from, for messages
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> fine;
  std::vector<uint8_t> coarse;
  int64_t size() const { return static_cast<int64_t>(fine.size()); }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * kPixels; }
};

struct Dataset {
  std::string dir;
  Split train, test;
  std::vector<std::string> fine_names, coarse_names;
};

struct DataFiles {
  std::string train, test, fine_names, coarse_names;
};
DataFiles data_files(const std::string& dir);

// Parses a split from bytes; `path` only names it in messages.
Split parse_split(const std::vector<uint8_t>& bytes, const std::string& path);
Split read_split(const std::string& path);
std::vector<std::string> read_label_names(const std::string& path, int expected);
// Reads the four files of a data set directory; a missing file is an error that says how to get it.
Dataset read_dataset(const std::string& dir);
// Writes a split in the official format (used by tests and tools).
void write_split(const std::string& path, const Split& split);

}  // namespace cifar::data
