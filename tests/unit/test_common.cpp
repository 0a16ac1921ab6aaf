// Unit tests for src/common: config table and precedence, RNG, checksums, atomic files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "support/testutil.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/rng.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  std::string p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}
}  // namespace

TEST(Config, DefaultsMatchTheSeedRecipe) {
  Config c;
  EXPECT_EQ(c.i("depth"), 28);
  EXPECT_EQ(c.i("width"), 10);
  EXPECT_EQ(c.i("epochs"), 100);
  EXPECT_EQ(c.i("batch_size"), 256);
  EXPECT_DOUBLE_EQ(c.f("lr"), 0.1);
  EXPECT_DOUBLE_EQ(c.f("dropout"), 0.3);
  EXPECT_DOUBLE_EQ(c.f("mixup_alpha"), 0.2);
  EXPECT_DOUBLE_EQ(c.f("label_smoothing"), 0.1);
  EXPECT_DOUBLE_EQ(c.f("grad_clip"), 1.0);
  EXPECT_EQ(c.i("early_stopping_patience"), 15);
  EXPECT_EQ(c.i("val_size"), 5000);
  EXPECT_EQ(c.i("train_limit"), 0);
  EXPECT_EQ(c.source("depth"), Source::Default);
  c.validate();
}

TEST(Config, PrecedenceIsCommandLineOverEnvironmentOverFileOverDefault) {
  const std::string dir = temp_dir("prec");
  const std::string yaml = write_file(dir, "c.yaml", "epochs: 7\nthreads: 3\nbatch_size: 64\n");
  ::setenv("CIFAR100_THREADS", "5", 1);
  Config c = resolve_config({"", yaml}, {"batch_size=32"});
  ::unsetenv("CIFAR100_THREADS");
  EXPECT_EQ(c.i("epochs"), 7);  // file over default
  EXPECT_EQ(c.source("epochs"), Source::File);
  EXPECT_EQ(c.i("threads"), 5);  // environment over file
  EXPECT_EQ(c.source("threads"), Source::Env);
  EXPECT_EQ(c.i("batch_size"), 32);  // command line over file
  EXPECT_EQ(c.source("batch_size"), Source::CommandLine);
  EXPECT_EQ(c.i("depth"), 28);
}

TEST(Config, EveryKeyCanBeSetFromTheCommandLine) {
  for (const auto& o : option_table()) {
    Config c;
    std::string v = o.default_value;
    if (o.type == OptType::String && v.empty()) v = "x";
    c.apply_overrides({o.key + "=" + v});
    EXPECT_EQ(c.source(o.key), Source::CommandLine) << o.key;
  }
}

TEST(Config, UnknownKeysAreRejectedWithASuggestion) {
  Config c;
  std::string msg = error_of([&] { c.apply_overrides({"epoch=3"}); });
  EXPECT_NE(msg.find("unknown config key 'epoch'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'epochs'"), std::string::npos) << msg;
  const std::string dir = temp_dir("unknown");
  const std::string yaml = write_file(dir, "c.yaml", "depth: 16\nlearning_rate: 0.1\n");
  msg = error_of([&] { c.load_yaml_file(yaml); });
  EXPECT_NE(msg.find(yaml), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("learning_rate"), std::string::npos) << msg;
  EXPECT_THROW(c.load_yaml_file(yaml), ConfigError);
}

TEST(Config, BadValuesNameTheKeyAndTheRule) {
  Config c;
  auto msg = error_of([&] { c.apply_overrides({"epochs=ten"}); });
  EXPECT_NE(msg.find("'epochs'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"dropout=1.0"}); });
  EXPECT_NE(msg.find("'dropout'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 1)"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"batch_size=0"}); });
  EXPECT_NE(msg.find("between 1 and 65536"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"device=tpu"}); });
  EXPECT_NE(msg.find("auto, cpu, cuda"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"nesterov=maybe"}); });
  EXPECT_NE(msg.find("true or false"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"lr=nan"}); });
  EXPECT_NE(msg.find("finite"), std::string::npos) << msg;
  msg = error_of([&] { c.apply_overrides({"noequals"}); });
  EXPECT_NE(msg.find("key=value"), std::string::npos) << msg;
  // Values stay unchanged after a rejected assignment.
  EXPECT_EQ(c.i("epochs"), 100);
}

