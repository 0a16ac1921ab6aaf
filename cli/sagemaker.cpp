// `cifar100 sagemaker ...`: helpers for running the image on Amazon SageMaker.
//   metric-definitions   the MetricDefinitions JSON (Name + Regex) that reads train's log lines
//   hyperparameters      a preset or YAML file (and --set overrides) as CreateTrainingJob's HyperParameters
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cloud/s3.h"
#include "common/error.h"
#include "common/log.h"
#include "train/metrics.h"

namespace cifar::cli {

namespace {
struct SageMakerArgs {
  bool compact = false;
  std::string config;
  std::vector<std::string> sets;
};

// The keys a file or --set gave, as strings: what a training job needs to rebuild the same configuration.
// Paths on this machine mean nothing in the job; only s3:// addresses of the path keys are kept.
int print_hyperparameters(const SageMakerArgs& a) {
  // Defaults < file < --set, without this machine's environment.
  Config cfg;
  if (!a.config.empty()) cfg.load_yaml_file(find_config_file(a.config));
  cfg.apply_overrides(a.sets);
  cfg.validate();
  nlohmann::json hps = nlohmann::json::object();
  for (const auto& o : option_table()) {
    const Source src = cfg.source(o.key);
    if (src != Source::File && src != Source::CommandLine) continue;
    const std::string value = cfg.text(o.key);
    const bool path_key = o.key == "data_dir" || o.key == "archive" || o.key == "checkpoint_dir" ||
                          o.key == "checkpoint_mirror" || o.key == "model_out";
    if (o.key == "resume" || (path_key && !value.empty() && !cloud::is_s3_uri(value))) {
      log::warn("leaving out {} = '{}': {}", o.key, value,
                o.key == "resume" ? "SageMaker resumes from /opt/ml/checkpoints by itself"
                                  : "a path on this machine means nothing inside the job");
      continue;
    }
    hps[o.key] = value;
  }
  if (hps.size() > 100) fail("{} hyperparameters; SageMaker takes at most 100", hps.size());
  std::printf("%s\n", hps.dump(a.compact ? -1 : 2).c_str());
  return 0;
}
}  // namespace

Runner add_sagemaker(CLI::App& root) {
  auto a = std::make_shared<SageMakerArgs>();
  CLI::App* sub = root.add_subcommand("sagemaker", "helpers for Amazon SageMaker (see docs/SAGEMAKER.md)");
  sub->require_subcommand(1);
  CLI::App* md = sub->add_subcommand(
      "metric-definitions",
      "print the AlgorithmSpecification.MetricDefinitions JSON (Name + Regex) that reads train's log lines");
  md->add_flag("--compact", a->compact, "one line instead of an indented list");
  CLI::App* hp = sub->add_subcommand(
      "hyperparameters",
      "print a preset or YAML file, with --set overrides, as CreateTrainingJob's HyperParameters (every value a "
      "string; checked like train's config)");
  hp->add_option("--config,-c", a->config, "YAML config file or preset name (e.g. wrn28-10)");
  hp->add_option("--set,-s", a->sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  hp->add_flag("--compact", a->compact, "one line instead of an indented object");
  return [a, md, hp]() -> int {
    if (hp->parsed()) return print_hyperparameters(*a);
    if (!md->parsed()) return 2;
    std::printf("%s\n", train::metric_definitions_json().dump(a->compact ? -1 : 2).c_str());
    return 0;
  };
}

}  // namespace cifar::cli
