// From stored image to model input: runs the augmentation pipeline on a copy of the uint8 image and
// normalises it with the data set's per-channel mean and std into float32, CHW or HWC (channels last).
#pragma once
#include <cstdint>

#include "common/rng.h"
#include "data/image_ops.h"
#include "data/transforms.h"

namespace cifar::data {

// Lookup table from byte value to normalised float, per channel: (v/255 - mean[c]) / std[c].
struct NormalizeLut {
  float v[3][256];
  NormalizeLut();
};
const NormalizeLut& normalize_lut();

// Writes the normalised image: HWC (channels_last) or CHW.
void normalize(const ops::Image& img, float* dst, bool channels_last);

// Copies `src` (CHW uint8), applies `pipeline` (may be null: no augmentation) with `rng`, normalises into
// `dst`, then applies the pipeline's float stage (random erasing).
void augment_normalize(const uint8_t* src, float* dst, bool channels_last, const Pipeline* pipeline, Rng& rng);

}  // namespace cifar::data
