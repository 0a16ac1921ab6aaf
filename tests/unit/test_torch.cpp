// Unit tests for the LibTorch parts: model shape/size/names/init, weight files, losses, MixUp, the LR
// schedule, early stopping, SGD groups, gradient clipping and the batch loader.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/config.h"
#include "support/testutil.h"
#include "common/error.h"
#include "common/rng.h"
#include "data/loader.h"
#include "eval/evaluate.h"
#include "model/weights.h"
#include "model/wide_resnet.h"
#include "support/synth.h"
#include "data/transforms.h"
#include "train/losses.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
model::WideResNet make(int64_t depth, int64_t width, double dropout = 0.0) {
  return model::WideResNet(model::WrnConfig{depth, width, dropout, 100});
}
}  // namespace

// ------------------------------------------------------------------------------------------ model
TEST(Model, ParameterCountsMatchThePublishedArchitectures) {
  EXPECT_EQ(model::count_parameters(*make(28, 10)), 36536884);
  EXPECT_EQ(model::count_parameters(*make(16, 4)), 2772020);
  EXPECT_EQ(model::count_parameters(*make(16, 8)), 11007540);
  EXPECT_EQ(model::count_parameters(*make(40, 4)), 8972340);
}

TEST(Model, MultiplyAccumulatesMatchTheDesignFigures) {
  EXPECT_NEAR(model::count_macs({28, 10, 0, 100}) / 1e9, 5.24, 0.01);
  EXPECT_NEAR(model::count_macs({16, 8, 0, 100}) / 1e9, 1.55, 0.01);
  EXPECT_NEAR(model::count_macs({40, 4, 0, 100}) / 1e9, 1.30, 0.01);
  EXPECT_NEAR(model::count_macs({16, 4, 0, 100}) / 1e9, 0.39, 0.01);
  EXPECT_NEAR(model::count_macs({16, 2, 0, 100}) / 1e9, 0.10, 0.01);
}

TEST(Model, ForwardShapesInBothMemoryFormats) {
  torch::manual_seed(0);
  auto net = make(10, 2);
  net->eval();
  auto x = torch::randn({3, 3, 32, 32});
  auto a = net->forward(x);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 100}));
  auto b = net->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5));
}

TEST(Model, ParameterNamesFollowTheReferenceModel) {
  auto net = make(16, 4);
  auto sd = model::state_dict(*net);
  ASSERT_GE(sd.size(), 10u);
  EXPECT_EQ(sd[0].first, "stem.weight");
  EXPECT_EQ(sd[1].first, "layer1.0.bn1.weight");
  EXPECT_EQ(sd[3].first, "layer1.0.bn1.running_mean");
  EXPECT_EQ(sd[5].first, "layer1.0.bn1.num_batches_tracked");
  EXPECT_EQ(sd[6].first, "layer1.0.conv1.weight");
  EXPECT_EQ(sd.back().first, "fc.bias");
  std::set<std::string> names;
  for (auto& kv : sd) names.insert(kv.first);
  EXPECT_TRUE(names.count("layer1.0.shortcut.weight"));   // 16 -> 64 channels
  EXPECT_FALSE(names.count("layer1.1.shortcut.weight"));  // 64 -> 64, stride 1
  EXPECT_TRUE(names.count("layer3.0.shortcut.weight"));
  EXPECT_TRUE(names.count("bn.running_var"));
}

TEST(Model, KaimingInitialisation) {
  torch::manual_seed(1);
  auto net = make(16, 4);
  auto w = net->layer3[0]->as<model::WideBasic>()->conv2->weight;  // fan_in 256*9
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (256 * 9)), 0.001);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.0005);
  EXPECT_TRUE(torch::equal(net->bn->weight, torch::ones_like(net->bn->weight)));
  EXPECT_TRUE(torch::equal(net->fc->bias, torch::zeros_like(net->fc->bias)));
}

TEST(Model, RejectsBadDepth) {
  auto msg = error_of([] { make(20, 2); });
  EXPECT_NE(msg.find("6n+4"), std::string::npos) << msg;
}

