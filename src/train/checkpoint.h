// Checkpoints that survive anything. Each checkpoint is a directory, complete or absent:
//   <checkpoint_dir>/ckpt-000001404/   (ckpt-<optimizer step>; best-<step> for the best validation top-1)
//     state.safetensors  model weights and buffers, SGD momentum buffers, torch RNG states
//     meta.json          format version, position (epoch, batch, step), partial-epoch meters, early stopping,
//                        best epoch, metrics history, the resolved config
//     SHA256SUMS         checksums of both files, verified on load
// It is written under a temporary name (files fsynced), then renamed into place and the directory fsynced.
// The newest valid checkpoint wins; a corrupt one is reported and skipped; nothing is deleted on load.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "train/metrics.h"

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace cifar::train {

constexpr int kCheckpointFormat = 1;

// Where training stands; everything a bit-exact resume needs besides tensors.
struct TrainState {
  int64_t epoch = 0;  // 0-based epoch in progress (or next to start when batch == 0)
  int64_t batch = 0;  // next batch of that epoch; == batches per epoch: training done, validation pending
  int64_t step = 0;   // optimizer steps taken so far
  double loss_sum = 0, hit_sum = 0;  // meters of the epoch in progress
  double grad_norm_sum = 0;          // sum of the global gradient norms of the epoch's steps so far
  int64_t grad_norm_steps = 0;
  int64_t seen = 0;
  double train_seconds = 0;
  double es_best = -1e300;  // early stopping
  int64_t es_best_epoch = -1, es_bad_epochs = 0;
  int64_t best_epoch = 0;  // 1-based, 0 = none yet
  double best_val_top1 = 0;
  bool finished = false, early_stopped = false;
  // precision=fp16: the loss scaler (scale 0 = none yet), and optimizer steps skipped for inf/NaN gradients.
  double loss_scale = 0;
  int64_t scale_growth_tracker = 0, skipped_steps = 0;
  std::vector<EpochMetrics> history;
};

struct Snapshot {
  TrainState state;
  nlohmann::json config;  // the resolved config of the run
  std::vector<std::pair<std::string, at::Tensor>> model;  // state-dict order
  std::vector<at::Tensor> momentum;  // per parameter, undefined where SGD has no buffer yet
  std::vector<std::pair<std::string, at::Tensor>> ema;    // the weight average (ema_decay > 0), state-dict order
  at::Tensor rng_cpu, rng_cuda;      // rng_cuda undefined on CPU runs
  std::string reason;                // epoch, time, signal, final, best
};

// Copies everything to CPU memory (the only part of a save that blocks training). `ema`: the weight
// average, if any.
Snapshot capture(const torch::nn::Module& model, const torch::optim::Optimizer& opt,
                 const std::vector<at::Tensor>& params, const TrainState& state, const nlohmann::json& config,
                 const std::string& reason, const torch::nn::Module* ema = nullptr);
// Loads the weights and buffers only.
void restore_weights(const Snapshot& s, torch::nn::Module& model);
// Loads a state dict (name, tensor) into a module, checking names and shapes; `what` names the source.
void load_state(const std::vector<std::pair<std::string, at::Tensor>>& tensors, torch::nn::Module& model,
                const std::string& what);
// Loads weights, momentum buffers (in each parameter's memory format) and RNG states.
void restore(const Snapshot& s, torch::nn::Module& model, torch::optim::Optimizer& opt,
             const std::vector<at::Tensor>& params);

class Checkpointer {
 public:
  // Creates the directory, takes an exclusive lock on it and removes temporaries left by a killed save.
  Checkpointer(std::string dir, int64_t keep);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  const std::string& dir() const { return dir_; }
  // Also copies every checkpoint, once complete, to `address` (a directory or s3:// prefix; "" = off):
  // its files with SHA256SUMS, the manifest, last; pruned checkpoints are removed there too (manifest
  // first). A failed copy is logged and training goes on.
  void set_mirror(std::string address) { mirror_ = std::move(address); }
  // Writes in the background after the previous write finished. A failed write is logged and returned
  // by the next wait(); older checkpoints are never touched by a failed write.
  void save_async(Snapshot s, bool best);
  // Writes now; throws Error on failure. Returns the checkpoint's path.
  std::string save(const Snapshot& s, bool best);
  // Waits for the background write; returns its error ("" when fine or none).
  std::string wait();
  // Cheap, for every training step: when a background write has failed, throws Error with its cause, the
  // newest complete checkpoint (kept) and how to resume.
  void throw_if_failed();

  // Checkpoint directories in `dir`, newest first.
  static std::vector<std::string> list(const std::string& dir);
  // Reads and verifies one checkpoint; throws Error naming the checkpoint and the problem.
  static Snapshot load(const std::string& path);
  // The newest valid checkpoint, with messages about newer invalid ones in `problems`. Nothing when the
  // directory holds no checkpoint; throws when it holds some but none is valid (deleting nothing).
  static std::optional<std::pair<std::string, Snapshot>> load_latest(const std::string& dir,
                                                                     std::vector<std::string>& problems);
  // When `dir` holds no checkpoint: copies the newest complete periodic and best checkpoints of the mirror
  // (those whose manifest is there) into it. Returns how many were copied.
  static int pull_mirror(const std::string& mirror, const std::string& dir);
  // The newest valid best-* checkpoint (the weights with the best validation top-1), if any.
  static std::optional<std::pair<std::string, Snapshot>> load_best(const std::string& dir);

 private:
  void write(const Snapshot& s, bool best);
  // Removes checkpoints beyond the ones kept; returns their names.
  std::vector<std::string> prune(bool best);
  void mirror(const std::string& name, const std::vector<std::string>& pruned);

  std::string dir_, mirror_;
  int64_t keep_;
  int lock_fd_ = -1;
  std::thread worker_;
  std::mutex mu_;
  std::string pending_error_;
  std::atomic<bool> failed_{false};
};

}  // namespace cifar::train
