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

// The network's shape. arch "wrn" is a WideResNet-depth-width; arch "airbench" is the speedrun network of
// Keller Jordan's airbench (2024) for a small time budget: a frozen 2x2 patch-whitening convolution (24
// channels: the 12 whitening filters and their negatives), then three groups of conv3x3 -> max-pool 2 ->
// BN -> GELU -> conv3x3 -> BN -> GELU with `widths` channels, a 3x3 max-pool and a bias-free classifier
// scaled by 1/9. depth, width and dropout only apply to "wrn".
struct WrnConfig {
  int64_t depth = 28;
  int64_t width = 10;
  double dropout = 0.3;
  int64_t num_classes = 100;
  std::string arch = "wrn";
  std::vector<int64_t> widths = {64, 256, 256};
  bool airbench() const { return arch == "airbench"; }
  std::string name() const;
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

  // arch "airbench" (the WRN members above stay null, and these are null for "wrn"). The whitening
  // weight is a buffer (frozen; set from the training images by init_whitening), its bias is trained.
  torch::Tensor whiten_weight, whiten_bias;
  torch::nn::Sequential groups{nullptr};  // group{0,1,2}.{conv1,bn1,conv2,bn2}
  torch::nn::Linear head{nullptr};

 private:
  torch::Tensor forward_airbench(const torch::Tensor& x);
  WrnConfig cfg_;
};
TORCH_MODULE(WideResNet);

// Kaiming-normal (fan_in, ReLU gain) for convolutions and the classifier, as in the WRN reference code;
// batch-norm weight 1 and bias 0; classifier bias 0. Uses the global torch generator.
void init_weights(WideResNetImpl& net);
// airbench's initialisation (config conv_init: dirac): PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// for convolutions and the classifier, and each convolution's first min(in, out) filters set to the
// identity (torch.nn.init.dirac_), so that every block starts by passing its input through. BN and biases as
// init_weights. Uses the global torch generator.
void init_weights_dirac(WideResNetImpl& net);

// The airbench whitening filters from normalised NCHW images: the covariance C of all 2x2 patches (12
// values, channel-major like a conv weight), its eigen-decomposition C = V diag(l) V^T, and the filters
// V^T / sqrt(l + eps), followed by their negatives: [24, 3, 2, 2]. On those patches the first 12
// output channels then have (nearly) identity covariance.
torch::Tensor whitening_filters(const torch::Tensor& images, double eps = 5e-4);
// Sets net.whiten_weight from `images` (does nothing for "wrn").
void init_whitening(WideResNetImpl& net, const torch::Tensor& images);

int64_t count_parameters(const torch::nn::Module& m);
// Multiply-accumulates of one forward pass on a 32x32 image.
int64_t count_macs(const WrnConfig& cfg);

// Parameters and buffers in PyTorch state_dict order (module by module: parameters, buffers, children).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& m);

}  // namespace cifar::model