TEST(Weights, RoundTripAndStrictMismatchErrors) {
  const std::string dir = temp_dir("weights");
  torch::manual_seed(3);
  auto a = make(10, 2);
  {
    torch::NoGradGuard g;
    a->bn->running_mean.uniform_();  // buffers travel too
  }
  model::save_weights(*a, dir + "/w.pt");
  torch::manual_seed(4);
  auto b = make(10, 2);
  model::load_weights(*b, dir + "/w.pt");
  auto sa = model::state_dict(*a), sb = model::state_dict(*b);
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;

  auto c = make(10, 4);
  auto msg = error_of([&] { model::load_weights(*c, dir + "/w.pt"); });
  EXPECT_NE(msg.find("w.pt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'layer1.0.conv1.weight' has shape 32x16x3x3, the model expects 64x16x3x3"),
            std::string::npos)
      << msg;
  auto d = make(16, 2);
  msg = error_of([&] { model::load_weights(*d, dir + "/w.pt"); });
  EXPECT_NE(msg.find("has no tensor 'layer1.1.bn1.weight'"), std::string::npos) << msg;

  stdfs::resize_file(dir + "/w.pt", stdfs::file_size(dir + "/w.pt") / 2);
  msg = error_of([&] { model::load_weights(*b, dir + "/w.pt"); });
  EXPECT_NE(msg.find("cannot be read"), std::string::npos) << msg;
  msg = error_of([&] { model::load_weights(*b, dir + "/none.pt"); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

// ----------------------------------------------------------------------------------------- losses
TEST(Losses, LabelSmoothingMatchesHandComputedValues) {
  // Row 1: uniform logits -> loss ln 3 whatever eps. Row 2: probabilities (1/4, 1/2, 1/4), target 1:
  // 0.9 * ln 2 + 0.1 * (ln 4 + ln 2 + ln 4) / 3 = ln 2 * (0.9 + 0.5/3).
  auto logits = torch::tensor({0.0, 0.0, 0.0, 0.0, std::log(2.0), 0.0}, torch::kFloat32).view({2, 3});
  auto y = torch::tensor({0, 1}, torch::kInt64);
  const double row2 = std::log(2.0) * (0.9 + 0.5 / 3.0);
  EXPECT_NEAR(train::smoothed_cross_entropy(logits, y, 0.1).item<double>(), (std::log(3.0) + row2) / 2, 1e-6);
  EXPECT_NEAR(train::smoothed_cross_entropy(logits, y, 0.0).item<double>(), (std::log(3.0) + std::log(2.0)) / 2,
              1e-6);
}

TEST(Losses, MixUpMixesInputsAndTargetsAsDrawn) {
  auto x = torch::arange(4, torch::kFloat32).view({4, 1}) * 10;
  auto y = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  Rng rng(7, Stream::MixUp, {0});
  auto m = train::mixup(x, y, 0.4, rng);
  ASSERT_GT(m.lam, 0.0);
  ASSERT_LT(m.lam, 1.0);
  for (int i = 0; i < 4; ++i) {
    const int64_t j = m.targets_b[i].item<int64_t>();  // y is the identity, so targets_b is the permutation
    EXPECT_NEAR(m.inputs[i][0].item<double>(), m.lam * 10 * i + (1 - m.lam) * 10 * j, 1e-4);
  }
  // Same rng state -> same draw.
  Rng rng2(7, Stream::MixUp, {0});
  EXPECT_DOUBLE_EQ(train::mixup(x, y, 0.4, rng2).lam, m.lam);

  // Loss = lam * CE(y) + (1 - lam) * CE(y_b), by hand for a fixed lam.
  train::Mixed fixed;
  fixed.lam = 0.3;
  fixed.targets_b = torch::tensor({1, 0}, torch::kInt64);
  auto logits = torch::tensor({0.0, std::log(3.0), 0.0, 0.0}, torch::kFloat32).view({2, 2});
  auto t = torch::tensor({0, 1}, torch::kInt64);
  // Row 1 probs (1/4, 3/4); row 2 (1/2, 1/2). eps = 0: CE(t) = (ln 4 + ln 2)/2, CE(b) = (ln(4/3) + ln 2)/2.
  const double want = 0.3 * (std::log(4.0) + std::log(2.0)) / 2 + 0.7 * (std::log(4.0 / 3.0) + std::log(2.0)) / 2;
  EXPECT_NEAR(train::mixup_loss(logits, t, fixed, 0.0).item<double>(), want, 1e-6);
  // Accuracy against mixed targets: predictions (1, 0|1 tie -> 0): row 1 hits b, row 2 hits b.
  EXPECT_NEAR(train::mixup_correct(logits, t, fixed).item<double>(), 0.7 * 2, 1e-9);
}

TEST(Losses, CutMixPastesABoxAndCorrectsLam) {
  // Sample i is filled with the value i, so every pixel tells where it came from.
  auto x = torch::arange(6, torch::kFloat32).view({6, 1, 1, 1}).expand({6, 3, 32, 32}).contiguous();
  auto y = torch::arange(6, torch::kInt64);
  Rng rng(11, Stream::MixUp, {3});
  auto m = train::cutmix(x, y, 1.0, rng);
  ASSERT_TRUE(m.cutmix);
  const int y0 = m.box[0], y1 = m.box[1], x0 = m.box[2], x1 = m.box[3];
  ASSERT_LT(y0, y1);
  ASSERT_LT(x0, x1);
  EXPECT_NEAR(m.lam, 1.0 - double((y1 - y0) * (x1 - x0)) / 1024.0, 1e-12);
  for (int i = 0; i < 6; ++i) {
    const float source = static_cast<float>(m.targets_b[i].item<int64_t>());
    EXPECT_EQ(m.inputs[i][1][y0][x0].item<float>(), source);
    EXPECT_EQ(m.inputs[i][2][y1 - 1][x1 - 1].item<float>(), source);
    EXPECT_EQ(m.inputs[i].sum().item<double>(), double(i) * 3 * 1024 + (source - i) * 3 * (y1 - y0) * (x1 - x0));
  }
  EXPECT_TRUE(torch::equal(x, torch::arange(6, torch::kFloat32).view({6, 1, 1, 1}).expand({6, 3, 32, 32})));  // input untouched

  train::MixConfig off;
  off.mixup_alpha = 0.2;
  off.prob = 0.0;  // never mix
  Rng r2(1);
  auto none = train::mix_batch(x, y, off, r2);
  EXPECT_EQ(none.lam, 1.0);
  EXPECT_TRUE(torch::equal(none.inputs, x));
  train::MixConfig both;
  both.mixup_alpha = 0.2;
  both.cutmix_alpha = 1.0;
  both.switch_prob = 0.5;
  int cut = 0;
  for (uint64_t k = 0; k < 200; ++k) {
    Rng r(k);
    cut += train::mix_batch(x, y, both, r).cutmix;
  }
  EXPECT_NEAR(cut, 100, 30);
}

// ------------------------------------------------------------------------------ schedule, optim
TEST(Schedule, WarmupThenCosineAtKnownPoints) {
  train::LrSchedule s{0.1, 0.0, 10, 110};
  EXPECT_NEAR(s.at(0), 0.01, 1e-12);
  EXPECT_NEAR(s.at(4), 0.05, 1e-12);
  EXPECT_NEAR(s.at(9), 0.1, 1e-12);
  EXPECT_NEAR(s.at(10), 0.1, 1e-12);
  EXPECT_NEAR(s.at(60), 0.05, 1e-12);
  EXPECT_NEAR(s.at(109), 0.05 * (1 + std::cos(M_PI * 0.99)), 1e-12);
  train::LrSchedule m{0.1, 0.01, 0, 100};
  EXPECT_NEAR(m.at(0), 0.1, 1e-12);
  EXPECT_NEAR(m.at(50), 0.055, 1e-12);
}

TEST(Schedule, BuiltFromConfigWithLinearScaling) {
  Config c;
  c.apply_overrides({"lr=0.1", "batch_size=128", "lr_reference_batch=256", "warmup_epochs=0.5", "epochs=10"});
  auto s = train::make_schedule(c, 351);
  EXPECT_NEAR(s.peak_lr, 0.05, 1e-12);
  EXPECT_EQ(s.warmup_steps, 176);
  EXPECT_EQ(s.total_steps, 3510);
}

TEST(Schedule, LinearDecayAfterWarmupAtKnownPoints) {
  train::LrSchedule s{0.1, 0.0, 10, 110};
  s.linear = true;
  EXPECT_NEAR(s.at(4), 0.05, 1e-12);   // warmup is unchanged
  EXPECT_NEAR(s.at(10), 0.1, 1e-12);   // t = 0
  EXPECT_NEAR(s.at(35), 0.075, 1e-12); // t = 0.25
  EXPECT_NEAR(s.at(60), 0.05, 1e-12);  // t = 0.5
  EXPECT_NEAR(s.at(109), 0.001, 1e-12);
  EXPECT_NEAR(s.at(500), 0.0, 1e-12);  // past the end: min_lr
  train::LrSchedule m{0.2, 0.02, 0, 10};
  m.linear = true;
  EXPECT_NEAR(m.at(5), 0.11, 1e-12);
  Config c;
  c.apply_overrides({"lr_schedule=linear", "epochs=2", "warmup_epochs=0"});
  EXPECT_TRUE(train::make_schedule(c, 10).linear);
  Config d;
  EXPECT_FALSE(train::make_schedule(d, 10).linear);
}

TEST(EarlyStopping, StopsAfterPatienceEpochsWithoutStrictImprovement) {
  train::EarlyStopping e(2);
  EXPECT_TRUE(e.update(1, 0.1));
  EXPECT_TRUE(e.update(2, 0.2));
  EXPECT_FALSE(e.update(3, 0.15));
  EXPECT_FALSE(e.should_stop());
  EXPECT_FALSE(e.update(4, 0.2));  // equal is not better
  EXPECT_TRUE(e.should_stop());
  EXPECT_EQ(e.best_epoch(), 2);
  EXPECT_DOUBLE_EQ(e.best(), 0.2);
  train::EarlyStopping off(0);
  for (int i = 0; i < 50; ++i) off.update(i, 0.0);
  EXPECT_FALSE(off.should_stop());
}

namespace {
struct Tiny : torch::nn::Module {
  Tiny() {
    w = register_parameter("w", torch::ones({1, 1}));
    b = register_parameter("b", torch::ones({1}));
  }
  torch::Tensor w, b;
};
}  // namespace

TEST(Optim, NesterovSgdWithDecayOnWeightsOnly) {
  Config c;
  c.apply_overrides({"lr=0.1", "batch_size=256", "lr_reference_batch=256", "weight_decay=0.1", "momentum=0.9"});
  Tiny t;
  auto opt = train::make_sgd(t, c);
  for (int step = 0; step < 2; ++step) {
    t.w.mutable_grad() = torch::full({1, 1}, 0.5);
    t.b.mutable_grad() = torch::full({1}, 0.5);
    opt->step();
  }
  // Hand-computed: w: d = 0.5 + 0.1*1 = 0.6, buf = 0.6, w = 1 - 0.1*(0.6 + 0.9*0.6) = 0.886;
  //  d = 0.5 + 0.0886 = 0.5886, buf = 0.54 + 0.5886 = 1.1286, w = 0.886 - 0.1*(0.5886 + 0.9*1.1286) = 0.725566.
  EXPECT_NEAR(t.w.item<double>(), 0.725566, 1e-6);
  // b (no decay): d = 0.5, buf 0.5, b = 1 - 0.1*0.95 = 0.905; buf = 0.95, b = 0.905 - 0.1*(0.5 + 0.855) = 0.7695.
  EXPECT_NEAR(t.b.item<double>(), 0.7695, 1e-6);
  train::set_lr(*opt, 0.01);
  for (auto& g : opt->param_groups())
    EXPECT_DOUBLE_EQ(static_cast<torch::optim::SGDOptions&>(g.options()).lr(), 0.01);
  auto split = train::decay_split(*make(16, 4), false);
  EXPECT_EQ(split.first + split.second, 2772020);
  // Not decayed: batch-norm weight and bias (group 1: 16, 64, 64, 64; group 2: 64, 128, 128, 128;
  // group 3: 128, 256, 256, 256; final 256 channels) and the classifier bias.
  EXPECT_EQ(split.second, 2 * (16 + 3 * 64 + 64 + 3 * 128 + 128 + 3 * 256 + 256) + 100);
}

TEST(Optim, GradientClippingByGlobalNorm) {
  Tiny t;
  t.w.mutable_grad() = torch::full({1, 1}, 3.0);
  t.b.mutable_grad() = torch::full({1}, 4.0);
  const double norm = torch::nn::utils::clip_grad_norm_(t.parameters(), 2.5);
  EXPECT_NEAR(norm, 5.0, 1e-6);
  EXPECT_NEAR(t.w.grad().item<double>(), 1.5, 1e-5);
  EXPECT_NEAR(t.b.grad().item<double>(), 2.0, 1e-5);
}

// ----------------------------------------------------------------------------------------- loader
namespace {
std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

std::vector<data::Batch> epoch_batches(data::Loader& l, int64_t epoch, int64_t first = 0) {
  std::vector<data::Batch> out;
  l.start_epoch(epoch, first);
  while (auto b = l.next()) out.push_back(*b);
  return out;
}
}  // namespace

TEST(Loader, IdenticalBatchesWhateverTheNumberOfWorkers) {
  data::Split s = synth::make_split(1000, 10, 5);
  const std::vector<int64_t> idx = all_indices(1000);
  data::LoaderOptions o;
  o.batch_size = 64;
  o.shuffle = true;
  o.augment = std::make_shared<const data::Pipeline>(data::Pipeline::parse("standard"));
  o.seed = 9;
  std::vector<std::vector<data::Batch>> runs;
  for (int w : {0, 1, 3}) {
    o.workers = w;
    data::Loader l(s, idx, o);
    runs.push_back(epoch_batches(l, 2));
  }
  ASSERT_EQ(runs[0].size(), 16u);
  for (size_t r = 1; r < runs.size(); ++r)
    for (size_t b = 0; b < runs[0].size(); ++b) {
      EXPECT_TRUE(torch::equal(runs[0][b].images, runs[r][b].images));
      EXPECT_TRUE(torch::equal(runs[0][b].labels, runs[r][b].labels));
    }
}

TEST(Loader, ShufflesEachEpochDifferentlyAndCoversEverySample) {
  data::Split s = synth::make_split(200, 10, 5);
  const std::vector<int64_t> idx = all_indices(200);
  data::LoaderOptions o;
  o.batch_size = 50;
  o.shuffle = true;
  data::Loader l(s, idx, o);
  l.start_epoch(0);
  auto e0 = l.order();
  l.start_epoch(1);
  auto e1 = l.order();
  EXPECT_NE(e0, e1);
  std::sort(e0.begin(), e0.end());
  EXPECT_EQ(e0, idx);
}

TEST(Loader, DropLastAndBatchCounts) {
  data::Split s = synth::make_split(130, 10, 5);
  const std::vector<int64_t> idx = all_indices(130);
  data::LoaderOptions o;
  o.batch_size = 64;
  o.drop_last = true;
  data::Loader a(s, idx, o);
  EXPECT_EQ(a.batches_per_epoch(), 2);
  o.drop_last = false;
  data::Loader b(s, idx, o);
  auto batches = epoch_batches(b, 0);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[2].images.size(0), 2);
  o.batch_size = 500;  // drop_last with fewer samples than a batch still yields one batch
  o.drop_last = true;
  data::Loader c(s, idx, o);
  EXPECT_EQ(c.batches_per_epoch(), 1);
}

TEST(Loader, ChannelsLastNormalisedPixelsAndLabels) {
  data::Split s = synth::make_split(10, 10, 5);
  std::vector<int64_t> idx = {3, 7};
  data::LoaderOptions o;
  o.batch_size = 2;
  o.channels_last = true;
  data::Loader l(s, idx, o);
  auto b = epoch_batches(l, 0).at(0);
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_TRUE(b.images.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_EQ(b.labels[1].item<int64_t>(), s.fine[7]);
  const uint8_t v = s.image(7)[2 * 1024 + 5 * 32 + 9];  // blue, y=5, x=9
  EXPECT_FLOAT_EQ(b.images[1][2][5][9].item<float>(), (v / 255.0f - data::kMean[2]) / data::kStd[2]);
}

TEST(Loader, StartingMidEpochGivesTheSameLaterBatches) {
  data::Split s = synth::make_split(640, 10, 5);
  const std::vector<int64_t> idx = all_indices(640);
  data::LoaderOptions o;
  o.batch_size = 64;
  o.shuffle = true;
  o.augment = std::make_shared<const data::Pipeline>(data::Pipeline::parse("standard"));
  o.workers = 2;
  data::Loader l(s, idx, o);
  auto full = epoch_batches(l, 4);
  // Abandon an epoch half-way (workers still busy), then resume another at batch 6.
  l.start_epoch(3);
  l.next();
  auto tail = epoch_batches(l, 4, 6);
  ASSERT_EQ(tail.size(), 4u);
  for (size_t k = 0; k < tail.size(); ++k) {
    EXPECT_EQ(tail[k].index, static_cast<int64_t>(k + 6));
    EXPECT_TRUE(torch::equal(tail[k].images, full[k + 6].images));
  }
}

// ------------------------------------------------------------------------------ airbench, whitening, TTA
TEST(Airbench, ShapesParametersAndMacs) {
  model::WrnConfig c;
  c.arch = "airbench";
  c.widths = {8, 16, 32};
  model::WideResNet net(c);
  EXPECT_EQ(c.name(), "airbench-8-16-32");
  net->eval();
  const auto y = net->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 100}));
  // whiten bias 24; per group conv1 in*out*9, conv2 out*out*9, two BNs 2*2*out; head 32*100 (no bias).
  const int64_t params = 24 + (24 * 8 * 9 + 8 * 8 * 9 + 4 * 8) + (8 * 16 * 9 + 16 * 16 * 9 + 4 * 16) +
                         (16 * 32 * 9 + 32 * 32 * 9 + 4 * 32) + 32 * 100;
  EXPECT_EQ(model::count_parameters(*net), params);
  EXPECT_EQ(model::count_macs(c), 24 * 12 * 31 * 31 + 24 * 8 * 9 * 31 * 31 + 8 * 8 * 9 * 15 * 15 + 8 * 16 * 9 * 15 * 15 +
                                      16 * 16 * 9 * 7 * 7 + 16 * 32 * 9 * 7 * 7 + 32 * 32 * 9 * 3 * 3 + 32 * 100);
  // The whitening weight is a buffer: in the state dict, never trained.
  bool found = false;
  for (const auto& [k, t] : model::state_dict(*net)) found |= k == "whiten_weight";
  EXPECT_TRUE(found);
  for (const auto& p : net->named_parameters()) EXPECT_NE(p.key(), "whiten_weight");
}

