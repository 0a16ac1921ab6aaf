// Unit tests for src/cloud/sagemaker: layout detection, hyperparameter mapping and precedence, channels,
// the failure file (and the crash reporter), and the hosting variables.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cloud/sagemaker.h"
#include "common/config.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "data/channels.h"
#include "data/cifar.h"
#include "data/classes.h"
#include "support/synth.h"
#include "support/testutil.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace sm = cifar::cloud::sagemaker;
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {
// The job's channels as the data layer takes them (cli/train.cpp does the same).
std::vector<data::InputChannel> input_channels(const sm::TrainingEnv& env) {
  std::vector<data::InputChannel> out;
  for (const auto& c : env.channels) out.push_back({c.name, c.dir, c.input_mode, c.env_name});
  return out;
}


// Sets environment variables for one test and restores them afterwards.
class Env {
 public:
  void set(const std::string& k, const std::string& v) {
    remember(k);
    ::setenv(k.c_str(), v.c_str(), 1);
  }
  void unset(const std::string& k) {
    remember(k);
    ::unsetenv(k.c_str());
  }
  ~Env() {
    for (const auto& [k, v] : saved_)
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
  }

 private:
  void remember(const std::string& k) {
    for (const auto& s : saved_)
      if (s.first == k) return;
    const char* v = std::getenv(k.c_str());
    saved_.emplace_back(k, v ? std::optional<std::string>(v) : std::nullopt);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

void write(const std::string& path, const std::string& text) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path) << text;
}

// A fake /opt/ml with the given JSON config files ("" = absent).
std::string make_layout(const std::string& name, const std::string& hps, const std::string& idc = "",
                        const std::string& rc = "") {
  const std::string base = temp_dir("sm-" + name);
  stdfs::create_directories(base + "/input/config");
  if (!hps.empty()) write(base + "/input/config/hyperparameters.json", hps);
  if (!idc.empty()) write(base + "/input/config/inputdataconfig.json", idc);
  if (!rc.empty()) write(base + "/input/config/resourceconfig.json", rc);
  return base;
}

// A small split in the official binary format.
void write_split(const std::string& path, int64_t n) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  data::write_split(path, synth::make_split(n, 10, 7));
}

}  // namespace

TEST(SageMaker, LayoutIsFoundUnderSageMakerBaseDir) {
  Env env;
  const std::string base = make_layout("detect", "{}");
  env.set("SAGEMAKER_BASE_DIR", base);
  EXPECT_EQ(sm::base_dir(), base);
  EXPECT_TRUE(sm::training_layout_present());
  // Set to a directory without input/config: a clear error, not a silent local run.
  const std::string empty = temp_dir("sm-empty");
  env.set("SAGEMAKER_BASE_DIR", empty);
  const std::string e = error_of([] { (void)sm::training_layout_present(); });
  EXPECT_NE(e.find("SAGEMAKER_BASE_DIR"), std::string::npos) << e;
  EXPECT_NE(e.find("input/config"), std::string::npos) << e;
  env.unset("SAGEMAKER_BASE_DIR");
  EXPECT_EQ(sm::base_dir(), "/opt/ml");
  EXPECT_EQ(sm::training_layout_present(), stdfs::is_directory("/opt/ml/input/config"));
}

