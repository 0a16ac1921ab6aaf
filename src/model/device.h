// Where and how tensors run: device (auto picks CUDA when LibTorch has it and a GPU is present),
// CPU threads, and precision (bf16 autocast where the hardware supports it, when precision=auto, unless
// CIFAR100_AUTO_PRECISION says otherwise).
#pragma once
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace cifar {
class Config;
}

namespace cifar::model {

struct Runtime {
  c10::Device device{c10::kCPU};
  bool bf16 = false;  // autocast to bfloat16 in forward passes
  bool fp16 = false;  // autocast to float16 in forward passes, with a loss scale in training (CUDA only)
  bool autocast() const { return bf16 || fp16; }
  c10::ScalarType autocast_dtype() const { return fp16 ? c10::ScalarType::Half : c10::ScalarType::BFloat16; }
  int threads = 1;
  bool channels_last = true;
  std::string describe() const;
  // "fp32", "bf16" or "fp16": the precision of the forward passes, as results.json records it.
  const char* precision() const { return bf16 ? "bf16" : fp16 ? "fp16" : "fp32"; }
};

// The environment variable that forces what precision=auto picks (fp32 or bf16), so that one machine gives
// the answers of another kind of CPU (tests run both ways on every CPU).
inline constexpr const char* kAutoPrecisionEnv = "CIFAR100_AUTO_PRECISION";
// What precision=auto picks on `device`: kAutoPrecisionEnv when set (a ConfigError naming it if it is neither
// fp32 nor bf16), else bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere.
bool auto_picks_bf16(const c10::Device& device);

// Resolves device/precision/threads from the config and applies the thread setting. In a distributed run,
// `local_rank` picks the GPU and threads=0 shares the cores among the host's `local_world` processes.
Runtime setup_runtime(const Config& cfg, int local_rank = 0, int local_world = 1);
// Seeds torch's global generators (CPU and CUDA).
void seed_torch(uint64_t seed);

}  // namespace cifar::model

namespace torch::nn {
class Module;
}
namespace cifar::model {
// Moves a module to the runtime's device and, when channels_last is set, converts its 4-D parameters to
// the channels-last memory format.
void place_module(torch::nn::Module& m, const Runtime& rt);
}  // namespace cifar::model