TEST(Airbench, DiracInitPassesTheInputThroughTheFirstFilters) {
  model::WrnConfig c;
  c.arch = "airbench";
  c.widths = {8, 16, 32};
  model::WideResNet net(c);
  torch::manual_seed(5);
  model::init_weights_dirac(*net);
  const auto named = net->groups[0]->named_parameters();
  const at::Tensor w1 = named["conv1.weight"];  // [8, 24, 3, 3]: in 24 > out 8, all 8 filters are identities
  const at::Tensor w2 = named["conv2.weight"];  // [8, 8, 3, 3]
  // The identity filters: a 1 at the centre tap of their own channel, 0 elsewhere; a conv with them copies
  // the first channels of its input.
  const at::Tensor x = torch::randn({1, 24, 5, 5});
  EXPECT_TRUE(torch::allclose(torch::conv2d(x, w1, {}, 1, 1), x.slice(1, 0, 8)));
  EXPECT_TRUE(torch::allclose(torch::conv2d(x.slice(1, 0, 8), w2, {}, 1, 1), x.slice(1, 0, 8)));
  EXPECT_EQ(w1.abs().sum().item<double>(), 8.0);
  // Group 2's conv1 [16, 8, 3, 3]: the first 8 filters are identities, the other 8 PyTorch's default
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in 8*9.
  const at::Tensor w3 = net->groups[1]->named_parameters()["conv1.weight"];
  EXPECT_TRUE(torch::allclose(torch::conv2d(x.slice(1, 0, 8), w3.slice(0, 0, 8), {}, 1, 1), x.slice(1, 0, 8)));
  const at::Tensor rest = w3.slice(0, 8, 16);
  const double bound = 1.0 / std::sqrt(72.0);
  EXPECT_LE(rest.abs().max().item<double>(), bound);
  EXPECT_GT(rest.abs().max().item<double>(), 0.8 * bound);
  EXPECT_NEAR(rest.std().item<double>(), bound / std::sqrt(3.0), 0.15 * bound);  // std of U(-b, b) is b/sqrt(3)
  // The head: the same uniform, fan_in 32.
  EXPECT_LE(net->head->weight.abs().max().item<double>(), 1.0 / std::sqrt(32.0));
  EXPECT_NEAR(net->head->weight.std().item<double>(), 1.0 / std::sqrt(96.0), 0.1 / std::sqrt(96.0));
  // BN as init_weights.
  for (const auto& p : net->named_parameters())
    if (p.key().find("bn") != std::string::npos)
      EXPECT_EQ(p.value().sum().item<double>(), p.key().find("weight") != std::string::npos ? p.value().numel() : 0.0)
          << p.key();
}