TEST(SageMaker, ReadsTheThreeConfigFilesAndChannels) {
  Env env;
  for (const char* k : {"SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR", "SM_OUTPUT_DIR", "SM_HPS", "SM_CURRENT_HOST", "SM_HOSTS",
                        "SM_CHANNEL_TRAIN", "SM_CHANNEL_TEST", "SM_CHANNEL_EXTRA"})
    env.unset(k);
  env.set("TRAINING_JOB_NAME", "wrn-job-1");
  const std::string base = make_layout(
      "read", R"({"epochs": "3", "lr": "0.05"})",
      R"({"train": {"TrainingInputMode": "FastFile", "S3DistributionType": "FullyReplicated", "ContentType": "application/octet-stream"},
          "test": {"TrainingInputMode": "File"}})",
      R"({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"], "network_interface_name": "eth1"})");
  stdfs::create_directories(base + "/input/data/train");
  stdfs::create_directories(base + "/input/data/test");
  const sm::TrainingEnv e = sm::read_training_env(base);
  EXPECT_EQ(e.job_name, "wrn-job-1");
  EXPECT_EQ(e.hyperparameters["epochs"], "3");
  EXPECT_EQ(e.hyperparameters_origin, base + "/input/config/hyperparameters.json");
  ASSERT_EQ(e.channels.size(), 2u);
  EXPECT_EQ(e.channels[0].name, "test");
  EXPECT_EQ(e.channels[0].input_mode, "File");
  EXPECT_EQ(e.channels[1].name, "train");
  EXPECT_EQ(e.channels[1].input_mode, "FastFile");
  EXPECT_EQ(e.channels[1].distribution, "FullyReplicated");
  EXPECT_EQ(e.channels[1].dir, base + "/input/data/train");
  EXPECT_EQ(e.current_host, "algo-2");
  EXPECT_EQ(e.hosts, (std::vector<std::string>{"algo-1", "algo-2"}));  // sorted: host order is by name
  EXPECT_EQ(e.network_interface, "eth1");
  EXPECT_EQ(e.model_dir, base + "/model");
  EXPECT_EQ(e.output_data_dir, base + "/output/data");
  EXPECT_EQ(e.failure_file, base + "/output/failure");
  EXPECT_EQ(e.checkpoint_dir, base + "/checkpoints");
  EXPECT_NE(e.describe().find("wrn-job-1"), std::string::npos);
}

TEST(SageMaker, ToolkitVariablesOverrideThePaths) {
  Env env;
  const std::string base = make_layout("smvars", "");
  const std::string other = temp_dir("sm-other");
  env.set("SM_MODEL_DIR", other + "/m");
  env.set("SM_OUTPUT_DATA_DIR", other + "/o");
  env.set("SM_OUTPUT_DIR", other + "/out");
  env.set("SM_CHANNEL_EXTRA", other + "/extra");
  env.set("SM_HPS", R"({"epochs": 4})");
  env.set("SM_HOSTS", R"(["algo-1"])");
  env.set("SM_CURRENT_HOST", "algo-1");
  const sm::TrainingEnv e = sm::read_training_env(base);
  EXPECT_EQ(e.model_dir, other + "/m");
  EXPECT_EQ(e.output_data_dir, other + "/o");
  EXPECT_EQ(e.failure_file, other + "/out/failure");
  ASSERT_EQ(e.channels.size(), 1u);
  EXPECT_EQ(e.channels[0].name, "extra");
  EXPECT_EQ(e.channels[0].dir, other + "/extra");
  EXPECT_EQ(e.hyperparameters_origin, "SM_HPS");  // no hyperparameters.json: the toolkit's copy
  EXPECT_EQ(e.hyperparameters["epochs"], 4);
  EXPECT_EQ(e.current_host, "algo-1");
  env.set("SM_HPS", "{not json");
  const std::string err = error_of([&] { (void)sm::read_training_env(base); });
  EXPECT_NE(err.find("SM_HPS is not valid JSON"), std::string::npos) << err;
}

TEST(SageMaker, BadConfigFilesNameTheFile) {
  Env env;
  env.unset("SM_HPS");
  const std::string base = make_layout("badjson", "[1, 2]", "{\"train\": 3}");
  std::string e = error_of([&] { (void)sm::read_training_env(base); });
  EXPECT_NE(e.find("hyperparameters.json: expected a JSON object"), std::string::npos) << e;
  write(base + "/input/config/hyperparameters.json", "{");
  e = error_of([&] { (void)sm::read_training_env(base); });
  EXPECT_NE(e.find("hyperparameters.json is not valid JSON"), std::string::npos) << e;
  write(base + "/input/config/hyperparameters.json", "{}");
  e = error_of([&] { (void)sm::read_training_env(base); });
  EXPECT_NE(e.find("inputdataconfig.json: channel 'train' must be an object"), std::string::npos) << e;
}

