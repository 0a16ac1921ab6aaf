// Augmentation as batched tensor operations on the training device (GPU or CPU): the data set stays
// resident there as uint8, and random crop (constant padding), horizontal flip and cutout run over the
// whole batch, then normalisation by the same lookup table as the CPU path. The per-image random draws
// are made on the host by the loader with the same keyed Rng and in the same order as Pipeline::apply, so
// a batch is pixel-for-pixel and bit-for-bit the CPU loader's (tests/unit/test_train_extras.cpp, and a
// whole run's weights in tests/integration/test_ema_sam.py). Other transforms (rotation, colour, the
// policies, random erasing) are not implemented here: such pipelines stay on the CPU loader.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "common/rng.h"
#include "data/cifar.h"
#include "data/transforms.h"

namespace cifar::data {

// Whether every transform of `p` runs on the device; otherwise `why` names the first that does not.
bool device_augment_supported(const Pipeline& p, std::string* why = nullptr);
// Columns of the per-image parameter rows that draw_device_params() writes.
int64_t device_param_width(const Pipeline& p);
// Draws one image's parameters, consuming `rng` exactly as Pipeline::apply would, into `out`
// (device_param_width() values): crop [applied, top, left], flip [flip], cutout [applied, cy, cx per hole].
void draw_device_params(const Pipeline& p, Rng& rng, int32_t* out);

class DeviceAugmenter {
 public:
  // Copies `split`'s images to `device` once (uint8, about 150 MB for the training split).
  DeviceAugmenter(const Split& split, const Pipeline& p, c10::Device device, bool channels_last);
  // The normalised float32 batch [B, 3, 32, 32] (channels-last strides when asked) for the images
  // `indices` (int64 [B], indices into the split) with parameter rows `params` (int32 [B, width]).
  at::Tensor operator()(const at::Tensor& indices, const at::Tensor& params) const;

 private:
  Pipeline pipeline_;
  c10::Device device_;
  bool channels_last_;
  at::Tensor images_;  // uint8 [N, 3, 32, 32] on the device
  at::Tensor lut_;     // float32 [3 * 256]: NormalizeLut, flattened
};

}  // namespace cifar::data