TEST(Whitening, FiltersWhitenTheImagePatchesAndComeInSignedPairs) {
  torch::manual_seed(3);
  // Correlated channels and neighbouring pixels, like natural images.
  at::Tensor base = torch::randn({40, 1, 9, 9});
  at::Tensor x = torch::cat({base, base * 0.8 + 0.3 * torch::randn({40, 1, 9, 9}), torch::randn({40, 1, 9, 9})}, 1);
  x = x + 0.5 * x.roll(1, 3);
  const at::Tensor w = model::whitening_filters(x, 0.0);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{24, 3, 2, 2}));
  EXPECT_TRUE(torch::equal(w.slice(0, 0, 12), -w.slice(0, 12, 24)));
  // Each output channel of the first 12 is a filter applied to every 2x2 patch: their second moments are 1
  // and their cross moments 0 (eps = 0), which is what whitening means.
  const at::Tensor y = torch::conv2d(x.to(torch::kFloat64), w.slice(0, 0, 12).to(torch::kFloat64));
  const at::Tensor flat = y.permute({1, 0, 2, 3}).reshape({12, -1});
  const at::Tensor moments = flat.mm(flat.t()) / static_cast<double>(flat.size(1));
  EXPECT_LT((moments - torch::eye(12, torch::kFloat64)).abs().max().item<double>(), 1e-4);
  // With eps the gains shrink to l / (l + eps) along each eigenvector.
  const at::Tensor we = model::whitening_filters(x, 0.5).slice(0, 0, 12).to(torch::kFloat64);
  const at::Tensor ye = torch::conv2d(x.to(torch::kFloat64), we).permute({1, 0, 2, 3}).reshape({12, -1});
  const at::Tensor diag = (ye * ye).mean(1);
  EXPECT_TRUE((diag < 1.0).all().item<bool>());
}

