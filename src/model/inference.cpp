#include "model/inference.h"

#include <torch/torch.h>

#include <optional>

#include <fmt/ranges.h>

#include "common/error.h"
#include "model/torch_compat.h"

namespace cifar::model {

namespace {

struct Conv {
  at::Tensor w, b;  // b undefined = no bias
  int64_t stride = 1, pad = 0;
  at::Tensor operator()(const at::Tensor& x) const {
    // fp32 on the CPU: straight to oneDNN. at::conv2d would send small inputs (batch 1, <= 20480 values: the
    // last stage of a WRN) to the unblocked native kernel, 10-20x slower there (LibTorch's heuristic).
    if (x.is_cpu() && x.scalar_type() == at::kFloat)
      return at::mkldnn_convolution(x, w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt, {pad, pad},
                                    {stride, stride}, {1, 1}, 1);
    return at::conv2d(x, w, b, {stride, stride}, {pad, pad});
  }
};

struct Norm {  // eval-mode batch norm, as one fused op
  at::Tensor weight, bias, mean, var;
  double eps = 1e-5;
  at::Tensor operator()(const at::Tensor& x) const {
    return at::batch_norm(x, weight, bias, mean, var, /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true);
  }
};

struct Block {
  std::optional<Norm> bn1;  // empty: folded into the producer of the block's input
  Conv conv1, conv2;
  std::optional<Norm> bn2;  // empty: folded into conv1
  std::optional<Conv> shortcut;
};

Norm norm_of(const torch::nn::BatchNorm2d& bn) {
  return {bn->weight.detach(), bn->bias.detach(), bn->running_mean.detach(), bn->running_var.detach(),
          bn->options.eps()};
}

Conv conv_of(const torch::nn::Conv2d& c) {
  Conv out;
  out.w = c->weight.detach();
  if (c->bias.defined()) out.b = c->bias.detach();
  out.stride = c->options.stride()->at(0);
  out.pad = c->weight.size(-1) / 2;  // every convolution of the model is 'same'-padded (k / 2)
  return out;
}

// conv followed by batch norm == one conv with scaled weights and a bias (in float64, then rounded once).
Conv fold(const Conv& c, const Norm& n) {
  const at::Tensor scale = n.weight.to(torch::kFloat64) / (n.var.to(torch::kFloat64) + n.eps).sqrt();
  Conv out = c;
  out.w = (c.w.to(torch::kFloat64) * scale.view({-1, 1, 1, 1})).to(torch::kFloat32);
  at::Tensor b = c.b.defined() ? c.b.to(torch::kFloat64) : torch::zeros_like(scale);
  out.b = ((b - n.mean.to(torch::kFloat64)) * scale + n.bias.to(torch::kFloat64)).to(torch::kFloat32);
  return out;
}

}  // namespace

struct InferenceModel::Impl {
  ArtifactInfo info;
  InferenceOptions opts;
  WideResNet net{nullptr};  // used as is when fold_batchnorm is off
  Conv stem;
  std::vector<Block> blocks;
  Norm final_bn;
  at::Tensor fc_w, fc_b;
  at::Tensor mean, sd;  // 1 x 3 x 1 x 1: (x / 255 - mean) / std, as the training loader computes it
  int64_t folded = 0, kept = 0;

  at::Tensor place(const at::Tensor& t, bool conv_weight) const {
    at::Tensor o = t.to(opts.device);
    if (opts.bf16 && o.is_floating_point()) o = o.to(torch::kBFloat16);
    if (conv_weight && opts.channels_last && o.dim() == 4) o = o.contiguous(at::MemoryFormat::ChannelsLast);
    return o;
  }
  Conv place(Conv c) const {
    c.w = place(c.w, true);
    if (c.b.defined()) c.b = place(c.b, false);
    return c;
  }
  Norm place_norm(Norm n) const {  // batch-norm parameters stay float32 (bf16 inputs are accepted)
    n.weight = n.weight.to(opts.device);
    n.bias = n.bias.to(opts.device);
    n.mean = n.mean.to(opts.device);
    n.var = n.var.to(opts.device);
    return n;
  }

  void build() {
    std::vector<WideBasicImpl*> raw;
    for (auto* seq : {&net->layer1, &net->layer2, &net->layer3})
      for (const auto& m : (*seq)->children()) raw.push_back(m->as<WideBasicImpl>());
    stem = conv_of(net->stem);
    for (size_t i = 0; i < raw.size(); ++i) {
      WideBasicImpl* r = raw[i];
      Block b;
      b.conv1 = conv_of(r->conv1);
      b.conv2 = conv_of(r->conv2);
      if (r->shortcut) b.shortcut = conv_of(r->shortcut);
      b.bn1 = norm_of(r->bn1);
      b.bn2 = norm_of(r->bn2);
      if (opts.fold_batchnorm) {
        b.conv1 = fold(b.conv1, *b.bn2);
        b.bn2.reset();
        ++folded;
        // The first block's input is only used through bn1 when it has a projection shortcut: fold into the stem.
        if (i == 0 && b.shortcut) {
          stem = fold(stem, *b.bn1);
          b.bn1.reset();
          ++folded;
        }
      }
      kept += (b.bn1 ? 1 : 0) + (b.bn2 ? 1 : 0);
      blocks.push_back(std::move(b));
    }
    final_bn = norm_of(net->bn);
    ++kept;
    stem = place(stem);
    for (auto& b : blocks) {
      b.conv1 = place(b.conv1);
      b.conv2 = place(b.conv2);
      if (b.shortcut) b.shortcut = place(*b.shortcut);
      if (b.bn1) b.bn1 = place_norm(*b.bn1);
      if (b.bn2) b.bn2 = place_norm(*b.bn2);
    }
    final_bn = place_norm(final_bn);
    fc_w = place(net->fc->weight.detach(), false);
    fc_b = place(net->fc->bias.detach(), false);
  }

