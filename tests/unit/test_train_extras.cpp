// EMA of the weights, SAM/ASAM and the fp16 loss scaler, against hand-computed values; augmentation on the
// device against the CPU loader's pixels.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "data/augment.h"
#include "data/device_augment.h"
#include "model/device.h"
#include "model/wide_resnet.h"
#include "train/amp.h"
#include "train/ema.h"
#include "train/sam.h"

using namespace cifar;

namespace {
model::WideResNet tiny_net() {
  model::WrnConfig c;
  c.depth = 10;
  c.width = 1;
  c.dropout = 0;
  c.num_classes = 10;
  model::WideResNet net(c);
  model::init_weights(*net);
  return net;
}

std::vector<std::pair<std::string, at::Tensor>> snapshot(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [n, t] : model::state_dict(m)) out.emplace_back(n, t.detach().clone());
  return out;
}
}  // namespace

TEST(WeightEma, DecayWarmsUpAsTensorFlowsRule) {
  model::Runtime rt;
  rt.channels_last = false;
  auto net = tiny_net();
  train::WeightEma ema(net, rt, 0.999);
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(90), 91.0 / 100.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(1000000), 0.999);  // (1+n)/(10+n) passes 0.999 at n = 8991
  EXPECT_DOUBLE_EQ(ema.decay_at(8990), 8991.0 / 9000.0);
}

