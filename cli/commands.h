// The subcommands of `cifar100`. Each add_* declares its options on the root app and returns the
// function that runs it after parsing. Only cli/ parses argv, prints usage and chooses exit codes:
//   0 success, 1 runtime failure (data, files, training), 2 usage or configuration error.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config.h"

namespace cifar::cli {

using Runner = std::function<int()>;

Runner add_train(CLI::App& root);
Runner add_eval(CLI::App& root);
Runner add_data(CLI::App& root);
Runner add_export(CLI::App& root);
Runner add_predict(CLI::App& root);
Runner add_serve(CLI::App& root);
Runner add_report(CLI::App& root);
Runner add_push(CLI::App& root);
Runner add_pull(CLI::App& root);

Runner add_sagemaker(CLI::App& root);

// Options shared by every command that reads a configuration.
struct ConfigArgs {
  std::string config;               // YAML file or preset name
  std::vector<std::string> sets;    // key=value overrides
  std::string data_dir, archive, device;
  // Set by `train` inside a SageMaker layout: settings the layout implies (lowest precedence), the preset
  // the `config` hyperparameter names, and the hyperparameters (ranked as command-line arguments).
  std::vector<Setting> platform;
  std::string preset;
  std::vector<Setting> hyperparameters;
};
// `config_help` describes --config ("" = no --config option); `with_device` adds --device.
void add_config_args(CLI::App* app, ConfigArgs& a, const std::string& config_help, bool with_device);
// defaults < platform < preset < YAML file < environment < hyperparameters < command line (--data-dir,
// --archive, --device, then --set).
Config resolve(const ConfigArgs& a, const std::string& base_yaml = "");
// A preset name (`wrn28-10`, `quick-cpu.yaml`) or a YAML file path, as a path. Presets are looked up in
// $CIFAR100_PRESETS_DIR, /opt/cifar100/configs (the image), and configs/ beside or above the binary.
std::string find_config_file(const std::string& name_or_path);
// --precision and --threads for the commands that run a model (eval, predict): shorthands for --set.
struct RuntimeArgs {
  std::string precision;
  int threads = 0;
  int64_t batch_size = 0;
};
void add_runtime_args(CLI::App* app, RuntimeArgs& a, bool with_batch_size = true);
ConfigArgs with_runtime_args(ConfigArgs c, const RuntimeArgs& r);
// A model artifact directory given as itself, as a run directory holding one in model/, as a model.tar.gz
// (SageMaker's packing), or as any of these at an s3:// address (fetched into the cache).
std::string find_model_dir(const std::string& path);
// Stores the artifact directory `dir` at `address`: a directory or s3:// prefix (config.json last), or a
// model.tar.gz when the address ends with .tar.gz.
void publish_artifact(const std::string& dir, const std::string& address);
// The data set directory to read (an s3:// data_dir fetched into the cache), without extracting anything.
std::string local_data_dir(const Config& cfg);
// The data set directory, ready to read: s3:// sources fetched, the archive extracted or downloaded as needed.
std::string prepare_dataset(const Config& cfg, bool force = false);

// Prints every config key with its default, environment variable and help.
void print_config_help();
// Logs the resolved configuration, one key per line, with where each value came from.
void log_config(const Config& cfg);

}  // namespace cifar::cli
