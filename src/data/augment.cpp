#include "data/augment.h"

#include <cstring>

#include "data/cifar.h"

namespace cifar::data {

NormalizeLut::NormalizeLut() {
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 256; ++x) v[c][x] = (static_cast<float>(x) / 255.0f - kMean[c]) / kStd[c];
}

const NormalizeLut& normalize_lut() {
  static const NormalizeLut lut;
  return lut;
}

void normalize(const ops::Image& img, float* dst, bool channels_last) {
  constexpr int S = ops::S;
  const auto& lut = normalize_lut();
  if (channels_last) {
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        float* o = dst + (y * S + x) * 3;
        o[0] = lut.v[0][img.p[0][y][x]];
        o[1] = lut.v[1][img.p[1][y][x]];
        o[2] = lut.v[2][img.p[2][y][x]];
      }
  } else {
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) dst[(c * S + y) * S + x] = lut.v[c][img.p[c][y][x]];
  }
}

void augment_normalize(const uint8_t* src, float* dst, bool channels_last, const Pipeline* pipeline, Rng& rng) {
  ops::Image img;
  static_assert(sizeof(ops::Image) == kPixels, "image layout");
  std::memcpy(&img, src, sizeof img);
  if (pipeline) pipeline->apply(img, rng);
  normalize(img, dst, channels_last);
  if (pipeline && pipeline->has_float_stage()) pipeline->apply_float(dst, channels_last, rng);
}

}  // namespace cifar::data
