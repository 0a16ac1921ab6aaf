#include "common/cpu.h"

#include <sched.h>

#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace cifar::cpu {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

bool has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 5) & 1;  // CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
#else
  return false;
#endif
}

bool has_amx_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (d >> 22) & 1;  // CPUID.(EAX=7,ECX=0):EDX[22] = AMX-BF16
#else
  return false;
#endif
}

}  // namespace cifar::cpu

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace cifar::cpu {
void tune_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest value glibc accepts: blocks up to 32 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);   // never give less than 1 GiB of free heap top back to the OS
  mallopt(M_TOP_PAD, 64 << 20);         // grow the heap in 64 MiB steps
#endif
}
}  // namespace cifar::cpu
