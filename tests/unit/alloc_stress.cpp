// Stress test of the caching CPU allocator (src/model/cpu_allocator.cpp), built with AddressSanitizer in CI
// (target alloc_stress_asan). Threads allocate and free blocks of sizes on both sides of the 1 MiB cut,
// through DataPtrs, raw_allocate/raw_deallocate and real ATen tensors, and free many of them on another
// thread than the one that allocated them, as the checkpoint writer does. Every block is filled with its
// owner's pattern and checked before it is freed, so two live blocks that share memory are caught even
// where ASan alone would not see it; ASan catches use after free, double frees and overflows. At the end
// the allocator's books must balance. Exits non-zero on any failure.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "model/cpu_allocator.h"

namespace {
std::atomic<int> g_failures{0};

void check(bool ok, const char* what, size_t detail = 0) {
  if (ok) return;
  if (g_failures.fetch_add(1) < 20) std::fprintf(stderr, "FAIL: %s (%zu)\n", what, detail);
}

// A block with its owner's pattern in the first, middle and last bytes.
struct Block {
  c10::DataPtr ptr;  // empty for raw blocks
  void* raw = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
  void* data() const { return raw ? raw : ptr.get(); }
};

void stamp(const Block& b) {
  auto* p = static_cast<unsigned char*>(b.data());
  for (size_t off : {size_t{0}, b.size / 2, b.size - sizeof(uint64_t)}) std::memcpy(p + off, &b.tag, sizeof(uint64_t));
  // Touch the whole block so an undersized block is an ASan heap overflow.
  std::memset(p + sizeof(uint64_t), static_cast<int>(b.tag & 0xff), b.size / 2 - sizeof(uint64_t));
}

bool intact(const Block& b) {
  const auto* p = static_cast<const unsigned char*>(b.data());
  for (size_t off : {size_t{0}, b.size / 2, b.size - sizeof(uint64_t)}) {
    uint64_t v;
    std::memcpy(&v, p + off, sizeof(uint64_t));
    if (v != b.tag) return false;
  }
  return true;
}

// Sizes log-uniform from 64 B to 8 MiB, many right around the 1 MiB cut and the 2 MiB granule.
size_t draw_size(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> kind(0, 9);
  const int k = kind(rng);
  if (k < 3) {
    const size_t edges[] = {size_t{1} << 20, size_t{2} << 20, size_t{4} << 20};
    std::uniform_int_distribution<int> e(0, 2), d(-64, 64);
    return edges[e(rng)] + static_cast<size_t>(static_cast<long>(d(rng)) * 8);
  }
  std::uniform_real_distribution<double> lg(6.0, 23.0);
  return std::max<size_t>(16, static_cast<size_t>(std::exp2(lg(rng))));
}

// Blocks handed to another thread to free (the checkpoint writer's pattern).
std::mutex g_handoff_mu;
std::deque<Block> g_handoff;

void worker(int id, int iterations, std::atomic<int>& done) {
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(id));
  c10::Allocator* alloc = c10::GetCPUAllocator();
  std::vector<Block> live;
  std::vector<at::Tensor> tensors;
  uint64_t seq = 0;
  auto release = [&](Block& b) {
    check(intact(b), "a live block was overwritten (two blocks share memory)", b.size);
    if (b.raw) alloc->raw_deallocate(b.raw);
    else b.ptr.clear();
  };
  for (int it = 0; it < iterations; ++it) {
    std::uniform_int_distribution<int> op(0, 9);
    const int o = op(rng);
    if (o < 5 || live.empty()) {
      Block b;
      b.size = draw_size(rng);
      b.tag = (static_cast<uint64_t>(id) << 48) | ++seq;
      if (o == 0) b.raw = alloc->raw_allocate(b.size);
      else b.ptr = alloc->allocate(b.size);
      check(b.data() != nullptr, "allocation returned null", b.size);
      stamp(b);
      live.push_back(std::move(b));
    } else if (o < 7) {
      std::uniform_int_distribution<size_t> pick(0, live.size() - 1);
      const size_t i = pick(rng);
      release(live[i]);
      live[i] = std::move(live.back());
      live.pop_back();
    } else if (o == 7) {  // hand a block to another thread
      std::lock_guard<std::mutex> lock(g_handoff_mu);
      g_handoff.push_back(std::move(live.back()));
      live.pop_back();
    } else if (o == 8) {  // free a block another thread allocated
      Block b;
      {
        std::lock_guard<std::mutex> lock(g_handoff_mu);
        if (g_handoff.empty()) continue;
        b = std::move(g_handoff.front());
        g_handoff.pop_front();
      }
      release(b);
    } else {  // real tensors: allocated here, some cloned, freed later possibly elsewhere
      std::uniform_int_distribution<int64_t> n(1, 1 << 19);
      at::Tensor t = at::full({n(rng)}, static_cast<float>(id), at::kFloat);
      at::Tensor c = t.clone();
      check(c.eq(static_cast<float>(id)).all().item<bool>(), "a cloned tensor lost its values", c.numel());
      tensors.push_back(c);
      if (tensors.size() > 8) tensors.erase(tensors.begin());
    }
    if (it % 5000 == 0 && id == 0) cifar::model::empty_cpu_cache();  // racing the others' frees
  }
  for (auto& t : tensors) check(t.eq(static_cast<float>(id)).all().item<bool>(), "a tensor was overwritten", t.numel());
  for (auto& b : live) release(b);
  done.fetch_add(1);
}
}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 4;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20000;
  at::set_num_threads(1);
  cifar::model::install_caching_cpu_allocator(size_t{96} << 20);  // small, so the cache also overflows
  check(cifar::model::caching_cpu_allocator_installed(), "allocator not installed");
  check(c10::GetCPUAllocator() != c10::GetDefaultCPUAllocator(), "the caching allocator is not the CPU allocator");

  std::atomic<int> done{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker, i, iterations, std::ref(done));
  for (auto& t : pool) t.join();
  // What was handed off and never picked up is freed here, on yet another thread.
  std::thread([] {
    std::lock_guard<std::mutex> lock(g_handoff_mu);
    c10::Allocator* alloc = c10::GetCPUAllocator();
    for (auto& b : g_handoff) {
      check(intact(b), "a handed-off block was overwritten", b.size);
      if (b.raw) alloc->raw_deallocate(b.raw);
      else b.ptr.clear();
    }
    g_handoff.clear();
  }).join();

  const auto st = cifar::model::caching_cpu_allocator_stats();
  check(done.load() == threads, "a worker did not finish");
  check(st.in_use_bytes == 0, "large blocks still counted in use after every block was freed", st.in_use_bytes);
  check(st.cached_bytes <= (size_t{96} << 20), "the free cache exceeds its bound", st.cached_bytes);
  check(st.hits > 0 && st.misses > 0, "the cache was never hit or never missed", st.hits);
  cifar::model::empty_cpu_cache();
  check(cifar::model::caching_cpu_allocator_stats().cached_bytes == 0, "empty_cpu_cache left blocks cached");
  std::printf("alloc_stress: %d threads x %d operations, cache hits %zu, misses %zu, failures %d\n", threads, iterations,
              st.hits, st.misses, g_failures.load());
  return g_failures.load() == 0 ? 0 : 1;
}