TEST(Tta, AveragesTheProbabilitiesOfTheViews) {
  torch::manual_seed(5);
  const at::Tensor x = torch::randn({3, 3, 6, 6});
  const at::Tensor proj = torch::randn({3 * 6 * 6, 4});
  const auto f = [&](const at::Tensor& v) { return v.reshape({v.size(0), -1}).mm(proj); };
  const auto p = [&](const at::Tensor& v) { return torch::softmax(f(v), 1); };
  EXPECT_TRUE(torch::allclose(eval::tta_log_probs(f, x, eval::Tta::None), torch::log_softmax(f(x), 1)));
  const at::Tensor flip = x.flip({3});
  EXPECT_TRUE(torch::allclose(eval::tta_log_probs(f, x, eval::Tta::Flip).exp(), (p(x) + p(flip)) / 2, 1e-5, 1e-6));
  // Shifts built by hand: view(i, j) = image(i - d, j - d) with reflected borders (d = +1: down-right).
  const auto shift = [](const at::Tensor& v, int d) {
    at::Tensor out = torch::empty_like(v);
    const int64_t n = v.size(2);
    const auto refl = [n](int64_t i) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        out.select(2, i).select(2, j).copy_(v.select(2, refl(i - d)).select(2, refl(j - d)));
    return out;
  };
  at::Tensor want = torch::zeros({3, 4});
  for (const at::Tensor& v : {x, flip})
    for (int d : {0, 1, -1}) want += p(d == 0 ? v : shift(v, d));
  want /= 6;
  EXPECT_TRUE(torch::allclose(eval::tta_log_probs(f, x, eval::Tta::FlipTranslate).exp(), want, 1e-5, 1e-6));
  EXPECT_EQ(eval::parse_tta("flip_translate"), eval::Tta::FlipTranslate);
  EXPECT_THROW(eval::parse_tta("rotate"), std::exception);
}
