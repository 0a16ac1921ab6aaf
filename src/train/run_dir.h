// The run directory written by `cifar100 train --out DIR`:
//   config.yaml     the resolved configuration (reloadable with --config)
//   metrics.jsonl   one JSON object per epoch
//   results.json    final test metrics, best epoch, wall time
//   best.pt         weights with the best validation top-1 (PyTorch state dict)
//   final.pt        weights after the last epoch
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cifar {
class Config;
}

namespace cifar::train {

class RunDir {
 public:
  // Creates the directory. Refuses one that already holds a run unless `overwrite` or `resuming`.
  // best.pt and final.pt go to `weights_dir` ("" = the run directory; SageMaker keeps them out of
  // output/data, whose every byte is uploaded).
  RunDir(std::string dir, bool overwrite, bool resuming, std::string weights_dir = "");
  const std::string& dir() const { return dir_; }
  std::string file(const std::string& name) const;
  void write_config(const Config& cfg) const;
  void append_metrics(const nlohmann::json& epoch) const;
  // Replaces metrics.jsonl with these lines (resume: the checkpoint's history is the truth).
  void rewrite_metrics(const std::vector<nlohmann::json>& epochs) const;
  void write_results(const nlohmann::json& results) const;
  std::string best_weights() const;
  std::string final_weights() const;

 private:
  std::string dir_, weights_dir_;
};

}  // namespace cifar::train
