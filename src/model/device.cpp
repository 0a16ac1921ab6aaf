#include "model/device.h"

#include <algorithm>
#include <cstdlib>

#include <torch/torch.h>

#include "common/config.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "model/cpu_allocator.h"

namespace cifar::model {

std::string Runtime::describe() const {
  return fmt::format("device={} precision={} threads={} memory_format={}", device.str(), bf16 ? "bf16-autocast" : fp16 ? "fp16-autocast+loss-scale" : "fp32",
                     threads, channels_last ? "channels_last" : "contiguous");
}

bool auto_picks_bf16(const c10::Device& device) {
  if (const char* forced = std::getenv(kAutoPrecisionEnv); forced && *forced) {
    const std::string v = forced;
    if (v != "fp32" && v != "bf16")
      fail_config("environment variable {}='{}': precision=auto can be forced to fp32 or bf16 only (or unset it)",
                  kAutoPrecisionEnv, v);
    return v == "bf16";
  }
  return device.is_cuda() || cpu::has_fast_bf16();
}

Runtime setup_runtime(const Config& cfg, int local_rank, int local_world) {
  Runtime rt;
  const std::string& dev = cfg.s("device");
  const bool cuda_ok = torch::cuda::is_available();
  if (dev == "cuda") {
    if (!cuda_ok)
      fail("device=cuda was asked for, but {} (set device=cpu or device=auto)",
           !at::hasCUDA() ? "this LibTorch was built without CUDA"
                                                                  : "no CUDA GPU is visible");
    rt.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  } else if (dev == "auto" && cuda_ok) {
    rt.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  const std::string& prec = cfg.s("precision");
  if (prec == "bf16") {
    rt.bf16 = true;
    if (rt.device.is_cpu() && !cpu::has_fast_bf16())
      log::warn("precision=bf16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated and likely slower than fp32");
  } else if (prec == "fp16") {
    if (!rt.device.is_cuda())
      fail_config("precision=fp16 needs a CUDA device (CPU autocast is bfloat16 only): use precision=bf16 or fp32 "
                  "on the CPU");
    rt.fp16 = true;
  } else if (prec == "auto") {
    rt.bf16 = auto_picks_bf16(rt.device);
  }
  // threads=0: the host's cores, shared among the processes of a distributed run on this host.
  rt.threads = cfg.i("threads") > 0 ? static_cast<int>(cfg.i("threads"))
                                    : std::max(1, cpu::available_cores() / std::max(1, local_world));
  torch::set_num_threads(rt.threads);
  if (rt.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);  // fixed shapes: pick the fastest kernels once
  rt.channels_last = cfg.b("channels_last");
  // A CPU-only optimisation: on CUDA the CPU holds only batches in flight and the save path's copies, and
  // those should live in plain, LibTorch-owned memory (the allocator is process-wide and cannot be undone).
  if (cfg.b("caching_allocator") && rt.device.is_cpu()) install_caching_cpu_allocator(size_t{8} << 30);
  return rt;
}

void seed_torch(uint64_t seed) {
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
}

}  // namespace cifar::model

namespace cifar::model {
void place_module(torch::nn::Module& m, const Runtime& rt) {
  m.to(rt.device);
  if (!rt.channels_last) return;
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
}
}  // namespace cifar::model
