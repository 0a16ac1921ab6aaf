#include "data/augment.h"

#include "data/cifar.h"

namespace cifar::data {

CropFlip draw_crop_flip(const AugmentParams& p, Rng& rng) {
  CropFlip cf;
  const int pad = p.crop_padding;
  if (pad > 0) {
    cf.top = static_cast<int>(rng.below(static_cast<uint64_t>(2 * pad + 1)));
    cf.left = static_cast<int>(rng.below(static_cast<uint64_t>(2 * pad + 1)));
  }
  cf.flip = p.hflip && rng.bernoulli(0.5);
  return cf;
}

NormalizeLut::NormalizeLut() {
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 256; ++x) v[c][x] = (static_cast<float>(x) / 255.0f - kMean[c]) / kStd[c];
}

const NormalizeLut& normalize_lut() {
  static const NormalizeLut lut;
  return lut;
}

namespace {
constexpr int S = kImageSize;

// Source column for output column x, or -1 when it falls into the zero padding.
template <typename Fn>
inline void for_each_pixel(int pad, const CropFlip& cf, Fn&& fn) {
  for (int y = 0; y < S; ++y) {
    const int sy = y + cf.top - pad;
    for (int x = 0; x < S; ++x) {
      const int cx = cf.flip ? (S - 1 - x) : x;  // flip is applied after the crop
      const int sx = cx + cf.left - pad;
      const bool inside = sy >= 0 && sy < S && sx >= 0 && sx < S;
      fn(y, x, inside ? sy * S + sx : -1);
    }
  }
}
}  // namespace

void apply_crop_flip(const uint8_t* src, uint8_t* dst, int pad, const CropFlip& cf) {
  for_each_pixel(pad, cf, [&](int y, int x, int s) {
    for (int c = 0; c < 3; ++c) dst[c * S * S + y * S + x] = s < 0 ? 0 : src[c * S * S + s];
  });
}

void apply_crop_flip_normalize(const uint8_t* src, float* dst, int pad, const CropFlip& cf, bool channels_last) {
  const auto& lut = normalize_lut();
  if (channels_last) {
    for_each_pixel(pad, cf, [&](int y, int x, int s) {
      float* o = dst + (y * S + x) * 3;
      for (int c = 0; c < 3; ++c) o[c] = lut.v[c][s < 0 ? 0 : src[c * S * S + s]];
    });
  } else {
    for_each_pixel(pad, cf, [&](int y, int x, int s) {
      for (int c = 0; c < 3; ++c) dst[c * S * S + y * S + x] = lut.v[c][s < 0 ? 0 : src[c * S * S + s]];
    });
  }
}

}  // namespace cifar::data
