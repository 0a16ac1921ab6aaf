// Unit tests for model artifacts (write, load, replace, every load failure), the inference engine (batch
// norm folding gives the module's logits) and the evaluation report against hand-computed metrics.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fsutil.h"
#include "eval/report.h"
#include "model/artifact.h"
#include "model/inference.h"
#include "model/safetensors.h"
#include "support/testutil.h"
#include "support/torch_helpers.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
model::WideResNet random_net(int64_t depth, int64_t width) {
  torch::manual_seed(7);
  model::WideResNet net(model::WrnConfig{depth, width, 0.0, 100});
  synth::randomize_batchnorm(*net);
  net->eval();
  return net;
}

nlohmann::json read_json(const std::string& p) { return nlohmann::json::parse(fs::read_text(p)); }
void write_json(const std::string& p, const nlohmann::json& j) { fs::write_atomic(p, j.dump(2)); }
}  // namespace

TEST(Artifact, RoundTripGivesIdenticalLogits) {
  const std::string dir = temp_dir("artifact") + "/model";
  model::WideResNet net = random_net(10, 2);
  model::ArtifactInfo info = model::default_info(net->config());
  info.metrics = {{"test_top1", 0.42}};
  info.training_config = {{"epochs", 3}};
  model::write_artifact(dir, *net, info);
  for (const char* f : {"model.safetensors", "model.pt", "config.json"}) EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  // Nothing but the artifact is left next to it.
  int entries = 0;
  for (const auto& e : stdfs::directory_iterator(stdfs::path(dir).parent_path())) entries += e.exists() ? 1 : 0;
  EXPECT_EQ(entries, 1);

  model::Artifact a = model::load_artifact(dir);
  EXPECT_EQ(a.info.arch.depth, 10);
  EXPECT_EQ(a.info.arch.width, 2);
  EXPECT_EQ(a.info.class_names.size(), 100u);
  EXPECT_EQ(a.info.class_names[99], "worm");
  EXPECT_EQ(a.info.coarse_names.size(), 20u);
  EXPECT_DOUBLE_EQ(a.info.metrics["test_top1"].get<double>(), 0.42);
  EXPECT_EQ(a.info.training_config["epochs"], 3);
  torch::NoGradGuard g;
  const at::Tensor x = torch::randn({4, 3, 32, 32});
  EXPECT_TRUE(torch::equal(net->forward(x), a.net->forward(x)));
  // The file's metadata names the format for Hugging Face tools.
  EXPECT_EQ(model::safetensors::read(dir + "/model.safetensors").metadata.at("format"), "pt");
}

TEST(Artifact, FoldedBatchNormGivesTheModulesLogits) {
  for (int64_t width : {1, 4}) {  // width 1: no projection shortcut in the first block
    model::WideResNet net = random_net(10, width);
    const std::string dir = temp_dir("fold" + std::to_string(width)) + "/m";
    model::write_artifact(dir, *net, model::default_info(net->config()));
    const model::Artifact a = model::load_artifact(dir);
    const at::Tensor u8 = torch::randint(0, 256, {6, 32, 32, 3}, torch::kUInt8);
    model::InferenceOptions plain;
    plain.fold_batchnorm = false;
    const model::InferenceModel folded(a, {}), unfolded(a, plain);
    const at::Tensor lf = folded.logits_u8(u8), lu = unfolded.logits_u8(u8);
    EXPECT_EQ(lf.sizes(), (std::vector<int64_t>{6, 100}));
    EXPECT_LE((lf - lu).abs().max().item<float>(), 1e-4f * std::max(1.0f, lu.abs().max().item<float>()));
    EXPECT_NE(folded.describe().find("folded"), std::string::npos);
    // The same images given as normalised floats by hand.
    at::Tensor x = u8.permute({0, 3, 1, 2}).to(torch::kFloat32) / 255.0;
    x = (x - torch::tensor({0.5071f, 0.4865f, 0.4409f}).view({1, 3, 1, 1})) /
        torch::tensor({0.2673f, 0.2564f, 0.2762f}).view({1, 3, 1, 1});
    torch::NoGradGuard g;
    EXPECT_LE((net->forward(x) - lf).abs().max().item<float>(), 1e-4f * std::max(1.0f, lu.abs().max().item<float>()));
  }
}

