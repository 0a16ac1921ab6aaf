// Counter-based random numbers: every random decision is a pure function of (seed, stream, ...),
// so shuffling and augmentation are reproducible whatever the number of threads or a resume point.
#pragma once
#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace cifar {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Hash a tuple of integers into one 64-bit key.
inline uint64_t mix_keys(std::initializer_list<uint64_t> keys) {
  uint64_t h = 0x6A09E667F3BCC909ull;
  for (uint64_t k : keys) h = splitmix64(h ^ splitmix64(k));
  return h;
}

// Named streams so that different uses of the same seed never share random numbers.
enum class Stream : uint64_t { Shuffle = 1, Augment = 2, Split = 3, MixUp = 4, Init = 5, Dropout = 6, Test = 99 };

// Small fast generator (xoshiro256**), seeded from a key.
class Rng {
 public:
  explicit Rng(uint64_t key) {
    for (auto& s : s_) s = key = splitmix64(key);
  }
  Rng(uint64_t seed, Stream stream, std::initializer_list<uint64_t> more = {}) : Rng(0) {
    uint64_t k = mix_keys({seed, static_cast<uint64_t>(stream)});
    for (uint64_t m : more) k = mix_keys({k, m});
    *this = Rng(k);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform integer in [0, n) without modulo bias (Lemire's method).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t l = static_cast<uint64_t>(m);
    if (l < n) {
      const uint64_t t = (0 - n) % n;
      while (l < t) {
        m = static_cast<unsigned __int128>(next()) * n;
        l = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  // Uniform double in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double normal() {
    // Box-Muller; one value per call keeps the generator state simple to reason about.
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Gamma(shape, 1) by Marsaglia and Tsang; used for Beta sampling in MixUp.
  double gamma(double shape) {
    if (shape < 1.0) {
      double u = uniform();
      return gamma(shape + 1.0) * std::pow(u < 1e-300 ? 1e-300 : u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x / (x + y);
  }
  template <typename It>
  void shuffle(It first, It last) {
    const auto n = last - first;
    for (auto i = n - 1; i > 0; --i) {
      auto j = static_cast<decltype(i)>(below(static_cast<uint64_t>(i) + 1));
      std::swap(first[i], first[j]);
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace cifar