TEST(SageMaker, HyperparametersBecomeSettings) {
  const json hps = {{"epochs", "30"}, {"batch-size", "128"}, {"nesterov", true}, {"lr", 0.05},
                    {"config", "wrn28-10"}, {"sagemaker_program", "x"}, {"_tuning_objective_metric", "val_top1"}};
  const sm::Hyperparameters h = sm::map_hyperparameters(hps, "hp.json");
  EXPECT_EQ(h.preset, "wrn28-10");
  EXPECT_EQ(h.ignored, (std::vector<std::string>{"_tuning_objective_metric", "sagemaker_program"}));
  std::map<std::string, std::string> got;
  for (const auto& s : h.settings) got[s.key] = s.value;
  EXPECT_EQ(got, (std::map<std::string, std::string>{
                     {"batch_size", "128"}, {"epochs", "30"}, {"lr", "0.05"}, {"nesterov", "true"}}));
  const std::string e = error_of([] { (void)sm::map_hyperparameters(json{{"augment", json::array({"hflip"})}}, "hp.json"); });
  EXPECT_NE(e.find("hp.json: hyperparameter 'augment' must be a string"), std::string::npos) << e;
  EXPECT_NE(error_of([] { (void)sm::map_hyperparameters(json::array(), "hp.json"); }).find("expected a JSON object"),
            std::string::npos);
}

TEST(SageMaker, HyperparametersFollowTheConfigRulesAndPrecedence) {
  Env env;
  env.set("CIFAR100_THREADS", "3");
  const std::string dir = temp_dir("sm-prec");
  write(dir + "/preset.yaml", "epochs: 7\nthreads: 1\nwidth: 4\nbatch_size: 64\n");
  auto layers = [&](const json& hps) {
    ConfigLayers l;
    l.platform = {{"checkpoint_dir", "/opt/ml/checkpoints", "SageMaker layout"}, {"width", "2", "SageMaker layout"}};
    l.yaml_paths = {dir + "/preset.yaml"};
    l.hyperparameters = sm::map_hyperparameters(hps, "hyperparameters.json").settings;
    return l;
  };
  ConfigLayers l = layers({{"epochs", "9"}, {"threads", "5"}});
  l.overrides = {"threads=6"};
  const Config c = resolve_config(l);
  EXPECT_EQ(c.i("epochs"), 9);   // hyperparameter > YAML
  EXPECT_EQ(c.i("threads"), 6);  // command line > hyperparameter > environment > YAML
  EXPECT_EQ(c.source("threads"), Source::CommandLine);
  EXPECT_EQ(c.source("epochs"), Source::Hyperparameter);
  EXPECT_EQ(c.i("width"), 4);    // YAML > platform
  EXPECT_EQ(c.s("checkpoint_dir"), "/opt/ml/checkpoints");
  EXPECT_EQ(c.source("checkpoint_dir"), Source::Platform);
  EXPECT_EQ(resolve_config(layers({{"epochs", "9"}})).i("threads"), 3);  // environment > YAML
  // Same errors as everywhere: unknown keys with a suggestion, ranges, types.
  std::string e = error_of([&] { (void)resolve_config(layers({{"epoch", "9"}})); });
  EXPECT_NE(e.find("hyperparameters.json (hyperparameter 'epoch'): unknown config key 'epoch' (did you mean 'epochs'?)"),
            std::string::npos)
      << e;
  e = error_of([&] { (void)resolve_config(layers({{"dropout", "1.5"}})); });
  EXPECT_NE(e.find("invalid value '1.5' for 'dropout': must be in [0, 1)"), std::string::npos) << e;
  e = error_of([&] { (void)resolve_config(layers({{"epochs", "ten"}})); });
  EXPECT_NE(e.find("invalid value 'ten' for 'epochs': expected an integer"), std::string::npos) << e;
}

