// Unit tests for checkpoints: round trip of every field, bit-exact continuation of SGD with momentum and
// of the RNG, corrupt/truncated/missing files, fallback to an older checkpoint, pruning, the directory
// lock, leftovers of killed saves, a full disk during a save, and the resume config rules.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>
#include <fstream>

#include "common/config.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "model/device.h"
#include "model/wide_resnet.h"
#include "support/synth.h"
#include "support/testutil.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
struct Rig {
  model::WideResNet net{model::WrnConfig{10, 1, 0.3, 100}};
  Config cfg;
  std::unique_ptr<torch::optim::SGD> opt;
  std::vector<torch::Tensor> params;
  explicit Rig(uint64_t seed) {
    torch::manual_seed(seed);
    net = model::WideResNet(model::WrnConfig{10, 1, 0.3, 100});
    opt = train::make_sgd(*net, cfg);
    params = net->parameters();
  }
  // One training step on a fixed batch; dropout draws from torch's generator, which checkpoints restore.
  void step_with_model_rng(int k) {
    auto x = torch::ones({8, 3, 32, 32}) * (0.1 * k);
    auto y = torch::arange(8) * 3;
    net->train();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    opt->zero_grad();
    loss.backward();
    opt->step();
  }
};

train::TrainState sample_state() {
  train::TrainState s;
  s.epoch = 3;
  s.batch = 17;
  s.step = 1234;
  s.loss_sum = 123.456789012345;
  s.hit_sum = 42.25;
  s.seen = 2176;
  s.train_seconds = 9.5;
  s.es_best = 0.61;
  s.es_best_epoch = 2;
  s.es_bad_epochs = 1;
  s.best_epoch = 2;
  s.best_val_top1 = 0.61;
  train::EpochMetrics m;
  m.epoch = 1;
  m.lr = 0.05;
  m.train_loss = 3.25;
  m.has_val = true;
  m.val_top1 = 0.5;
  s.history = {m, m};
  s.history[1].epoch = 2;
  return s;
}

void flip_byte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x20));
}
}  // namespace

TEST(Checkpoint, RoundTripOfEveryField) {
  const std::string dir = temp_dir("ckpt-roundtrip");
  Rig a(1);
  a.step_with_model_rng(1);
  train::Checkpointer ck(dir + "/ck", 2);
  auto snap = train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "epoch");
  const std::string path = ck.save(snap, false);
  EXPECT_EQ(stdfs::path(path).filename().string(), "ckpt-000001234");
  for (const char* f : {"state.safetensors", "meta.json", "SHA256SUMS"}) EXPECT_TRUE(stdfs::exists(path + "/" + f)) << f;

  auto back = train::Checkpointer::load(path);
  EXPECT_EQ(back.state.epoch, 3);
  EXPECT_EQ(back.state.batch, 17);
  EXPECT_EQ(back.state.step, 1234);
  EXPECT_EQ(back.state.loss_sum, 123.456789012345);  // exact: meters continue bit for bit
  EXPECT_EQ(back.state.seen, 2176);
  EXPECT_EQ(back.state.es_bad_epochs, 1);
  EXPECT_EQ(back.state.history.size(), 2u);
  EXPECT_EQ(back.state.history[1].epoch, 2);
  EXPECT_EQ(back.reason, "epoch");
  EXPECT_EQ(back.config["depth"], 28);
  ASSERT_EQ(back.model.size(), snap.model.size());
  for (size_t i = 0; i < snap.model.size(); ++i) EXPECT_TRUE(torch::equal(back.model[i].second, snap.model[i].second));
  ASSERT_EQ(back.momentum.size(), a.params.size());
  for (size_t i = 0; i < snap.momentum.size(); ++i) EXPECT_TRUE(torch::equal(back.momentum[i], snap.momentum[i]));
  EXPECT_TRUE(torch::equal(back.rng_cpu, snap.rng_cpu));
}

