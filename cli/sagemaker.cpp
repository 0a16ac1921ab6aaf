// `cifar100 sagemaker ...`: helpers for running the image on Amazon SageMaker.
//   metric-definitions   the MetricDefinitions JSON (Name + Regex) that reads train's log lines
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "train/metrics.h"

namespace cifar::cli {

Runner add_sagemaker(CLI::App& root) {
  CLI::App* sub = root.add_subcommand("sagemaker", "helpers for Amazon SageMaker (see README: Running on SageMaker)");
  sub->require_subcommand(1);
  auto compact = std::make_shared<bool>(false);
  CLI::App* md = sub->add_subcommand(
      "metric-definitions",
      "print the AlgorithmSpecification.MetricDefinitions JSON (Name + Regex) that reads train's log lines");
  md->add_flag("--compact", *compact, "one line instead of an indented list");
  return [md, compact]() -> int {
    if (!md->parsed()) return 2;
    std::printf("%s\n", train::metric_definitions_json().dump(*compact ? -1 : 2).c_str());
    return 0;
  };
}

}  // namespace cifar::cli