TEST(SageMaker, TrainAndTestChannelsAreLinkedIntoADataSet) {
  Env env;
  for (const char* k : {"SM_CHANNEL_TRAIN", "SM_CHANNEL_TEST"}) env.unset(k);
  const std::string base = make_layout("chan", "{}", R"({"train": {"TrainingInputMode": "FastFile"}, "test": {}})");
  write_split(base + "/input/data/train/cifar-100-binary/train.bin", 40);
  write_split(base + "/input/data/test/test.bin", 20);
  const std::string scratch = temp_dir("sm-scratch");
  const auto settings = data::channel_settings(input_channels(sm::read_training_env(base)), scratch);
  ASSERT_EQ(settings.size(), 1u);
  EXPECT_EQ(settings[0].key, "data_dir");
  const data::Dataset ds = data::read_dataset(settings[0].value);
  EXPECT_EQ(ds.train.size(), 40);
  EXPECT_EQ(ds.test.size(), 20);
  EXPECT_EQ(ds.fine_names[0], data::kFineNames[0]);  // no label files in the channels: the official names
  EXPECT_TRUE(stdfs::is_symlink(data::data_files(settings[0].value).train));
  // A corrupt channel file is named by its channel path, not by the link.
  write(base + "/input/data/train/cifar-100-binary/train.bin", std::string(3075, 'x'));
  const std::string e = error_of([&] { (void)data::read_dataset(settings[0].value); });
  EXPECT_NE(e.find(base + "/input/data/train/cifar-100-binary/train.bin"), std::string::npos) << e;
}

TEST(SageMaker, OneChannelWithTheArchiveOrTheExtractedSet) {
  Env env;
  env.unset("SM_CHANNEL_TRAINING");
  const std::string base = make_layout("arch", "{}");
  write(base + "/input/data/training/cifar-100-binary.tar.gz", "x");
  auto s = data::channel_settings(input_channels(sm::read_training_env(base)), temp_dir("sm-s1"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].key, "archive");
  EXPECT_EQ(s[0].value, base + "/input/data/training/cifar-100-binary.tar.gz");

  const std::string base2 = make_layout("extracted", "{}");
  const std::string d = base2 + "/input/data/cifar/cifar-100-binary";
  write_split(d + "/train.bin", 10);
  write_split(d + "/test.bin", 10);
  write(d + "/fine_label_names.txt", "a\n");
  write(d + "/coarse_label_names.txt", "b\n");
  s = data::channel_settings(input_channels(sm::read_training_env(base2)), temp_dir("sm-s2"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].key, "data_dir");
  EXPECT_EQ(s[0].value, d);

  EXPECT_TRUE(data::channel_settings(input_channels(sm::read_training_env(make_layout("none", "{}"))), temp_dir("sm-s3")).empty());
}

TEST(SageMaker, ChannelProblemsAreNamed) {
  Env env;
  for (const char* k : {"SM_CHANNEL_TRAIN", "SM_CHANNEL_TEST", "SM_CHANNEL_A", "SM_CHANNEL_B"}) env.unset(k);
  const std::string scratch = temp_dir("sm-sp");
  auto problem = [&](const std::string& base) {
    return error_of([&] { (void)data::channel_settings(input_channels(sm::read_training_env(base)), scratch); });
  };
  // Pipe mode.
  std::string base = make_layout("pipe", "{}", R"({"train": {"TrainingInputMode": "Pipe"}})");
  std::string e = problem(base);
  EXPECT_NE(e.find("channel 'train' uses Pipe input mode"), std::string::npos) << e;
  // Declared but missing.
  base = make_layout("missing", "{}", R"({"train": {}, "test": {}})");
  write_split(base + "/input/data/train/train.bin", 5);
  e = problem(base);
  EXPECT_NE(e.find("channel 'test' is declared"), std::string::npos) << e;
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  // Train without test.
  base = make_layout("half", "{}");
  write_split(base + "/input/data/train/train.bin", 5);
  e = problem(base);
  EXPECT_NE(e.find("channel 'train' is given without a 'test' channel"), std::string::npos) << e;
  // Nothing recognisable.
  base = make_layout("junk", "{}");
  write(base + "/input/data/a/readme.txt", "hi");
  e = problem(base);
  EXPECT_NE(e.find("no CIFAR-100 data in the input channels ('a' holds 1 other files (e.g. readme.txt))"),
            std::string::npos)
      << e;
  // Two data sets.
  base = make_layout("two", "{}");
  write(base + "/input/data/a/x.tar.gz", "1");
  write(base + "/input/data/b/y.tar.gz", "2");
  e = problem(base);
  EXPECT_NE(e.find("more than one data set"), std::string::npos) << e;
}