TEST(Checkpoint, RestoredTrainingContinuesBitForBit) {
  const std::string dir = temp_dir("ckpt-exact");
  Rig a(7);
  a.step_with_model_rng(1);
  a.step_with_model_rng(2);
  auto snap = train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "time");
  train::Checkpointer ck(dir, 2);
  auto back = train::Checkpointer::load(ck.save(snap, false));
  a.step_with_model_rng(3);  // uses momentum and dropout's generator
  a.step_with_model_rng(4);

  Rig b(99);  // different initialisation, generator and no momentum until restored
  train::restore(back, *b.net, *b.opt, b.params);
  b.step_with_model_rng(3);
  b.step_with_model_rng(4);
  auto sa = model::state_dict(*a.net), sb = model::state_dict(*b.net);
  for (size_t i = 0; i < sa.size(); ++i) ASSERT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(Checkpoint, CorruptTruncatedAndMissingFilesAreDetected) {
  const std::string dir = temp_dir("ckpt-corrupt");
  Rig a(1);
  train::Checkpointer ck(dir, 5);
  auto snap = train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "epoch");
  const std::string p = ck.save(snap, false);
  flip_byte(p + "/state.safetensors", 5000);
  auto msg = error_of([&] { train::Checkpointer::load(p); });
  EXPECT_NE(msg.find("state.safetensors is corrupt (its SHA-256 does not match SHA256SUMS)"), std::string::npos) << msg;
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  flip_byte(p + "/state.safetensors", 5000);  // flip back: valid again
  EXPECT_NO_THROW(train::Checkpointer::load(p));
  stdfs::resize_file(p + "/meta.json", 100);
  msg = error_of([&] { train::Checkpointer::load(p); });
  EXPECT_NE(msg.find("meta.json is corrupt"), std::string::npos) << msg;
  stdfs::remove(p + "/SHA256SUMS");
  msg = error_of([&] { train::Checkpointer::load(p); });
  EXPECT_NE(msg.find("incomplete: SHA256SUMS is missing"), std::string::npos) << msg;
}

