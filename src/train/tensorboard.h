// TensorBoard event files, written without TensorFlow: TFRecord framing (length, masked CRC-32C of the
// length, the record, masked CRC-32C of the record) around Event protos (tensorflow/core/util/event.proto)
// holding Summary protos with scalar (simple_value) and PNG image values. One file per process,
// events.out.tfevents.<unix seconds>.<host>.<pid>.0, flushed after every event so that a TensorBoard
// watching the directory sees each epoch as it ends.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cifar::train {

uint32_t crc32c(const void* data, size_t size);
// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates `dir` and a new event file in it, starting with the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  // `png`: an encoded PNG of the given size (RGB).
  void image(int64_t step, const std::string& tag, int height, int width, const std::string& png);
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// The scalars of one metrics.jsonl line: every numeric key but "epoch"; train_, val_, ema_ and test_ keys
// become train/..., val/..., ema/..., test/... (train_loss -> train/loss), the others (and train_seconds)
// keep their names.
std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& line);

}  // namespace cifar::train