TEST(Artifact, ReplacesAnArtifactButNotOtherFiles) {
  const std::string root = temp_dir("replace");
  model::WideResNet a = random_net(10, 1), b = random_net(10, 2);
  model::write_artifact(root + "/m", *a, model::default_info(a->config()));
  model::write_artifact(root + "/m", *b, model::default_info(b->config()));
  EXPECT_EQ(model::load_artifact(root + "/m").info.arch.width, 2);
  int entries = 0;
  for (const auto& e : stdfs::directory_iterator(root)) entries += e.is_directory() ? 1 : 0;
  EXPECT_EQ(entries, 1);  // the old copy is gone
  fs::make_dirs(root + "/other");
  fs::write_atomic(root + "/other/notes.txt", "mine");
  const std::string e = error_of([&] { model::write_artifact(root + "/other", *a, model::default_info(a->config())); });
  EXPECT_NE(e.find("holds other files"), std::string::npos) << e;
  EXPECT_EQ(fs::read_text(root + "/other/notes.txt"), "mine");
}

TEST(Artifact, LoadFailuresNameTheFileAndTheProblem) {
  const std::string root = temp_dir("badartifact");
  model::WideResNet net = random_net(10, 2);
  const std::string good = root + "/good";
  model::write_artifact(good, *net, model::default_info(net->config()));
  auto copy = [&](const std::string& name) {
    const std::string d = root + "/" + name;
    stdfs::copy(good, d, stdfs::copy_options::recursive);
    return d;
  };
  // Missing config.json / not a directory.
  EXPECT_NE(error_of([&] { model::load_artifact(root + "/nope"); }).find("does not exist"), std::string::npos);
  {
    const std::string d = copy("noconfig");
    stdfs::remove(d + "/config.json");
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("no config.json"), std::string::npos);
  }
  // config.json: invalid JSON, a missing field, a wrong type, an architecture that does not match the weights.
  {
    const std::string d = copy("badjson");
    fs::write_atomic(d + "/config.json", "{\"format\": ");
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("not valid JSON"), std::string::npos);
  }
  {
    const std::string d = copy("nofield");
    auto j = read_json(d + "/config.json");
    j.erase("width");
    write_json(d + "/config.json", j);
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("missing field 'width'"), std::string::npos);
  }
  {
    const std::string d = copy("wrongtype");
    auto j = read_json(d + "/config.json");
    j["depth"] = "sixteen";
    write_json(d + "/config.json", j);
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("'depth' has the wrong type"), std::string::npos);
  }
  {
    const std::string d = copy("wider");
    auto j = read_json(d + "/config.json");
    j["width"] = 4;
    write_json(d + "/config.json", j);
    const std::string e = error_of([&] { model::load_artifact(d); });
    EXPECT_NE(e.find("has shape [32, 16, 3, 3]"), std::string::npos) << e;
    EXPECT_NE(e.find("WRN-10-4"), std::string::npos) << e;
  }
  {
    const std::string d = copy("deeper");
    auto j = read_json(d + "/config.json");
    j["depth"] = 16;
    write_json(d + "/config.json", j);
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("has no tensor 'layer1.1.bn1.weight'"), std::string::npos);
  }
  // model.safetensors: truncated, and a tensor of the wrong dtype.
  {
    const std::string d = copy("truncated");
    auto bytes = fs::read_bytes(d + "/model.safetensors");
    bytes.resize(bytes.size() - 100);
    fs::write_atomic(d + "/model.safetensors", bytes.data(), bytes.size());
    const std::string e = error_of([&] { model::load_artifact(d); });
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  }
  {
    const std::string d = copy("dtype");
    auto f = model::safetensors::read(d + "/model.safetensors");
    for (auto& [name, t] : f.tensors)
      if (name == "fc.weight") t = t.to(torch::kFloat64);
    model::safetensors::write(d + "/model.safetensors", f.tensors, f.metadata);
    const std::string e = error_of([&] { model::load_artifact(d); });
    EXPECT_NE(e.find("'fc.weight' is Double, expected Float"), std::string::npos) << e;
  }
  {
    const std::string d = copy("extra");
    auto f = model::safetensors::read(d + "/model.safetensors");
    f.tensors.emplace_back("head.extra", torch::zeros({2}));
    model::safetensors::write(d + "/model.safetensors", f.tensors, f.metadata);
    EXPECT_NE(error_of([&] { model::load_artifact(d); }).find("'head.extra' that WRN-10-2 does not have"),
              std::string::npos);
  }
  EXPECT_EQ(error_of([&] { model::load_artifact(good); }), "");
}

