// Checkpoint cost: for WRN-16-2 (the quick preset) and WRN-28-10 (the seed's model), the time a save
// blocks training (copying weights, momentum and RNG state to CPU memory), the time the background write
// takes (pickle, SHA-256, write, fsync, rename), the time to load and verify, and the size on disk against
// the fp32 weights.   checkpoint_cost [DIR]   (default: a temporary directory)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/config.h"
#include "model/wide_resnet.h"
#include "train/checkpoint.h"
#include "train/optim.h"

using namespace cifar;
namespace stdfs = std::filesystem;

namespace {
double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
uint64_t dir_bytes(const std::string& d) {
  uint64_t n = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(d))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}
}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(2);
  const std::string root = argc > 1 ? argv[1] : (stdfs::temp_directory_path() / "cifar100-ckpt-bench").string();
  stdfs::remove_all(root);
  std::printf("%-10s %12s %12s %10s %10s %10s %12s %8s\n", "model", "params", "weights MB", "block s", "write s",
              "load s", "on disk MB", "ratio");
  for (auto [depth, width] : {std::pair<int64_t, int64_t>{16, 2}, {28, 10}}) {
    Config cfg;
    model::WideResNet net(model::WrnConfig{depth, width, 0.0, 100});
    auto opt = train::make_sgd(*net, cfg);
    auto params = net->parameters();
    {  // one step so that every momentum buffer exists
      auto loss = net->forward(torch::randn({2, 3, 32, 32})).sum();
      loss.backward();
      opt->step();
    }
    const std::string dir = root + "/wrn-" + std::to_string(depth) + "-" + std::to_string(width);
    train::Checkpointer ck(dir, 1);
    train::TrainState st;
    st.step = 1;
    auto t0 = std::chrono::steady_clock::now();
    auto snap = train::capture(*net, *opt, params, st, cfg.to_json(), "bench");
    const double block = since(t0);
    t0 = std::chrono::steady_clock::now();
    const std::string path = ck.save(snap, false);
    const double write = since(t0);
    t0 = std::chrono::steady_clock::now();
    auto back = train::Checkpointer::load(path);
    const double load = since(t0);
    const double weights_mb = static_cast<double>(model::count_parameters(*net)) * 4 / 1e6;
    const double disk_mb = static_cast<double>(dir_bytes(path)) / 1e6;
    std::printf("WRN-%ld-%-4ld %12ld %12.1f %10.3f %10.3f %10.3f %12.1f %7.2fx\n", static_cast<long>(depth),
                static_cast<long>(width), static_cast<long>(model::count_parameters(*net)), weights_mb, block, write,
                load, disk_mb, disk_mb / weights_mb);
  }
  stdfs::remove_all(root);
  return 0;
}
