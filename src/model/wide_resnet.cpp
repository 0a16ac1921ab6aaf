#include "model/wide_resnet.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace cifar::model {

namespace nn = torch::nn;

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}
}  // namespace

namespace {
BatchNormOverride g_norm_override = nullptr;
}

std::string WrnConfig::name() const {
  if (airbench())
    return "airbench-" + std::to_string(widths.at(0)) + "-" + std::to_string(widths.at(1)) + "-" +
           std::to_string(widths.at(2));
  return "WRN-" + std::to_string(depth) + "-" + std::to_string(width);
}

namespace {
// One airbench group: conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU.
class AirGroupImpl : public torch::nn::Module {
 public:
  AirGroupImpl(int64_t in, int64_t out) {
    auto norm = [](int64_t c) { return nn::BatchNorm2d(nn::BatchNorm2dOptions(c).momentum(0.4)); };
    conv1 = register_module("conv1", conv(in, out, 3, 1));
    bn1 = register_module("bn1", norm(out));
    conv2 = register_module("conv2", conv(out, out, 3, 1));
    bn2 = register_module("bn2", norm(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::max_pool2d(conv1->forward(x), {2, 2});
    y = torch::gelu(batch_norm(*bn1, y));
    return torch::gelu(batch_norm(*bn2, conv2->forward(y)));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(AirGroup);
}  // namespace

void set_batch_norm_override(BatchNormOverride f) { g_norm_override = f; }

torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x) {
  return g_norm_override ? g_norm_override(bn, x) : bn.forward(x);
}

WideBasicImpl::WideBasicImpl(int64_t in_planes, int64_t out_planes, int64_t stride, double p) {
  bn1 = register_module("bn1", nn::BatchNorm2d(in_planes));
  conv1 = register_module("conv1", conv(in_planes, out_planes, 3, stride));
  bn2 = register_module("bn2", nn::BatchNorm2d(out_planes));
  dropout = register_module("dropout", nn::Dropout(p));
  conv2 = register_module("conv2", conv(out_planes, out_planes, 3, 1));
  if (in_planes != out_planes || stride != 1) shortcut = register_module("shortcut", conv(in_planes, out_planes, 1, stride));
}

// In-place ReLU after batch norm and in-place residual add: batch-norm backward needs its input, not its
// output, and convolution backward needs neither output, so autograd allows both and every step saves
// three activation-sized allocations and memory passes per block.
torch::Tensor WideBasicImpl::forward(const torch::Tensor& x) {
  torch::Tensor o = batch_norm(*bn1, x).relu_();
  torch::Tensor y = conv1->forward(o);
  y = batch_norm(*bn2, y).relu_();
  y = conv2->forward(dropout->forward(y));
  return y.add_(shortcut ? shortcut->forward(o) : x);
}

WideResNetImpl::WideResNetImpl(const WrnConfig& cfg) : cfg_(cfg) {
  if (cfg.airbench()) {
    if (cfg.widths.size() != 3) fail("airbench needs three widths, got {}", cfg.widths.size());
    whiten_weight = register_buffer("whiten_weight", torch::zeros({24, 3, 2, 2}));
    whiten_bias = register_parameter("whiten_bias", torch::zeros({24}));
    groups = register_module("groups", nn::Sequential(AirGroup(24, cfg.widths[0]), AirGroup(cfg.widths[0], cfg.widths[1]),
                                                      AirGroup(cfg.widths[1], cfg.widths[2])));
    head = register_module("head", nn::Linear(nn::LinearOptions(cfg.widths[2], cfg.num_classes).bias(false)));
    init_weights(*this);
    return;
  }
  if (cfg.arch != "wrn") fail("unknown architecture '{}' (wrn or airbench)", cfg.arch);
  if (cfg.depth < 10 || (cfg.depth - 4) % 6 != 0)
    fail("WideResNet depth {} is not 6n+4 (10, 16, 22, 28, 34, 40, ...)", cfg.depth);
  if (cfg.width < 1) fail("WideResNet width must be at least 1, got {}", cfg.width);
  const int64_t n = (cfg.depth - 4) / 6;
  const int64_t widths[4] = {16, 16 * cfg.width, 32 * cfg.width, 64 * cfg.width};
  stem = register_module("stem", conv(3, widths[0], 3, 1));
  nn::Sequential* layers[3] = {&layer1, &layer2, &layer3};
  int64_t in = widths[0];
  for (int g = 0; g < 3; ++g) {
    nn::Sequential seq;
    for (int64_t b = 0; b < n; ++b) {
      const int64_t stride = (b == 0 && g > 0) ? 2 : 1;
      seq->push_back(WideBasic(in, widths[g + 1], stride, cfg.dropout));
      in = widths[g + 1];
    }
    *layers[g] = register_module("layer" + std::to_string(g + 1), seq);
  }
  bn = register_module("bn", nn::BatchNorm2d(in));
  fc = register_module("fc", nn::Linear(in, cfg.num_classes));
  init_weights(*this);
}

torch::Tensor WideResNetImpl::forward_airbench(const torch::Tensor& x) {
  torch::Tensor y = torch::gelu(torch::conv2d(x, whiten_weight, whiten_bias));
  y = torch::max_pool2d(groups->forward(y), {3, 3});
  return head->forward(y.flatten(1)).mul(1.0 / 9.0);
}

torch::Tensor WideResNetImpl::forward(const torch::Tensor& x) {
  if (cfg_.airbench()) return forward_airbench(x);
  torch::Tensor y = stem->forward(x);
  y = layer3->forward(layer2->forward(layer1->forward(y)));
  y = batch_norm(*bn, y).relu_();
  y = torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
  return fc->forward(y);
}

void init_weights(WideResNetImpl& net) {
  torch::NoGradGuard no_grad;
  for (auto& m : net.modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanIn, torch::kReLU);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    } else if (auto* l = m->as<nn::Linear>()) {
      nn::init::kaiming_normal_(l->weight, 0.0, torch::kFanIn, torch::kReLU);
      if (l->bias.defined()) nn::init::zeros_(l->bias);
    }
  }
}

void init_weights_dirac(WideResNetImpl& net) {
  init_weights(net);  // BN and biases
  torch::NoGradGuard no_grad;
  auto default_uniform = [](torch::Tensor& w) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(w[0].numel()));
    nn::init::uniform_(w, -bound, bound);
  };
  for (auto& m : net.modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      default_uniform(c->weight);
      nn::init::dirac_(c->weight.narrow(0, 0, std::min(c->weight.size(0), c->weight.size(1))));
    } else if (auto* l = m->as<nn::Linear>()) {
      default_uniform(l->weight);
    }
  }
}