TEST(SageMaker, FailureTextIsOneParagraphOfAtMost1024Bytes) {
  EXPECT_EQ(sm::failure_text("bad value\n  for 'epochs'\n\n"), "bad value for 'epochs'");
  std::string long_msg(1020, 'a');
  long_msg += "\xc3\xa9\xc3\xa9\xc3\xa9";  // three two-byte characters across the limit
  const std::string t = sm::failure_text(long_msg);
  EXPECT_LE(t.size(), 1024u);
  EXPECT_EQ(t.substr(t.size() - 3), "...");
  EXPECT_EQ(t.substr(0, 1020), std::string(1020, 'a'));
  EXPECT_NE(static_cast<unsigned char>(t[t.size() - 4]), 0xc3);  // not cut inside a character
  const std::string dir = temp_dir("sm-fail");
  sm::write_failure(dir + "/output/failure", "it broke\nbadly");
  EXPECT_EQ(fs::read_text(dir + "/output/failure"), "it broke badly");
}

TEST(SageMaker, CrashReporterWritesTheReasonAndTheProcessStillDies) {
  const std::string path = temp_dir("sm-crash") + "/failure";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sm::install_crash_reporter(path);
    ::raise(SIGSEGV);
    ::_exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  const std::string text = fs::read_text(path);
  EXPECT_NE(text.find("cifar100 crashed with SIGSEGV"), std::string::npos) << text;
}

TEST(SageMaker, ServingVariables) {
  Env env;
  for (const char* k : {"SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_SAFE_PORT_RANGE", "SAGEMAKER_BATCH", "SAGEMAKER_MAX_PAYLOAD_IN_MB",
                        "SAGEMAKER_BATCH_STRATEGY", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",
                        "SAGEMAKER_MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_TIMEOUT"})
    env.unset(k);
  sm::ServingEnv s = sm::read_serving_env();
  EXPECT_FALSE(s.bind_port || s.safe_ports || s.batch || s.max_payload_mb || s.workers || s.timeout_s);
  env.set("SAGEMAKER_BIND_TO_PORT", "9090");
  env.set("SAGEMAKER_SAFE_PORT_RANGE", "9000-9999");
  env.set("SAGEMAKER_BATCH", "TRUE");
  env.set("SAGEMAKER_MAX_PAYLOAD_IN_MB", "20");
  env.set("SAGEMAKER_BATCH_STRATEGY", "SingleRecord");
  env.set("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "4");
  env.set("SAGEMAKER_MODEL_SERVER_WORKERS", "2");
  env.set("SAGEMAKER_MODEL_SERVER_TIMEOUT", "120");
  s = sm::read_serving_env();
  EXPECT_EQ(*s.bind_port, 9090);
  EXPECT_EQ(*s.safe_ports, std::make_pair(9000, 9999));
  EXPECT_TRUE(s.batch);
  EXPECT_EQ(*s.max_payload_mb, 20);
  EXPECT_EQ(s.batch_strategy, "SINGLE_RECORD");
  EXPECT_EQ(*s.max_concurrent_transforms, 4);
  EXPECT_EQ(*s.workers, 2);
  EXPECT_EQ(*s.timeout_s, 120);
  const std::vector<std::pair<const char*, const char*>> bad = {
      {"SAGEMAKER_BIND_TO_PORT", "80000"},       {"SAGEMAKER_SAFE_PORT_RANGE", "9999-9000"},
      {"SAGEMAKER_SAFE_PORT_RANGE", "9000"},     {"SAGEMAKER_BATCH", "maybe"},
      {"SAGEMAKER_MAX_PAYLOAD_IN_MB", "101"},    {"SAGEMAKER_BATCH_STRATEGY", "ALL"},
      {"SAGEMAKER_MODEL_SERVER_WORKERS", "0"},   {"SAGEMAKER_MODEL_SERVER_TIMEOUT", "1.5"}};
  for (const auto& [k, v] : bad) {
    Env one;
    one.set(k, v);
    const std::string e = error_of([] { (void)sm::read_serving_env(); });
    EXPECT_NE(e.find(std::string(k) + "='" + v + "'"), std::string::npos) << k << ": " << e;
  }
}
