// Per-image transforms on uint8 CHW images, fused with normalisation into float output:
// random crop after zero padding (torchvision RandomCrop(32, padding=p)) and horizontal flip
// (RandomHorizontalFlip(0.5)). Randomness comes from a per-sample Rng keyed by (seed, epoch, index).
#pragma once
#include <cstdint>

#include "common/rng.h"

namespace cifar::data {

struct AugmentParams {
  int crop_padding = 4;  // 0 = no crop
  bool hflip = true;
};

// The concrete choice made for one image: offsets into the padded image and whether to flip.
struct CropFlip {
  int top = 0, left = 0;  // in [0, 2*pad]; pad,pad = identity
  bool flip = false;
};

// Draws the parameters in torchvision's order: crop offsets (top, then left), then the flip coin.
CropFlip draw_crop_flip(const AugmentParams& p, Rng& rng);

// Lookup table from byte value to normalised float, per channel: (v/255 - mean[c]) / std[c].
struct NormalizeLut {
  float v[3][256];
  NormalizeLut();
};
const NormalizeLut& normalize_lut();

// Applies crop+flip to `src` (CHW uint8) and writes the result to `dst` (CHW uint8).
void apply_crop_flip(const uint8_t* src, uint8_t* dst, int pad, const CropFlip& cf);

// Applies crop+flip and normalisation, writing floats either HWC (channels_last) or CHW.
void apply_crop_flip_normalize(const uint8_t* src, float* dst, int pad, const CropFlip& cf, bool channels_last);

}  // namespace cifar::data
