#include <cstdio>

#include "cli/commands.h"
#include <filesystem>

#include "common/error.h"
#include "common/log.h"
#include "model/artifact.h"
#include "data/transforms.h"

namespace cifar::cli {

void add_config_args(CLI::App* app, ConfigArgs& a, const std::string& config_help, bool with_device) {
  if (!config_help.empty()) app->add_option("--config,-c", a.config, config_help)->check(CLI::ExistingFile);
  app->add_option("--set,-s", a.sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  app->add_option("--data-dir", a.data_dir, "extracted data set directory (env CIFAR100_DATA_DIR)");
  app->add_option("--archive", a.archive, "local cifar-100-binary.tar.gz to use instead of downloading (env CIFAR100_ARCHIVE)");
  if (with_device) app->add_option("--device", a.device, "auto, cpu or cuda (env CIFAR100_DEVICE)");
}

Config resolve(const ConfigArgs& a, const std::string& base_yaml) {
  // --data-dir, --archive and --device are shorthands for --set; an explicit --set given too wins.
  std::vector<std::string> overrides;
  if (!a.data_dir.empty()) overrides.push_back("data_dir=" + a.data_dir);
  if (!a.archive.empty()) overrides.push_back("archive=" + a.archive);
  if (!a.device.empty()) overrides.push_back("device=" + a.device);
  overrides.insert(overrides.end(), a.sets.begin(), a.sets.end());
  Config cfg = resolve_config({base_yaml, a.config}, overrides);
  (void)data::Pipeline::parse(cfg.s("augment"));  // a bad pipeline fails here, at start, naming the key
  return cfg;
}

void add_runtime_args(CLI::App* app, RuntimeArgs& a, bool with_batch_size) {
  app->add_option("--precision", a.precision, "auto (bf16 where the CPU has native bf16), bf16 or fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}));
  app->add_option("--threads", a.threads, "CPU threads (0 = one per core; env CIFAR100_THREADS)")->check(CLI::Range(0, 1024));
  if (with_batch_size)
    app->add_option("--batch-size", a.batch_size, "images per forward pass (default: eval_batch_size)")
        ->check(CLI::Range(1, 65536));
}

ConfigArgs with_runtime_args(ConfigArgs c, const RuntimeArgs& r) {
  // Inserted first so that an explicit --set of the same key still wins.
  std::vector<std::string> extra;
  if (!r.precision.empty()) extra.push_back("precision=" + r.precision);
  if (r.threads > 0) extra.push_back("threads=" + std::to_string(r.threads));
  if (r.batch_size > 0) extra.push_back("eval_batch_size=" + std::to_string(r.batch_size));
  c.sets.insert(c.sets.begin(), extra.begin(), extra.end());
  return c;
}

std::string find_model_dir(const std::string& path) {
  namespace stdfs = std::filesystem;
  if (model::is_artifact_dir(path)) return path;
  const std::string sub = (stdfs::path(path) / "model").string();
  if (model::is_artifact_dir(sub)) return sub;
  if (!stdfs::exists(path)) fail("model directory '{}' does not exist", path);
  fail("'{}' is not a model artifact (config.json + model.safetensors) nor a run directory with one in model/; "
       "`cifar100 export --checkpoint CKPT --out DIR` makes one from a checkpoint",
       path);
}

void print_config_help() {
  std::string section;
  std::printf("Config keys (YAML file < environment < --set key=value):\n");
  for (const auto& o : option_table()) {
    if (o.section != section) std::printf("\n[%s]\n", (section = o.section).c_str());
    std::string def = o.default_value.empty() ? "\"\"" : o.default_value;
    std::printf("  %-24s default %s%s\n      %s\n", o.key.c_str(), def.c_str(),
                o.env.empty() ? "" : ("  env " + o.env).c_str(), o.help.c_str());
  }
}

void log_config(const Config& cfg) {
  log::info("resolved configuration:");
  for (const auto& o : option_table()) {
    const Source src = cfg.source(o.key);
    log::info("  {}: {}{}", o.key, cfg.text(o.key),
              src == Source::Default ? "" : fmt::format("  ({})", source_name(src)));
  }
}

}  // namespace cifar::cli
