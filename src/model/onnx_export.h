// ONNX export of a WideResNet (written with our own protobuf writer; no ONNX library needed):
//   input  "image"  [batch, 3, H, W], batch dynamic; float32 already normalised ((pixel/255 - mean)/std), or
//                   uint8 RGB pixels 0..255 with the normalisation inside the graph
//   output "logits" [batch, num_classes] float32
// IR version 7, opset 13, ops Cast, Mul, Add, Conv, Relu, GlobalAveragePool, Flatten, Gemm. Every batch norm is
// folded: the one right after a convolution into that convolution's weight and bias, the pre-activation ones
// into a per-channel scale and shift (Mul, Add). The preprocessing (mean, std), the class names and the
// architecture go into the model's metadata properties.
#pragma once
#include <string>

#include "model/artifact.h"

namespace cifar::model {

struct OnnxOptions {
  bool uint8_input = false;
};

// The serialised ModelProto.
std::string onnx_model(const WideResNetImpl& net, const ArtifactInfo& info, const OnnxOptions& opt);
// Writes it to `path` atomically (a temporary file renamed into place).
void write_onnx(const std::string& path, const WideResNetImpl& net, const ArtifactInfo& info, const OnnxOptions& opt);

}  // namespace cifar::model
