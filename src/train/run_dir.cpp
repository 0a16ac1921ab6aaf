#include "train/run_dir.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "train/tensorboard.h"

namespace cifar::train {

RunDir::RunDir(std::string dir, bool overwrite, bool resuming, std::string weights_dir)
    : dir_(std::move(dir)), weights_dir_(weights_dir.empty() ? dir_ : std::move(weights_dir)) {
  fs::make_dirs(dir_);
  fs::make_dirs(weights_dir_);
  if (resuming) return;
  for (const char* f : {"metrics.jsonl", "results.json"}) {
    const std::string p = file(f);
    if (!fs::exists(p)) continue;
    if (!overwrite)
      fail("'{}' already holds a training run ({} exists) and no checkpoint to resume from: choose another --out, "
           "or pass --overwrite to replace it",
           dir_, f);
    std::filesystem::remove(p);
  }
  // A replaced run's event files and report would mix with the new run's.
  std::filesystem::remove_all(file("tensorboard"));
  std::filesystem::remove(file("report.html"));
}

RunDir::~RunDir() = default;
RunDir::RunDir(RunDir&&) noexcept = default;

void RunDir::enable_tensorboard() { tensorboard_ = std::make_unique<TensorBoardWriter>(file("tensorboard")); }

std::string RunDir::file(const std::string& name) const { return (std::filesystem::path(dir_) / name).string(); }
std::string RunDir::best_weights() const { return (std::filesystem::path(weights_dir_) / "best.pt").string(); }
std::string RunDir::final_weights() const { return (std::filesystem::path(weights_dir_) / "final.pt").string(); }

void RunDir::write_config(const Config& cfg) const {
  fs::write_atomic(file("config.yaml"), "# resolved configuration of this run (cifar100 train --config " +
                                            file("config.yaml") + " repeats it)\n" + cfg.to_yaml());
}

void RunDir::append_metrics(const nlohmann::json& epoch) const {
  fs::append_line(file("metrics.jsonl"), epoch.dump());
  if (tensorboard_) tensorboard_->scalars(epoch.at("epoch").get<int64_t>(), tensorboard_scalars(epoch));
}

void RunDir::rewrite_metrics(const std::vector<nlohmann::json>& epochs) const {
  std::string text;
  for (const auto& e : epochs) text += e.dump() + "\n";
  fs::write_atomic(file("metrics.jsonl"), text);
}

void RunDir::write_results(const nlohmann::json& results) const {
  fs::write_atomic(file("results.json"), results.dump(2) + "\n");
}

}  // namespace cifar::train