  at::Tensor forward_folded(const at::Tensor& x) const {
    at::Tensor y = stem(x);
    for (const Block& b : blocks) {
      at::Tensor o = b.bn1 ? (*b.bn1)(y).relu_() : y.relu_();
      at::Tensor h = b.conv1(o);
      h = (b.bn2 ? (*b.bn2)(h) : h).relu_();
      h = b.conv2(h);
      y = h.add_(b.shortcut ? (*b.shortcut)(o) : y);
    }
    y = final_bn(y).relu_();
    y = at::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
    return at::linear(y, fc_w, fc_b);
  }
};

InferenceModel::InferenceModel(const Artifact& artifact, const InferenceOptions& opts) : impl_(std::make_unique<Impl>()) {
  torch::NoGradGuard no_grad;
  impl_->info = artifact.info;
  impl_->opts = opts;
  // Folding follows the WideResNet's block structure; an airbench network runs as trained.
  if (artifact.info.arch.airbench()) impl_->opts.fold_batchnorm = false;
  // A private copy of the module: folding must not touch the artifact's weights.
  WrnConfig arch = artifact.info.arch;
  arch.dropout = 0;
  impl_->net = WideResNet(arch);
  {
    auto dst = state_dict(*impl_->net);
    auto src = state_dict(*artifact.net);
    if (dst.size() != src.size()) fail("inference: the artifact's module does not match its architecture");
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  impl_->net->eval();
  if (impl_->opts.fold_batchnorm) {
    impl_->build();
    impl_->net = WideResNet(nullptr);  // the folded copy is all that is needed
  } else {
    impl_->net->to(opts.device);
    if (opts.channels_last)
      for (auto& p : impl_->net->parameters())
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
  }
  at::Tensor mean = torch::tensor(std::vector<float>(artifact.info.mean.begin(), artifact.info.mean.end()));
  at::Tensor sd = torch::tensor(std::vector<float>(artifact.info.std.begin(), artifact.info.std.end()));
  impl_->mean = mean.view({1, 3, 1, 1}).to(opts.device);
  impl_->sd = sd.view({1, 3, 1, 1}).to(opts.device);
}

InferenceModel::~InferenceModel() = default;
InferenceModel::InferenceModel(InferenceModel&&) noexcept = default;
InferenceModel& InferenceModel::operator=(InferenceModel&&) noexcept = default;

const ArtifactInfo& InferenceModel::info() const { return impl_->info; }
const InferenceOptions& InferenceModel::options() const { return impl_->opts; }

std::string InferenceModel::describe() const {
  const auto& o = impl_->opts;
  return fmt::format("{} on {}, {}, {}, {}", impl_->info.arch.name(), o.device.str(), o.bf16 ? "bf16" : "fp32",
                     o.channels_last ? "channels_last" : "contiguous",
                     o.fold_batchnorm ? fmt::format("{} batch norms folded, {} kept", impl_->folded, impl_->kept)
                                      : std::string("batch norm not folded"));
}

at::Tensor InferenceModel::preprocess(const at::Tensor& images_nhwc) const {
  const int64_t s = impl_->info.image_size;
  if (images_nhwc.dim() != 4 || images_nhwc.size(1) != s || images_nhwc.size(2) != s || images_nhwc.size(3) != 3 ||
      images_nhwc.scalar_type() != torch::kUInt8)
    fail("inference expects uint8 images N x {} x {} x 3, got {} [{}]", s, s, c10::toString(images_nhwc.scalar_type()),
         fmt::format("{}", fmt::join(images_nhwc.sizes(), ", ")));
  // NHWC is the channels-last layout of NCHW: permute is free, the arithmetic keeps the layout.
  at::Tensor x = images_nhwc.to(impl_->opts.device).permute({0, 3, 1, 2}).to(torch::kFloat32);
  x = x.div_(255.0f).sub_(impl_->mean).div_(impl_->sd);
  return impl_->opts.channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous();
}

at::Tensor InferenceModel::logits(const at::Tensor& images_nchw) const {
  torch::NoGradGuard no_grad;
  c10::InferenceMode inference;
  at::Tensor x = images_nchw.to(impl_->opts.device);
  if (impl_->opts.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out;
  if (impl_->opts.fold_batchnorm) {
    if (impl_->opts.bf16) x = x.to(torch::kBFloat16);
    out = impl_->forward_folded(x);
  } else {
    compat::AutocastGuard amp(impl_->opts.device.type(), impl_->opts.bf16);
    out = impl_->net->forward(x);
  }
  return out.to(torch::kCPU, torch::kFloat32);
}

at::Tensor InferenceModel::logits_u8(const at::Tensor& images_nhwc) const {
  torch::NoGradGuard no_grad;
  return logits(preprocess(images_nhwc));
}

}  // namespace cifar::model