TEST(Checkpoint, NewestValidWinsAndNothingIsDeletedWhenNoneIsValid) {
  const std::string dir = temp_dir("ckpt-latest");
  Rig a(1);
  std::vector<std::string> paths;
  {
    train::Checkpointer ck(dir, 5);
    for (int64_t step : {100, 200, 300}) {
      auto st = sample_state();
      st.step = step;
      paths.push_back(ck.save(train::capture(*a.net, *a.opt, a.params, st, a.cfg.to_json(), "epoch"), false));
    }
  }
  std::vector<std::string> problems;
  EXPECT_EQ(train::Checkpointer::load_latest(dir, problems)->second.state.step, 300);
  EXPECT_TRUE(problems.empty());
  stdfs::resize_file(paths[2] + "/state.safetensors", 1000);  // truncated newest
  stdfs::remove(paths[1] + "/meta.json");            // missing file in the next
  auto found = train::Checkpointer::load_latest(dir, problems);
  EXPECT_EQ(found->second.state.step, 100);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("ckpt-000000300"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("meta.json is missing"), std::string::npos) << problems[1];
  flip_byte(paths[0] + "/meta.json", 10);
  problems.clear();
  auto msg = error_of([&] { train::Checkpointer::load_latest(dir, problems); });
  EXPECT_NE(msg.find("none of the 3 checkpoints"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nothing was deleted"), std::string::npos) << msg;
  for (const auto& p : paths) EXPECT_TRUE(stdfs::exists(p)) << p;
  EXPECT_FALSE(train::Checkpointer::load_latest(dir + "/empty", problems).has_value());
}

TEST(Checkpoint, KeepsTheNewestKPlusTheBest) {
  const std::string dir = temp_dir("ckpt-prune");
  Rig a(1);
  train::Checkpointer ck(dir, 2);
  for (int64_t step = 1; step <= 5; ++step) {
    auto st = sample_state();
    st.step = step * 10;
    auto snap = train::capture(*a.net, *a.opt, a.params, st, a.cfg.to_json(), "epoch");
    ck.save_async(snap, step == 2 || step == 3);  // best at steps 20 and 30
    ck.save_async(snap, false);
  }
  EXPECT_EQ(ck.wait(), "");
  std::vector<std::string> names;
  for (const auto& p : train::Checkpointer::list(dir)) names.push_back(stdfs::path(p).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-000000050", "ckpt-000000040", "best-000000030"}));
}

TEST(Checkpoint, OneWriterPerDirectoryAndKilledSavesAreCleanedUp) {
  const std::string dir = temp_dir("ckpt-lock");
  stdfs::create_directories(dir + "/.tmp-ckpt-000000010-123");
  {
    train::Checkpointer first(dir, 2);
    EXPECT_FALSE(stdfs::exists(dir + "/.tmp-ckpt-000000010-123"));
    auto msg = error_of([&] { train::Checkpointer second(dir, 2); });
    EXPECT_NE(msg.find("in use by another cifar100 process"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(train::Checkpointer again(dir, 2));
}

namespace {
// fork(), where the child runs LibTorch single-threaded: it has none of its parent's OpenMP worker threads,
// and libgomp is not fork-safe (a parallel region in the child, such as LibTorch 2.x's tensor copies, would
// wait for the missing threads forever).
pid_t fork_single_threaded() {
  const pid_t pid = ::fork();
  if (pid == 0) torch::set_num_threads(1);
  return pid;
}
}  // namespace

TEST(Checkpoint, FullDiskFailsTheSaveAndKeepsOlderCheckpoints) {
  const std::string dir = temp_dir("ckpt-full");
  Rig a(1);
  std::string older;
  {
    train::Checkpointer ck(dir, 5);
    older = ck.save(train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "epoch"), false);
  }
  // A child process whose files may not grow beyond 64 KiB: writes fail as on a full disk (EFBIG).
  const pid_t pid = fork_single_threaded();
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {64 << 10, 64 << 10};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    int code = 3;
    try {
      train::Checkpointer ck(dir, 5);
      auto st = sample_state();
      st.step = 9999;
      ck.save(train::capture(*a.net, *a.opt, a.params, st, a.cfg.to_json(), "epoch"), false);
      code = 0;  // must not happen
    } catch (const Error& e) {
      const std::string m = e.what();
      code = (m.find("was not written") != std::string::npos && m.find("older checkpoints are untouched") != std::string::npos) ? 1 : 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "0: the save succeeded; 2: wrong message; 3: crashed";
  EXPECT_NO_THROW(train::Checkpointer::load(older));
  for (const auto& e : stdfs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(n == ".lock" || n == "ckpt-000001234") << n;
  }
}

TEST(Checkpoint, ResumeConfigRules) {
  Config saved;
  saved.apply_overrides({"depth=16", "width=2", "epochs=10"});
  Config same = saved;
  EXPECT_NO_THROW(train::check_resume_config(same, saved.to_json(), "c", false));
  Config env_only = saved;  // where data lives and how many threads run may change freely
  env_only.apply_overrides({"threads=7", "data_dir=/elsewhere", "log_interval=3"});
  EXPECT_NO_THROW(train::check_resume_config(env_only, saved.to_json(), "c", false));
  Config longer = saved;  // a longer schedule is allowed (with a warning)
  longer.apply_overrides({"epochs=20"});
  EXPECT_NO_THROW(train::check_resume_config(longer, saved.to_json(), "c", false));
  Config other = saved;
  other.apply_overrides({"dropout=0.1", "seed=3"});
  auto msg = error_of([&] { train::check_resume_config(other, saved.to_json(), "ck-1", false); });
  EXPECT_NE(msg.find("checkpoint 'ck-1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dropout (0.3 -> 0.1)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("seed (42 -> 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--allow-config-change"), std::string::npos) << msg;
  EXPECT_THROW(train::check_resume_config(other, saved.to_json(), "c", false), ConfigError);
  EXPECT_NO_THROW(train::check_resume_config(other, saved.to_json(), "c", true));
}

namespace {
// Rewrites one file of a checkpoint and its line in SHA256SUMS, so that the checksums pass and the parsing
// behind them is what gets tested.
void replace_checked(const std::string& ckpt, const std::string& file, const std::string& content) {
  fs::write_atomic(ckpt + "/" + file, content);
  std::string sums;
  for (const char* f : {"state.safetensors", "meta.json"}) {
    const auto b = fs::read_bytes(ckpt + "/" + f);
    sums += hash::sha256(b.data(), b.size()) + "  " + f + "\n";
  }
  fs::write_atomic(ckpt + "/SHA256SUMS", sums);
}
}  // namespace

TEST(Checkpoint, SameStepReplacementNeverLeavesTheNameEmpty) {
  const std::string dir = temp_dir("ckpt-swap");
  Rig a(1);
  auto first = train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "epoch");
  auto second = train::capture(*a.net, *a.opt, a.params, sample_state(), a.cfg.to_json(), "signal");
  const pid_t pid = fork_single_threaded();
  if (pid == 0) {
    train::Checkpointer ck(dir, 5);
    ck.save(first, false);
    ::setenv("CIFAR100_TEST_ABORT_AFTER_SWAP", "1", 1);
    ck.save(second, false);  // the same step: replaced, and the process dies right after the swap
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) << "the save did not reach the replacement";
  std::vector<std::string> problems;
  const auto found = train::Checkpointer::load_latest(dir, problems);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(found->second.state.step, 1234);
  EXPECT_EQ(found->second.reason, "signal");  // the new one is in place; the old one is a leftover
  train::Checkpointer again(dir, 5);         // which the next start removes
  for (const auto& e : stdfs::directory_iterator(dir))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
}

TEST(Checkpoint, MalformedCheckpointsWithValidChecksumsFallBackToTheOlderOne) {
  const std::string dir = temp_dir("ckpt-fuzz");
  Rig a(1);
  std::string good, bad;
  {
    train::Checkpointer ck(dir, 5);
    auto st = sample_state();
    st.step = 100;
    good = ck.save(train::capture(*a.net, *a.opt, a.params, st, a.cfg.to_json(), "epoch"), false);
    st.step = 200;
    bad = ck.save(train::capture(*a.net, *a.opt, a.params, st, a.cfg.to_json(), "epoch"), false);
  }
  const std::string meta_text = fs::read_text(bad + "/meta.json");
  const auto state_bytes = fs::read_bytes(bad + "/state.safetensors");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(state_bytes[static_cast<size_t>(i)]) << (8 * i);
  const std::string header_text(state_bytes.begin() + 8, state_bytes.begin() + 8 + static_cast<std::ptrdiff_t>(hlen));
  const std::string data(state_bytes.begin() + 8 + static_cast<std::ptrdiff_t>(hlen), state_bytes.end());
  auto with_header = [&](const std::string& h) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
    return out + h + data;
  };

  std::vector<std::pair<std::string, std::string>> cases;  // (file, content)
  auto meta_edit = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(meta_text);
    edit(j);
    cases.emplace_back("meta.json", j.dump());
  };
  meta_edit([](auto& j) { j.erase("state"); });
  meta_edit([](auto& j) { j.erase("parameters"); });
  meta_edit([](auto& j) { j.erase("config"); });
  meta_edit([](auto& j) { j["parameters"] = "many"; });
  meta_edit([](auto& j) { j["parameters"] = -1; });
  meta_edit([](auto& j) { j["parameters"] = uint64_t{1} << 62; });
  meta_edit([](auto& j) { j["format"] = "one"; });
  meta_edit([](auto& j) { j["state"]["epoch"] = "three"; });
  meta_edit([](auto& j) { j["state"]["history"] = 5; });
  meta_edit([](auto& j) { j["state"] = nlohmann::json::array(); });
  meta_edit([](auto& j) { j = nlohmann::json::array(); });
  cases.emplace_back("meta.json", "null");
  cases.emplace_back("meta.json", "");
  auto header_edit = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto h = nlohmann::json::parse(header_text);
    edit(h);
    cases.emplace_back("state.safetensors", with_header(h.dump()));
  };
  auto first_tensor = [](nlohmann::json& h) -> nlohmann::json& {
    for (auto& [k, v] : h.items())
      if (k != "__metadata__") return v;
    throw std::runtime_error("no tensor");
  };
  header_edit([&](auto& h) { first_tensor(h)["shape"] = {4294967296LL, 4294967296LL}; });
  header_edit([&](auto& h) { first_tensor(h)["shape"] = {-1}; });
  header_edit([&](auto& h) { first_tensor(h)["shape"] = std::vector<int>(9, 1); });
  header_edit([&](auto& h) { first_tensor(h)["shape"] = "big"; });
  header_edit([&](auto& h) { first_tensor(h)["data_offsets"] = {0, uint64_t{1} << 63}; });
  header_edit([&](auto& h) { first_tensor(h)["data_offsets"] = {5}; });
  header_edit([&](auto& h) { first_tensor(h)["dtype"] = "Q8"; });
  header_edit([&](auto& h) {
    nlohmann::json t = first_tensor(h);
    h.erase(h.begin());
    h["momentum/abc"] = t;
  });
  header_edit([&](auto& h) {
    nlohmann::json t = first_tensor(h);
    h.erase(h.begin());
    h["momentum/99999999999999999999"] = t;
  });
  header_edit([](auto& h) { h = nlohmann::json::array(); });
  header_edit([](auto& h) { h["__metadata__"] = {{"format", 7}}; });
  {
    std::string huge = with_header(header_text);
    huge[7] = '\x7f';  // header length 2^63-ish
    cases.emplace_back("state.safetensors", huge);
  }
  const size_t hand_made = cases.size();
  // Random byte changes in meta.json and in the safetensors header (seeded).
  std::mt19937 rng(13);
  for (int i = 0; i < 60; ++i) {
    std::string m = meta_text;
    m[rng() % m.size()] = static_cast<char>(rng() % 256);
    cases.emplace_back("meta.json", m);
    std::string h = header_text;
    h[rng() % h.size()] = static_cast<char>(rng() % 256);
    cases.emplace_back("state.safetensors", with_header(h));
  }

  size_t rejected = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    replace_checked(bad, "meta.json", meta_text);
    replace_checked(bad, "state.safetensors", std::string(state_bytes.begin(), state_bytes.end()));
    replace_checked(bad, cases[i].first, cases[i].second);
    std::vector<std::string> problems;
    std::optional<std::pair<std::string, train::Snapshot>> found;
    ASSERT_NO_THROW(found = train::Checkpointer::load_latest(dir, problems)) << "case " << i << " (" << cases[i].first << ")";
    ASSERT_TRUE(found.has_value());
    if (found->first == good) {
      rejected += i < hand_made;
      ASSERT_EQ(problems.size(), 1u) << i;
      EXPECT_NE(problems[0].find("ckpt-000000200"), std::string::npos) << problems[0];
    } else {
      ASSERT_GE(i, hand_made) << "hand-made case " << i << " was accepted";
      EXPECT_EQ(found->second.state.step, 200) << i;  // a harmless random change (a byte of a date, say)
    }
  }
  EXPECT_EQ(rejected, hand_made);
}

// grad_clip through the trainer: the first SGD step (Nesterov, momentum 0.9, no weight decay) moves the
// weights by lr * (1 + momentum) * g, so with clipping the step's norm is lr * 1.9 * grad_clip exactly: the
// global norm of all gradients together, not tensor by tensor. Without clipping it is far larger.
TEST(Trainer, GradClipBoundsTheGlobalGradientNormOfAStep) {
  auto step_norm = [](const std::string& clip) {
    Config cfg;
    cfg.apply_overrides({"depth=10", "width=1", "dropout=0", "batch_size=32", "lr_reference_batch=32", "lr=0.1",
                         "min_lr=0", "warmup_epochs=0", "epochs=1", "weight_decay=0", "mixup_alpha=0",
                         "label_smoothing=0", "val_size=0", "precision=fp32", "threads=2", "workers=0",
                         "augment=none", "grad_clip=" + clip});
    cfg.validate();
    const model::Runtime rt = model::setup_runtime(cfg);
    torch::manual_seed(5);
    model::WideResNet net(model::WrnConfig{10, 1, 0.0, 100});
    std::vector<torch::Tensor> before;
    for (const auto& p : net->parameters()) before.push_back(p.detach().clone());
    train::RunDir run(temp_dir("clip") + "/run", false, false);
    train::Trainer trainer(cfg, rt, net, &run, nullptr);
    const data::Split split = synth::make_split(32, 10, 1);
    std::vector<int64_t> idx(32);
    std::iota(idx.begin(), idx.end(), 0);
    trainer.fit(split, idx, {});
    double sq = 0;
    const auto after = net->parameters();
    for (size_t i = 0; i < after.size(); ++i) sq += (after[i].detach() - before[i]).pow(2).sum().item<double>();
    return std::sqrt(sq);
  };
  const double clipped = step_norm("0.01");
  EXPECT_NEAR(clipped, 0.1 * 1.9 * 0.01, 0.1 * 1.9 * 0.01 * 1e-3);
  const double free = step_norm("0");
  EXPECT_GT(free, 10 * clipped) << "the gradient was small anyway: the test would not see clipping";
}
