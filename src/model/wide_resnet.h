// WideResNet-depth-width for 32x32 inputs (Zagoruyko & Komodakis 2016), pre-activation blocks with
// dropout between the two 3x3 convolutions and a 1x1 shortcut where the shape changes. Parameter names
// match tools/reference/wrn.py exactly (stem, layer1.0.bn1, ..., bn, fc), so state dicts move between
// C++ and PyTorch without renaming.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace cifar::model {

struct WrnConfig {
  int64_t depth = 28;
  int64_t width = 10;
  double dropout = 0.3;
  int64_t num_classes = 100;
  std::string name() const { return "WRN-" + std::to_string(depth) + "-" + std::to_string(width); }
};

// Every batch norm of the model runs through batch_norm(); distributed training may route it elsewhere
// (synchronised batch norm). Not thread-safe to change while a forward pass runs.
using BatchNormOverride = torch::Tensor (*)(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x);
void set_batch_norm_override(BatchNormOverride f);
torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x);

class WideBasicImpl : public torch::nn::Module {
 public:
  WideBasicImpl(int64_t in_planes, int64_t out_planes, int64_t stride, double dropout);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::Conv2d shortcut{nullptr};  // null when input and output shapes agree
};
TORCH_MODULE(WideBasic);

class WideResNetImpl : public torch::nn::Module {
 public:
  explicit WideResNetImpl(const WrnConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  const WrnConfig& config() const { return cfg_; }

  torch::nn::Conv2d stem{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  WrnConfig cfg_;
};
TORCH_MODULE(WideResNet);

// Kaiming-normal (fan_in, ReLU gain) for convolutions and the classifier, as in the WRN reference code;
// batch-norm weight 1 and bias 0; classifier bias 0. Uses the global torch generator.
void init_weights(WideResNetImpl& net);

int64_t count_parameters(const torch::nn::Module& m);
// Multiply-accumulates of one forward pass on a 32x32 image.
int64_t count_macs(const WrnConfig& cfg);

// Parameters and buffers in PyTorch state_dict order (module by module: parameters, buffers, children).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& m);

}  // namespace cifar::model
