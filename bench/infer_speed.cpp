// Inference speed of predict's engine (bench/infer_speed.sh runs it next to PyTorch):
//   infer_speed make DEPTH WIDTH DIR                      write a randomly initialised artifact
//   infer_speed run DIR fp32|bf16 THREADS BATCH SECONDS   print throughput (images/s at BATCH) and the median
//                                                         batch-1 latency (ms), one `key=value` line
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "model/artifact.h"
#include "model/inference.h"

using namespace cifar;
using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "make") {
    torch::manual_seed(0);
    model::WideResNet net(model::WrnConfig{std::atoll(argv[2]), std::atoll(argv[3]), 0.0, 100});
    net->eval();
    model::write_artifact(argv[4], *net, model::default_info(net->config()));
    return 0;
  }
  if (argc != 7 || std::string(argv[1]) != "run") {
    std::fprintf(stderr, "usage: infer_speed make DEPTH WIDTH DIR | run DIR fp32|bf16 THREADS BATCH SECONDS\n");
    return 2;
  }
  const model::Artifact art = model::load_artifact(argv[2]);
  torch::set_num_threads(std::atoi(argv[4]));
  model::InferenceOptions o;
  o.bf16 = std::string(argv[3]) == "bf16";
  const model::InferenceModel m(art, o);
  const int64_t batch = std::atoll(argv[5]);
  const double seconds = std::atof(argv[6]);
  // Inputs as the engine gets them from predict/serve: normalised float NCHW in channels-last.
  const at::Tensor xb = m.preprocess(torch::randint(0, 256, {batch, 32, 32, 3}, torch::kUInt8));
  const at::Tensor x1 = m.preprocess(torch::randint(0, 256, {1, 32, 32, 3}, torch::kUInt8));
  for (int i = 0; i < 2; ++i) (void)m.logits(xb);
  int64_t images = 0;
  auto t0 = Clock::now();
  do {
    (void)m.logits(xb);
    images += batch;
  } while (since(t0) < seconds);
  const double throughput = static_cast<double>(images) / since(t0);
  for (int i = 0; i < 5; ++i) (void)m.logits(x1);
  std::vector<double> lat;
  t0 = Clock::now();
  while (lat.size() < 20 || (since(t0) < seconds && lat.size() < 2000)) {
    const auto t = Clock::now();
    (void)m.logits(x1);
    lat.push_back(since(t) * 1e3);
  }
  std::sort(lat.begin(), lat.end());
  std::printf("throughput=%.1f latency_ms=%.3f\n", throughput, lat[lat.size() / 2]);
  return 0;
}
