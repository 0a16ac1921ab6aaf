// Augmentation pipelines: an ordered list of transforms with parameters, configured as text
// ("random_crop(padding=4); hflip; trivial_augment_wide; cutout(size=16)") or as a YAML list, like a
// torchvision Compose. Every random choice comes from the per-sample Rng, which the loader keys by
// (seed, epoch, image index). Image transforms work on uint8 images (image_ops.h); random_erasing works on
// the normalised float image and must come last.
//
// Transforms (parameters with defaults; `p` = probability of applying, as RandomApply):
//   random_crop(padding=4, padding_mode=constant|reflect|edge|symmetric, fill=0, p=1)
//   hflip(p=0.5)
//   rotate(degrees=15, interpolation=bilinear|nearest, fill=0, p=1)       angle ~ U(-degrees, degrees)
//   affine(degrees=0, translate=0, scale_min=1, scale_max=1, shear=0, interpolation=bilinear, fill=0, p=1)
//   cutout(holes=1, size=16, fill=0, p=1)                                  DeVries & Taylor: centre uniform
//   color_jitter(brightness=0, contrast=0, saturation=0, hue=0, p=1)     torchvision ColorJitter
//   auto_augment(policy=cifar10, p=1)                                      torchvision AutoAugment
//   rand_augment(n=2, m=9, bins=31, p=1)                                   torchvision RandAugment
//   trivial_augment_wide(bins=31, p=1)                                     torchvision TrivialAugmentWide
//   random_erasing(p=0.5, scale_min=0.02, scale_max=0.33, ratio_min=0.3, ratio_max=3.3, value=0|random)
// Presets (expand in place): none, standard (random_crop; hflip), seed (the module we replace: crop, flip,
// rotation, colour jitter, cutout), autoaugment, randaugment, trivialaugment (crop, flip, the policy,
// cutout 16).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/rng.h"
#include "data/image_ops.h"

namespace cifar::data {

struct Transform {
  std::string name;
  std::map<std::string, double> num;       // numeric parameters
  std::map<std::string, std::string> str;  // enumerated parameters
  double p = 1.0;
};

class Pipeline {
 public:
  Pipeline() = default;
  // Parses and validates; throws ConfigError naming `key` (the config key), the transform and parameter.
  static Pipeline parse(const std::string& spec, const std::string& key = "augment");
  const std::vector<Transform>& transforms() const { return steps_; }
  // Canonical text (presets expanded, every parameter written out).
  std::string to_string() const;
  bool empty() const { return steps_.empty(); }
  bool has_float_stage() const { return float_begin_ < steps_.size(); }

  // Applies the uint8 transforms in order, drawing from `rng`.
  void apply(ops::Image& img, Rng& rng) const;
  // Applies the float transforms (random_erasing) to a normalised image; `hwc` says whether the buffer is
  // HWC (channels last) or CHW.
  void apply_float(float* img, bool hwc, Rng& rng) const;

 private:
  std::vector<Transform> steps_;
  size_t float_begin_ = 0;  // index of the first float transform
};

// The text a preset expands to ("" if `name` is not a preset).
std::string preset_spec(const std::string& name);

// The magnitude tables of the policies' operations (for tests against torchvision's _augmentation_space):
// space = "auto_augment", "rand_augment" or "trivial_augment_wide"; one entry per operation, in
// torchvision's order, with its `bins` magnitudes (empty for operations without one) and whether it is signed.
struct OpMagnitudes {
  std::string op;
  std::vector<float> values;
  bool is_signed;
};
std::vector<OpMagnitudes> augmentation_space(const std::string& space, int bins);
// AutoAugment's CIFAR-10 policy: 25 sub-policies of two (operation, probability, magnitude bin or -1).
struct PolicyStep {
  std::string op;
  float p;
  int bin;
};
std::vector<std::vector<PolicyStep>> auto_augment_cifar10_policy();

}  // namespace cifar::data