TEST(Report, MetricsMatchHandComputedValues) {
  // 4 images, 6 classes. Predictions: 0 (hit, conf .65), 0 (miss, .55), 0 (miss, .3), 2 (hit, .9).
  const std::vector<std::vector<double>> p = {{0.65, 0.1, 0.1, 0.05, 0.05, 0.05},
                                              {0.55, 0.2, 0.1, 0.05, 0.05, 0.05},
                                              {0.3, 0.25, 0.2, 0.15, 0.07, 0.03},
                                              {0.04, 0.04, 0.9, 0.01, 0.005, 0.005}};
  at::Tensor lp = torch::empty({4, 6}, torch::kFloat64);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j) lp[i][j] = std::log(p[i][j]);
  const std::vector<int64_t> labels = {0, 1, 5, 2}, coarse = {0, 0, 2, 1};
  const std::vector<int> f2c = {0, 0, 1, 1, 2, 2};
  const eval::Report r = eval::make_report(lp, labels, coarse, f2c, 5);
  EXPECT_EQ(r.count, 4);
  EXPECT_DOUBLE_EQ(r.top1, 0.5);
  EXPECT_DOUBLE_EQ(r.top5, 0.75);  // class 5 of image 2 is its least likely class
  EXPECT_NEAR(r.loss, -(std::log(0.65) + std::log(0.2) + std::log(0.03) + std::log(0.9)) / 4, 1e-12);
  EXPECT_DOUBLE_EQ(r.coarse_top1, 0.75);  // image 1's wrong class 0 is in its superclass 0
  // Confusion matrix: row = true class, column = predicted.
  std::vector<int64_t> want(36, 0);
  want[0 * 6 + 0] = 1, want[1 * 6 + 0] = 1, want[5 * 6 + 0] = 1, want[2 * 6 + 2] = 1;
  EXPECT_EQ(r.confusion, want);
  EXPECT_EQ(r.class_count, (std::vector<int64_t>{1, 1, 1, 0, 0, 1}));
  EXPECT_EQ(r.class_correct, (std::vector<int64_t>{1, 0, 1, 0, 0, 0}));
  // ECE over 5 bins: one image in each of (.2,.4], (.4,.6], (.6,.8], (.8,1]: (.3 + .55 + .35 + .1) / 4.
  EXPECT_NEAR(r.ece, 0.325, 1e-9);
  EXPECT_EQ(r.bins[0].count, 0);
  EXPECT_EQ(r.bins[1].count, 1);
  EXPECT_NEAR(r.bins[3].confidence, 0.65, 1e-9);
  EXPECT_DOUBLE_EQ(r.bins[4].accuracy, 1.0);
  // JSON and files carry the same numbers.
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f,g"};
  const auto j = eval::to_json(r, names);
  EXPECT_EQ(j["confusion_matrix"][5][0], 1);
  EXPECT_EQ(j["per_class"][2]["name"], "c");
  const std::string dir = temp_dir("report");
  eval::write_confusion_csv(dir + "/c.csv", r, names);
  const std::string csv = fs::read_text(dir + "/c.csv");
  EXPECT_NE(csv.find("true\\predicted,a,b,c,d,e,\"f,g\"\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n\"f,g\",1,0,0,0,0,0\n"), std::string::npos) << csv;
  eval::write_per_class_csv(dir + "/p.csv", r, names);
  EXPECT_NE(fs::read_text(dir + "/p.csv").find("2,c,1,1,1.0000\n"), std::string::npos);
  eval::write_confusion_png(dir + "/c.png", r, names);
  EXPECT_GT(fs::read_bytes(dir + "/c.png").size(), 100u);
}
