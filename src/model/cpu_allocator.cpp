#include "model/cpu_allocator.h"

#include <sys/mman.h>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "model/torch_compat.h"

namespace cifar::model {

namespace {
constexpr size_t kMinCached = size_t{1} << 20;  // smaller blocks go to the default allocator
constexpr size_t kGranule = size_t{2} << 20;    // sizes round up to 2 MiB (one huge page)

class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator(c10::Allocator* fallback, size_t max_cached) : fallback_(fallback), max_cached_(max_cached) {}

  c10::DataPtr allocate(size_t n) CIFAR100_ALLOCATE_CONST override {
    if (n < kMinCached) return fallback_->allocate(n);
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Best fit among cached blocks no more than 25% larger than asked for.
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 4) {
        p = it->second;
        live_[p] = it->first;
        stats_.cached_bytes -= it->first;
        stats_.in_use_bytes += it->first;
        free_.erase(it);
        ++stats_.hits;
      }
    }
    if (!p) {
      p = std::aligned_alloc(kGranule, size);
      if (!p) {
        empty();  // give the cache back and try once more before failing
        p = std::aligned_alloc(kGranule, size);
        if (!p) throw std::bad_alloc();
      }
#ifdef MADV_HUGEPAGE
      ::madvise(p, size, MADV_HUGEPAGE);
#endif
      std::lock_guard<std::mutex> lock(mu_);
      live_[p] = size;
      stats_.in_use_bytes += size;
      ++stats_.misses;
    }
    return {p, p, &CachingCpuAllocator::release, c10::Device(c10::DeviceType::CPU)};
  }

#if CIFAR100_ALLOCATOR_NEEDS_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif

  // raw_allocate()/raw_deallocate() (used by oneDNN paths) need one deleter for every block, ours or not.
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::release; }

  void give_back(void* p) const {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) {  // a small block from the default allocator
      lock.unlock();
      fallback_->raw_deleter()(p);
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    stats_.in_use_bytes -= size;
    if (stats_.cached_bytes + size > max_cached_) {
      std::free(p);
      return;
    }
    free_.emplace(size, p);
    stats_.cached_bytes += size;
  }

  void empty() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  CpuCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  static void release(void* ctx);

 private:
  c10::Allocator* fallback_;
  size_t max_cached_;
  mutable std::mutex mu_;
  mutable std::multimap<size_t, void*> free_;
  mutable std::unordered_map<void*, size_t> live_;
  mutable CpuCacheStats stats_;
};

CachingCpuAllocator* g_allocator = nullptr;
std::once_flag g_once;

void CachingCpuAllocator::release(void* ctx) { g_allocator->give_back(ctx); }
}  // namespace

void install_caching_cpu_allocator(size_t max_cached_bytes) {
  std::call_once(g_once, [&] {
    // Never destroyed: tensors may outlive main's locals and are freed during static destruction.
    g_allocator = new CachingCpuAllocator(c10::GetDefaultCPUAllocator(), max_cached_bytes);
    c10::SetCPUAllocator(g_allocator, /*priority=*/100);
  });
}

bool caching_cpu_allocator_installed() { return g_allocator != nullptr; }

CpuCacheStats caching_cpu_allocator_stats() { return g_allocator ? g_allocator->stats() : CpuCacheStats{}; }

void empty_cpu_cache() {
  if (g_allocator) g_allocator->empty();
}

}  // namespace cifar::model
