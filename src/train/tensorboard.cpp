#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/protobuf.h"

namespace cifar::train {

namespace {
// event.proto / summary.proto field numbers.
constexpr int kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr int kSummaryValue = 1;
constexpr int kValueTag = 1, kValueSimple = 2, kValueImage = 4;
constexpr int kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4;

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli, reflected
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

pb::Writer event_header(int64_t step) {
  pb::Writer e;
  e.f64(kEventWallTime, now_seconds()).int64(kEventStep, step);
  return e;
}
}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& t = crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  fs::make_dirs(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const auto secs = static_cast<long long>(now_seconds());
  path_ = (std::filesystem::path(dir) / fmt::format("events.out.tfevents.{:010d}.{}.{}.0", secs, host, getpid())).string();
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) fail("cannot create the TensorBoard event file {}: {}", path_, std::strerror(errno));
  pb::Writer e;
  e.f64(kEventWallTime, now_seconds()).bytes(kEventFileVersion, "brain.Event:2");
  write_event(e.str());
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::write_event(const std::string& event) {
  std::string rec;
  const uint64_t n = event.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) rec.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  rec.append(len, 8);
  put32(masked_crc32c(len, 8));
  rec += event;
  put32(masked_crc32c(event.data(), event.size()));
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0)
    fail("cannot write the TensorBoard event file {}: {}", path_, std::strerror(errno));
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  pb::Writer summary;
  for (const auto& [tag, v] : values) {
    pb::Writer value;
    value.bytes(kValueTag, tag).f32(kValueSimple, static_cast<float>(v));
    summary.message(kSummaryValue, value);
  }
  pb::Writer e = event_header(step);
  e.message(kEventSummary, summary);
  write_event(e.str());
}

void TensorBoardWriter::image(int64_t step, const std::string& tag, int height, int width, const std::string& png) {
  pb::Writer img;
  img.int64(kImageHeight, height).int64(kImageWidth, width).int64(kImageColorspace, 3).bytes(kImageEncoded, png);
  pb::Writer value;
  value.bytes(kValueTag, tag).message(kValueImage, img);
  pb::Writer summary;
  summary.message(kSummaryValue, value);
  pb::Writer e = event_header(step);
  e.message(kEventSummary, summary);
  write_event(e.str());
}

std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& line) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [key, v] : line.items()) {
    if (key == "epoch" || !v.is_number()) continue;
    if (key == "train_seconds") {  // a time, not a figure of the training split
      out.emplace_back(key, v.get<double>());
      continue;
    }
    std::string tag = key;
    for (const char* group : {"train_", "val_", "ema_", "test_"})
      if (tag.rfind(group, 0) == 0) {
        tag[std::strlen(group) - 1] = '/';
        break;
      }
    out.emplace_back(tag, v.get<double>());
  }
  return out;
}

}  // namespace cifar::train
