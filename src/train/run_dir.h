// The run directory written by `cifar100 train --out DIR`:
//   config.yaml     the resolved configuration (reloadable with --config)
//   metrics.jsonl   one JSON object per epoch
//   results.json    final test metrics, best epoch, wall time
//   best.pt         weights with the best validation top-1 (PyTorch state dict)
//   final.pt        weights after the last epoch
//   tensorboard/    TensorBoard event files (tensorboard=true): each epoch's metrics.jsonl line as scalars
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cifar {
class Config;
}

namespace cifar::train {

class TensorBoardWriter;

class RunDir {
 public:
  // Creates the directory. Refuses one that already holds a run unless `overwrite` or `resuming`.
  // best.pt and final.pt go to `weights_dir` ("" = the run directory; SageMaker keeps them out of
  // output/data, whose every byte is uploaded).
  RunDir(std::string dir, bool overwrite, bool resuming, std::string weights_dir = "");
  const std::string& dir() const { return dir_; }
  std::string file(const std::string& name) const;
  void write_config(const Config& cfg) const;
  ~RunDir();
  RunDir(RunDir&&) noexcept;
  // Starts a new event file in tensorboard/: append_metrics() then also writes each epoch there.
  void enable_tensorboard();
  TensorBoardWriter* tensorboard() const { return tensorboard_.get(); }
  void append_metrics(const nlohmann::json& epoch) const;
  // Replaces metrics.jsonl with these lines (resume: the checkpoint's history is the truth).
  void rewrite_metrics(const std::vector<nlohmann::json>& epochs) const;
  void write_results(const nlohmann::json& results) const;
  std::string best_weights() const;
  std::string final_weights() const;

 private:
  std::string dir_, weights_dir_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace cifar::train