torch::Tensor whitening_filters(const torch::Tensor& images, double eps) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "whitening_filters: expected N x 3 x H x W images");
  torch::NoGradGuard no_grad;
  const torch::Tensor x = images.to(torch::kFloat64).contiguous();
  // [N, 3, H-1, W-1, 2, 2] -> one row per patch, channel-major (c, i, j) like a conv weight.
  const torch::Tensor patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute({0, 2, 3, 1, 4, 5}).reshape({-1, 12});
  const torch::Tensor cov = patches.t().mm(patches) / static_cast<double>(patches.size(0));
  const auto [evals, evecs] = torch::linalg_eigh(cov);
  const torch::Tensor w = (evecs.t() / (evals + eps).sqrt().unsqueeze(1)).reshape({12, 3, 2, 2});
  return torch::cat({w, -w}).to(torch::kFloat32);
}

void init_whitening(WideResNetImpl& net, const torch::Tensor& images) {
  if (!net.config().airbench()) return;
  torch::NoGradGuard no_grad;
  net.whiten_weight.copy_(whitening_filters(images));
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t count_macs(const WrnConfig& cfg) {
  if (cfg.airbench()) {
    int64_t macs = 24 * 12 * 31 * 31, in = 24, res = 31;
    for (int64_t out : cfg.widths) {
      macs += in * out * 9 * res * res + out * out * 9 * (res / 2) * (res / 2);
      in = out;
      res /= 2;
    }
    return macs + in * cfg.num_classes;
  }
  const int64_t n = (cfg.depth - 4) / 6;
  const int64_t w[4] = {16, 16 * cfg.width, 32 * cfg.width, 64 * cfg.width};
  const int64_t hw[3] = {32 * 32, 16 * 16, 8 * 8};
  int64_t macs = 3 * 16 * 9 * hw[0];
  int64_t in = w[0];
  for (int g = 0; g < 3; ++g) {
    for (int64_t b = 0; b < n; ++b) {
      const int64_t out = w[g + 1];
      macs += in * out * 9 * hw[g] + out * out * 9 * hw[g];
      if (in != out || (b == 0 && g > 0)) macs += in * out * hw[g];
      in = out;
    }
  }
  return macs + in * cfg.num_classes;
}

namespace {
void collect(const torch::nn::Module& m, const std::string& prefix,
             std::vector<std::pair<std::string, torch::Tensor>>& out) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collect(*c.value(), prefix + c.key() + ".", out);
}
}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  collect(m, "", out);
  return out;
}

}  // namespace cifar::model
