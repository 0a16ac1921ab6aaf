// What this machine offers: usable cores (CPU affinity) and bf16 support (AVX512-BF16 or AMX), which
// decides whether precision=auto turns on bf16 autocast on the CPU.
#pragma once

namespace cifar::cpu {

int available_cores();
bool has_avx512_bf16();
bool has_amx_bf16();
inline bool has_fast_bf16() { return has_avx512_bf16() || has_amx_bf16(); }

}  // namespace cifar::cpu

namespace cifar::cpu {
// Keeps freed memory in the process heap instead of returning it to the OS (glibc mallopt), so the
// large activation buffers of every training step are reused instead of being mapped and page-faulted
// afresh. On this project's machines that makes eager training up to 1.7x faster. Call once at start.
void tune_allocator();
}  // namespace cifar::cpu