TEST(Config, CrossFieldRules) {
  Config c;
  c.apply_overrides({"depth=20"});
  EXPECT_NE(error_of([&] { c.validate(); }).find("6n+4"), std::string::npos);
  Config d;
  d.apply_overrides({"epochs=3", "warmup_epochs=3"});
  EXPECT_NE(error_of([&] { d.validate(); }).find("warmup_epochs"), std::string::npos);
  Config e;
  e.apply_overrides({"archive_md5=xyz"});
  EXPECT_NE(error_of([&] { e.validate(); }).find("32 hexadecimal"), std::string::npos);
}

TEST(Config, YamlRoundTripAndJson) {
  Config c;
  c.apply_overrides({"depth=16", "width=4", "lr=0.05", "data_dir=/tmp/some dir: with colon", "nesterov=false"});
  Config d;
  d.load_yaml_string(c.to_yaml(), "roundtrip");
  EXPECT_TRUE(c.diff(d).empty()) << c.to_yaml();
  auto j = c.to_json();
  EXPECT_EQ(j["depth"], 16);
  EXPECT_EQ(j["nesterov"], false);
  EXPECT_DOUBLE_EQ(j["lr"].get<double>(), 0.05);
  Config e;
  EXPECT_EQ(c.diff(e), (std::vector<std::string>{"depth", "width", "lr", "nesterov", "data_dir"}));
}

TEST(Config, RejectsNonScalarYaml) {
  Config c;
  auto msg = error_of([&] { c.load_yaml_string("depth: [1, 2]\n", "f.yaml"); });
  EXPECT_NE(msg.find("single value"), std::string::npos) << msg;
  msg = error_of([&] { c.load_yaml_string("- a\n- b\n", "f.yaml"); });
  EXPECT_NE(msg.find("mapping"), std::string::npos) << msg;
  msg = error_of([&] { c.load_yaml_string("depth: : :\n  x", "f.yaml"); });
  EXPECT_NE(msg.find("f.yaml"), std::string::npos) << msg;
}

TEST(Rng, IsAPureFunctionOfItsKeys) {
  Rng a(42, Stream::Augment, {3, 7}), b(42, Stream::Augment, {3, 7}), c(42, Stream::Augment, {3, 8});
  const uint64_t x = a.next();
  EXPECT_EQ(x, b.next());
  EXPECT_NE(x, c.next());
  Rng d(42, Stream::Shuffle, {3, 7});
  EXPECT_NE(x, d.next());
}

TEST(Rng, DistributionsHaveTheRightMoments) {
  Rng r(1);
  const int n = 200000;
  double su = 0, sb = 0, sb2 = 0;
  int64_t counts[5] = {0};
  for (int i = 0; i < n; ++i) {
    su += r.uniform();
    ++counts[r.below(5)];
    const double b = r.beta(0.2, 0.2);
    ASSERT_GE(b, 0.0);
    ASSERT_LE(b, 1.0);
    sb += b;
    sb2 += b * b;
  }
  EXPECT_NEAR(su / n, 0.5, 0.005);
  for (auto c : counts) EXPECT_NEAR(static_cast<double>(c) / n, 0.2, 0.005);
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.178571 for a = 0.2.
  EXPECT_NEAR(sb / n, 0.5, 0.005);
  EXPECT_NEAR(sb2 / n - 0.25, 1.0 / (4 * 1.4), 0.005);
}

TEST(Hash, KnownDigests) {
  EXPECT_EQ(hash::md5("abc", 3), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(hash::sha256("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string dir = temp_dir("hash");
  write_file(dir, "f", "abc");
  EXPECT_EQ(hash::md5_file(dir + "/f"), "900150983cd24fb0d6963f7d28e17f72");
}

TEST(Files, AtomicWriteReplacesWholeFilesAndLeavesNoTemporaries) {
  const std::string dir = temp_dir("atomic");
  fs::write_atomic(dir + "/a.txt", "first");
  fs::write_atomic(dir + "/a.txt", "second");
  EXPECT_EQ(fs::read_text(dir + "/a.txt"), "second");
  int entries = 0;
  for (auto& e : stdfs::directory_iterator(dir)) entries += (void(e), 1);
  EXPECT_EQ(entries, 1);
  // A write into a missing directory fails with the path in the message and changes nothing.
  auto msg = error_of([&] { fs::write_atomic(dir + "/missing/b.txt", "x"); });
  EXPECT_NE(msg.find("missing/b.txt"), std::string::npos) << msg;
}

TEST(Files, DefaultCacheFollowsXdg) {
  ::setenv("XDG_CACHE_HOME", "/tmp/xdg-test", 1);
  EXPECT_EQ(fs::default_cache_dir(), "/tmp/xdg-test/cifar100");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(fs::default_cache_dir(), "/home/someone/.cache/cifar100");
}
