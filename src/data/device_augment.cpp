#include "data/device_augment.h"

#include <torch/torch.h>

#include "common/error.h"
#include "data/augment.h"

namespace cifar::data {

bool device_augment_supported(const Pipeline& p, std::string* why) {
  for (const auto& t : p.transforms()) {
    const bool ok = t.name == "hflip" || t.name == "cutout" ||
                    (t.name == "random_crop" && t.str.count("padding_mode") && t.str.at("padding_mode") == "constant");
    if (!ok) {
      if (why) *why = t.name == "random_crop" ? "random_crop with padding_mode " + t.str.at("padding_mode") : t.name;
      return false;
    }
  }
  return true;
}

int64_t device_param_width(const Pipeline& p) {
  int64_t w = 0;
  for (const auto& t : p.transforms()) {
    if (t.name == "random_crop") w += 3;
    else if (t.name == "hflip") w += 1;
    else if (t.name == "cutout") w += 1 + 2 * static_cast<int64_t>(t.num.at("holes"));
  }
  return w;
}

void draw_device_params(const Pipeline& p, Rng& rng, int32_t* out) {
  // The draws of Pipeline::apply (transforms.cpp), in its order: hflip always draws its coin; the others
  // draw their application coin only when p < 1, then their parameters.
  for (const auto& t : p.transforms()) {
    if (t.name == "hflip") {
      *out++ = rng.uniform() < t.p ? 1 : 0;
      continue;
    }
    const bool applied = !(t.p < 1.0 && !(rng.uniform() < t.p));
    if (t.name == "random_crop") {
      const auto span = static_cast<uint64_t>(2 * static_cast<int>(t.num.at("padding")) + 1);
      *out++ = applied ? 1 : 0;
      *out++ = applied ? static_cast<int32_t>(rng.below(span)) : 0;
      *out++ = applied ? static_cast<int32_t>(rng.below(span)) : 0;
    } else if (t.name == "cutout") {
      const int holes = static_cast<int>(t.num.at("holes"));
      *out++ = applied ? 1 : 0;
      for (int h = 0; h < holes; ++h) {
        *out++ = applied ? static_cast<int32_t>(rng.below(kImageSize)) : 0;
        *out++ = applied ? static_cast<int32_t>(rng.below(kImageSize)) : 0;
      }
    } else {
      fail("draw_device_params: transform '{}' does not run on the device", t.name);
    }
  }
}

DeviceAugmenter::DeviceAugmenter(const Split& split, const Pipeline& p, c10::Device device, bool channels_last)
    : pipeline_(p), device_(device), channels_last_(channels_last) {
  std::string why;
  if (!device_augment_supported(p, &why)) fail("augmentation on the device does not implement '{}'", why);
  at::Tensor host = torch::from_blob(const_cast<uint8_t*>(split.pixels.data()),
                                     {split.size(), kChannels, kImageSize, kImageSize}, torch::kUInt8);
  images_ = host.to(device, /*non_blocking=*/false, /*copy=*/true);
  const NormalizeLut& lut = normalize_lut();
  lut_ = torch::from_blob(const_cast<float*>(&lut.v[0][0]), {3 * 256}, torch::kFloat32).to(device, false, true);
}

at::Tensor DeviceAugmenter::operator()(const at::Tensor& indices, const at::Tensor& params) const {
  torch::NoGradGuard no_grad;
  const auto dev = torch::TensorOptions().device(device_);
  const at::Tensor idx = indices.to(device_, torch::kInt64);
  const at::Tensor prm = params.to(device_, torch::kInt64);
  at::Tensor x = images_.index_select(0, idx);  // uint8 [B, 3, 32, 32]
  const int64_t b = x.size(0);
  const at::Tensor ar = torch::arange(kImageSize, dev.dtype(torch::kInt64));
  const at::Tensor yy = ar.view({1, kImageSize, 1}), xx = ar.view({1, 1, kImageSize});
  int64_t col = 0;
  auto per_image = [&](const at::Tensor& v) { return v.view({b, 1, 1, 1}); };
  for (const auto& t : pipeline_.transforms()) {
    if (t.name == "hflip") {
      x = torch::where(per_image(prm.select(1, col)).ne(0), x.flip({3}), x);
      col += 1;
    } else if (t.name == "random_crop") {
      const int64_t pad = static_cast<int64_t>(t.num.at("padding"));
      const at::Tensor padded = torch::constant_pad_nd(x, {pad, pad, pad, pad}, t.num.at("fill"));
      const at::Tensor rows = prm.select(1, col + 1).view({b, 1, 1, 1}) + ar.view({1, 1, kImageSize, 1});
      const at::Tensor cols = prm.select(1, col + 2).view({b, 1, 1, 1}) + ar.view({1, 1, 1, kImageSize});
      const at::Tensor bi = torch::arange(b, dev.dtype(torch::kInt64)).view({b, 1, 1, 1});
      const at::Tensor ci = torch::arange(kChannels, dev.dtype(torch::kInt64)).view({1, kChannels, 1, 1});
      const at::Tensor cropped = padded.index({bi, ci, rows, cols});
      x = torch::where(per_image(prm.select(1, col)).ne(0), cropped, x);
      col += 3;
    } else if (t.name == "cutout") {
      const int64_t size = static_cast<int64_t>(t.num.at("size")), holes = static_cast<int64_t>(t.num.at("holes"));
      const at::Tensor applied = prm.select(1, col).ne(0).view({b, 1, 1});
      for (int64_t h = 0; h < holes; ++h) {
        const at::Tensor top = (prm.select(1, col + 1 + 2 * h) - size / 2).view({b, 1, 1});
        const at::Tensor left = (prm.select(1, col + 2 + 2 * h) - size / 2).view({b, 1, 1});
        const at::Tensor mask = yy.ge(top) & yy.lt(top + size) & xx.ge(left) & xx.lt(left + size) & applied;
        x = x.masked_fill(mask.unsqueeze(1), static_cast<int64_t>(t.num.at("fill")));
      }
      col += 1 + 2 * holes;
    }
  }
  // Normalisation through the CPU path's lookup table: value v of channel c reads lut[c * 256 + v].
  const at::Tensor channel = torch::arange(kChannels, dev.dtype(torch::kInt64)).view({1, kChannels, 1, 1}) * 256;
  at::Tensor out = lut_.take(x.to(torch::kInt64) + channel);
  return channels_last_ ? out.contiguous(at::MemoryFormat::ChannelsLast) : out;
}

}  // namespace cifar::data
