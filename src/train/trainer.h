// The training loop: per-iteration LR schedule, MixUp, label smoothing, bf16 autocast, gradient
// clipping, SGD; validation every epoch with early stopping and best-model selection; metrics to the
// run directory and the log; checkpoints (every N epochs, every N minutes, best, final, on SIGTERM/SIGINT)
// and bit-exact resume from any of them, mid-epoch included. With a process group: data-parallel training
// (each rank its share of every global batch, gradients summed in buckets during backward, metrics
// reduced, only rank 0 writing files).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/cifar.h"
#include "model/device.h"
#include "model/wide_resnet.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/run_dir.h"

namespace cifar {
class Config;
}

namespace cifar::dist {
class Group;
}

namespace cifar::train {

struct FitResult {
  std::vector<EpochMetrics> history;
  int64_t best_epoch = 0;  // 1-based; the last epoch when there is no validation set
  double best_val_top1 = 0;
  bool early_stopped = false;
  int stopped_by_signal = 0;  // SIGTERM/SIGINT when training was interrupted (a checkpoint was written)
};

class Trainer {
 public:
  // `ckpt` may be null (no checkpoints); so may `run` (no files: the other ranks of a distributed run).
  // `group`: train data-parallel with the other ranks (null: alone).
  Trainer(const Config& cfg, const model::Runtime& rt, model::WideResNet net, const RunDir* run, Checkpointer* ckpt,
          dist::Group* group = nullptr);
  // Trains on `train_idx` of `train_split`, validating on `val_idx` (may be empty), from scratch or from
  // `resume`. Leaves the model with its final weights; best.pt and final.pt are in the run directory.
  FitResult fit(const data::Split& train_split, const std::vector<int64_t>& train_idx,
                const std::vector<int64_t>& val_idx, const Snapshot* resume = nullptr);
  // Each of `hosts` hosts holds its own shard of the data (SageMaker's ShardedByS3Key): the host's ranks
  // share its data, each host contributes batch_size / hosts images to every step (full batches only),
  // and all run the steps of the smallest shard.
  void shard_by_host(int local_rank, int local_world, int hosts) { host_ = {local_rank, local_world, hosts}; }

 private:
  const Config& cfg_;
  model::Runtime rt_;
  model::WideResNet net_;
  const RunDir* run_;
  Checkpointer* ckpt_;
  dist::Group* group_;
  struct HostShard {
    int local_rank = 0, local_world = 1, hosts = 1;
  } host_;
};

// Checks that a checkpoint may continue under the current config: keys the weights or data order depend
// on must match (ConfigError naming them, unless allow_change); other changed keys are logged.
void check_resume_config(const Config& current, const nlohmann::json& saved, const std::string& checkpoint,
                         bool allow_change);

}  // namespace cifar::train