TEST(WeightEma, AveragesParametersAndFloatBuffersAndCopiesCounters) {
  model::Runtime rt;
  rt.channels_last = true;  // the average keeps the source's memory format and still lines up by name
  auto net = tiny_net();
  model::place_module(*net, rt);
  train::WeightEma ema(net, rt, 0.5);
  const auto w0 = snapshot(*net);
  // Training steps: every weight and float buffer moves to a new value; the counters advance.
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> seen;
  torch::manual_seed(3);
  for (int step = 1; step <= 3; ++step) {
    torch::NoGradGuard ng;
    for (auto& [n, t] : model::state_dict(*net)) {
      if (t.is_floating_point()) t.add_(torch::randn_like(t));
      else t.add_(5);
    }
    seen.push_back(snapshot(*net));
    ema.update(step);
  }
  // Reference in double: e = w0, then e = d e + (1 - d) w_k with d = min(0.5, (1 + k) / (10 + k)).
  const auto got = model::state_dict(*ema.model());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& [name, t] = got[i];
    if (!t.is_floating_point()) {
      EXPECT_TRUE(t.equal(seen.back()[i].second)) << name << ": integer buffers are copied";
      continue;
    }
    at::Tensor e = w0[i].second.to(torch::kFloat64);
    for (int k = 1; k <= 3; ++k) {
      const double d = std::min(0.5, (1.0 + k) / (10.0 + k));
      e = d * e + (1 - d) * seen[static_cast<size_t>(k - 1)][i].second.to(torch::kFloat64);
    }
    EXPECT_LT((t.to(torch::kFloat64) - e).abs().max().item<double>(), 1e-5) << name;
  }
  // The average is a separate model: changing it leaves the source alone, and reset() restarts from the source.
  ema.reset();
  for (const auto& [name, t] : model::state_dict(*ema.model()))
    for (const auto& [n2, s] : model::state_dict(*net))
      if (n2 == name) EXPECT_TRUE(t.equal(s)) << name;
  for (auto& p : ema.model()->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(Sam, PerturbationIsRhoTimesTheNormalisedGradient) {
  auto w1 = torch::tensor({1.0f, -2.0f, 3.0f}).requires_grad_();
  auto w2 = torch::tensor({{0.5f, -4.0f}}).requires_grad_();
  auto w3 = torch::tensor({7.0f}).requires_grad_();  // no gradient: no perturbation
  w1.mutable_grad() = torch::tensor({3.0f, 0.0f, -4.0f});
  w2.mutable_grad() = torch::tensor({{0.0f, 12.0f}});
  // SAM: ||g|| = sqrt(9 + 16 + 144) = 13; e = 0.26 * g / 13 = 0.02 g.
  auto e = train::sam_perturbation({w1, w2, w3}, 0.26, false);
  EXPECT_TRUE(e[0].allclose(torch::tensor({0.06f, 0.0f, -0.08f})));
  EXPECT_TRUE(e[1].allclose(torch::tensor({{0.0f, 0.24f}})));
  EXPECT_FALSE(e[2].defined());
  // ASAM: T g = |w| g = (3, 0, -12), (0, -48)... |w2| g2 = (0, 48); ||T g|| = sqrt(9 + 144 + 2304) = sqrt(2457);
  // e = rho * |w|^2 g / ||T g||.
  const double n = std::sqrt(2457.0);
  auto a = train::sam_perturbation({w1, w2, w3}, 2.0, true);
  EXPECT_TRUE(a[0].allclose(torch::tensor({static_cast<float>(2 * 1 * 3 / n), 0.0f, static_cast<float>(2 * 9 * -4 / n)})));
  EXPECT_TRUE(a[1].allclose(torch::tensor({{0.0f, static_cast<float>(2 * 16 * 12 / n)}})));
}

TEST(Sam, StepTakesTheGradientAtThePerturbedPointAndRestoresExactly) {
  // loss = 0.5 * sum(c * w^2), gradient c * w: SAM's update direction is c * (w + e).
  const auto c = torch::tensor({1.0f, 3.0f, 0.5f, 2.0f});
  auto w = torch::tensor({0.3f, -1.1f, 2.0f, 0.7f}).requires_grad_();
  const auto w0 = w.detach().clone();
  auto loss = [&] { return (0.5 * c * w * w).sum(); };
  loss().backward();
  const auto g = w.grad().clone();
  const auto saved = train::sam_perturb({w}, 0.1, false);
  const auto e = 0.1 * g / g.norm();
  EXPECT_TRUE(w.detach().allclose(w0 + e));
  w.mutable_grad() = torch::Tensor();
  loss().backward();
  EXPECT_TRUE(w.grad().allclose(c * (w0 + e)));
  train::sam_restore({w}, saved);
  EXPECT_TRUE(w.detach().equal(w0)) << "restored bit for bit, not by subtracting e";
}

TEST(LossScaler, UnscalesSkipsNonFiniteStepsAndAdjustsTheScaleAsGradScaler) {
  train::LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  train::LossScaler s(c10::Device(c10::kCPU), o);
  auto p = torch::zeros({3}).requires_grad_();
  EXPECT_DOUBLE_EQ(s.scale(torch::tensor(2.0f)).item<double>(), 2048.0);

  // A clean step: gradients divided by the scale; the tracker counts.
  p.mutable_grad() = torch::tensor({1024.0f, -512.0f, 2048.0f});
  s.unscale({p});
  EXPECT_TRUE(s.step_ok());
  EXPECT_TRUE(p.grad().equal(torch::tensor({1.0f, -0.5f, 2.0f})));
  s.update();
  EXPECT_EQ(s.growth_tracker(), 1);
  EXPECT_DOUBLE_EQ(s.current_scale(), 1024.0);

  // An overflow: the step is skipped, the scale halves, the tracker resets, the skip is counted.
  p.mutable_grad() = torch::tensor({1.0f, std::numeric_limits<float>::infinity(), 0.0f});
  s.unscale({p});
  EXPECT_FALSE(s.step_ok());
  s.update();
  EXPECT_DOUBLE_EQ(s.current_scale(), 512.0);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_EQ(s.skipped_steps(), 1);

  // NaN counts as non-finite too.
  p.mutable_grad() = torch::tensor({std::nanf(""), 0.0f, 0.0f});
  s.unscale({p});
  EXPECT_FALSE(s.step_ok());
  s.update();
  EXPECT_DOUBLE_EQ(s.current_scale(), 256.0);
  EXPECT_EQ(s.skipped_steps(), 2);

  // growth_interval clean steps in a row double the scale and reset the tracker.
  for (int i = 0; i < 3; ++i) {
    p.mutable_grad() = torch::ones({3});
    s.unscale({p});
    EXPECT_TRUE(s.step_ok());
    s.update();
  }
  EXPECT_DOUBLE_EQ(s.current_scale(), 512.0);
  EXPECT_EQ(s.growth_tracker(), 0);

  // Checkpointed state comes back.
  s.restore(128.0, 2, 7);
  EXPECT_DOUBLE_EQ(s.current_scale(), 128.0);
  EXPECT_EQ(s.growth_tracker(), 2);
  EXPECT_EQ(s.skipped_steps(), 7);
  p.mutable_grad() = torch::ones({3});
  s.unscale({p});
  s.update();
  EXPECT_DOUBLE_EQ(s.current_scale(), 256.0) << "the restored tracker reached the interval";
}

// ------------------------------------------------------------------------------------ device augmentation

TEST(DeviceAugment, BatchedOpsGiveTheCpuLoadersPixelsExactly) {
  data::Split split;
  const int64_t n = 48;
  split.pixels.resize(static_cast<size_t>(n * data::kPixels));
  Rng fill(7, Stream::Shuffle, {1});
  for (auto& v : split.pixels) v = static_cast<uint8_t>(fill.below(256));
  split.fine.assign(static_cast<size_t>(n), 0);
  split.coarse.assign(static_cast<size_t>(n), 0);
  for (const char* spec : {"standard", "random_crop(padding=4); hflip; cutout(size=16)",
                           "random_crop(padding=2, fill=128, p=0.5); hflip(p=0.3); cutout(holes=2, size=9, fill=7, p=0.6)",
                           "cutout(size=31); hflip(p=1)", "none"}) {
    const data::Pipeline p = data::Pipeline::parse(spec);
    ASSERT_TRUE(data::device_augment_supported(p)) << spec;
    std::vector<c10::Device> devices = {c10::Device(c10::kCPU)};
    if (torch::cuda::is_available()) devices.emplace_back(c10::kCUDA, 0);  // on the GPU machine (gpu-check.sh)
    for (const auto& device : devices)
    for (bool channels_last : {false, true}) {
      data::DeviceAugmenter aug(split, p, device, channels_last);
      const int64_t width = std::max<int64_t>(data::device_param_width(p), 1);
      at::Tensor idx = torch::arange(n, torch::kInt64).flip(0);
      at::Tensor prm = torch::zeros({n, width}, torch::kInt32);
      at::Tensor want = torch::empty({n, 3, 32, 32}, torch::kFloat32);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = idx[k].item<int64_t>();
        Rng a(11, Stream::Augment, {3, static_cast<uint64_t>(i)}), b(11, Stream::Augment, {3, static_cast<uint64_t>(i)});
        data::draw_device_params(p, a, prm.data_ptr<int32_t>() + k * width);
        data::augment_normalize(split.image(i), want[k].data_ptr<float>(), false, &p, b);
        EXPECT_EQ(a.next(), b.next()) << spec << ": the draws consumed the generator differently";
      }
      const at::Tensor got = aug(idx, prm).cpu();
      EXPECT_EQ(aug(idx, prm).is_contiguous(at::MemoryFormat::ChannelsLast), channels_last);
      EXPECT_TRUE(got.equal(want)) << spec << ": " << (got - want).abs().max().item<float>();
    }
  }
  std::string why;
  EXPECT_FALSE(data::device_augment_supported(data::Pipeline::parse("random_crop(padding_mode=reflect)"), &why));
  EXPECT_EQ(why, "random_crop with padding_mode reflect");
  EXPECT_FALSE(data::device_augment_supported(data::Pipeline::parse("trivialaugment"), &why));
  EXPECT_EQ(why, "trivial_augment_wide");
}
