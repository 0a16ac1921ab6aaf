// The inference engine behind eval, predict and serve: a WideResNet from an artifact with batch norm
// folded into the convolutions where the algebra allows it (every conv1 -> bn2 of a block, and the stem ->
// the first block's bn1 when that block has a projection shortcut), weights converted once to the chosen
// precision (bf16 or fp32) and memory format, no autograd. The remaining batch norms (those after a
// residual sum) run as one fused inference op each.
#pragma once
#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "model/artifact.h"

namespace cifar::model {

struct InferenceOptions {
  c10::Device device{c10::kCPU};
  bool bf16 = false;           // weights and activations in bfloat16 (the logits come back as float32)
  bool fold_batchnorm = true;  // false runs the module as trained (for tests and comparisons)
  bool channels_last = true;
};

class InferenceModel {
 public:
  InferenceModel(const Artifact& artifact, const InferenceOptions& opts);
  ~InferenceModel();
  InferenceModel(InferenceModel&&) noexcept;
  InferenceModel& operator=(InferenceModel&&) noexcept;

  // uint8 images N x 32 x 32 x 3 (HWC, RGB, on the CPU) -> float32 logits N x num_classes on the CPU.
  at::Tensor logits_u8(const at::Tensor& images_nhwc) const;
  // Float images N x 3 x 32 x 32, already normalised -> float32 logits N x num_classes on the CPU.
  at::Tensor logits(const at::Tensor& images_nchw) const;
  // uint8 NHWC -> normalised float NCHW on the engine's device, in its memory format.
  at::Tensor preprocess(const at::Tensor& images_nhwc) const;

  const ArtifactInfo& info() const;
  const InferenceOptions& options() const;
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cifar::model
