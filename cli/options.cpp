#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include <filesystem>

#include "cloud/storage.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "data/cifar.h"
#include "data/fetch.h"
#include "common/log.h"
#include "model/artifact.h"
#include "data/transforms.h"

namespace cifar::cli {

void add_config_args(CLI::App* app, ConfigArgs& a, const std::string& config_help, bool with_device) {
  if (!config_help.empty()) app->add_option("--config,-c", a.config, config_help);
  app->add_option("--set,-s", a.sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  app->add_option("--data-dir", a.data_dir, "extracted data set directory or s3:// prefix (env CIFAR100_DATA_DIR)");
  app->add_option("--archive", a.archive,
                  "cifar-100-binary.tar.gz (a path or s3://) to use instead of downloading (env CIFAR100_ARCHIVE)");
  if (with_device) app->add_option("--device", a.device, "auto, cpu or cuda (env CIFAR100_DEVICE)");
}

Config resolve(const ConfigArgs& a, const std::string& base_yaml) {
  // --data-dir, --archive and --device are shorthands for --set; an explicit --set given too wins.
  std::vector<std::string> overrides;
  if (!a.data_dir.empty()) overrides.push_back("data_dir=" + a.data_dir);
  if (!a.archive.empty()) overrides.push_back("archive=" + a.archive);
  if (!a.device.empty()) overrides.push_back("device=" + a.device);
  overrides.insert(overrides.end(), a.sets.begin(), a.sets.end());
  ConfigLayers layers;
  layers.platform = a.platform;
  layers.yaml_paths = {base_yaml, a.preset.empty() ? "" : find_config_file(a.preset),
                       a.config.empty() ? "" : find_config_file(a.config)};
  layers.hyperparameters = a.hyperparameters;
  layers.overrides = overrides;
  Config cfg = resolve_config(layers);
  (void)data::Pipeline::parse(cfg.s("augment"));  // a bad pipeline fails here, at start, naming the key
  return cfg;
}

namespace {
std::vector<std::string> preset_dirs() {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("CIFAR100_PRESETS_DIR"); d && *d) dirs.emplace_back(d);
  dirs.emplace_back("/opt/cifar100/configs");
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back((exe.parent_path() / "configs").string());
    dirs.push_back((exe.parent_path().parent_path() / "configs").string());
  }
  return dirs;
}
}  // namespace

std::string find_config_file(const std::string& name) {
  namespace stdfs = std::filesystem;
  if (cloud::is_remote(name)) return cloud::localize_file(name);
  if (stdfs::is_regular_file(name)) return name;
  const bool looks_like_path = name.find('/') != std::string::npos;
  if (!looks_like_path) {
    const std::string file = name.size() > 5 && name.compare(name.size() - 5, 5, ".yaml") == 0 ? name : name + ".yaml";
    for (const auto& d : preset_dirs())
      if (stdfs::is_regular_file(stdfs::path(d) / file)) return (stdfs::path(d) / file).string();
  }
  std::vector<std::string> names;
  for (const auto& d : preset_dirs()) {
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(d, ec))
      if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  fail_config("config '{}' is neither a file nor a preset (presets: {}); give a YAML file path or a preset name", name,
              list.empty() ? "none found" : list);
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
  if (cloud::is_tar_gz(path)) {
    // Unpacked next to the cached download (or into the cache for a local archive), again when it changed.
    const std::string archive = cloud::localize_file(path);
    const std::string id =
        stdfs::absolute(archive).string() + " " + std::to_string(stdfs::last_write_time(archive).time_since_epoch().count());
    const std::string dir = (stdfs::path(fs::default_cache_dir()) / "models" / hash::sha256(id.data(), id.size())).string();
    if (!model::is_artifact_dir(dir)) {
      std::error_code ec;
      stdfs::remove_all(dir + ".tmp", ec);
      cloud::extract_tar_gz(archive, dir + ".tmp");
      stdfs::remove_all(dir, ec);
      stdfs::rename(dir + ".tmp", dir);
    }
    if (!model::is_artifact_dir(dir)) fail("'{}' does not hold a model artifact (config.json + model.safetensors)", path);
    return dir;
  }
  if (cloud::is_remote(path)) {
    const std::vector<std::string> files = {"config.json", "model.safetensors"};
    for (const std::string& prefix : {path, cloud::join(path, "model")}) {
      const auto listed = cloud::storage_for(prefix).list(prefix);
      const bool here = std::count_if(listed.begin(), listed.end(), [](const cloud::Entry& e) {
                          return e.name == "config.json" || e.name == "model.safetensors";
                        }) == 2;
      if (here) return cloud::localize_dir(prefix, files);
    }
    fail("{} holds no model artifact (config.json + model.safetensors), neither directly nor in model/", path);
  }
  if (model::is_artifact_dir(path)) return path;
  const std::string sub = (stdfs::path(path) / "model").string();
  if (model::is_artifact_dir(sub)) return sub;
  if (!stdfs::exists(path)) fail("model directory '{}' does not exist", path);
  fail("'{}' is not a model artifact (config.json + model.safetensors) nor a run directory with one in model/; "
       "`cifar100 export --checkpoint CKPT --out DIR` makes one from a checkpoint",
       path);
}

void publish_artifact(const std::string& dir, const std::string& address) {
  if (!cloud::is_tar_gz(address)) return cloud::publish_dir(dir, address, {"model.safetensors", "model.pt", "config.json"});
  cloud::Output out(address, /*directory=*/false);
  cloud::write_tar_gz(dir, out.path());
  out.commit();
}

std::string local_data_dir(const Config& cfg) {
  const std::string dir = data::resolve_data_dir(cfg);
  if (!cloud::is_remote(dir)) return dir;
  const data::DataFiles f = data::data_files("");
  std::vector<std::string> names;
  for (const auto& n : {f.train, f.test, f.fine_names, f.coarse_names}) names.push_back(std::filesystem::path(n).filename());
  return cloud::localize_dir(dir, names);
}

std::string prepare_dataset(const Config& cfg, bool force) {
  data::FetchOptions o = data::fetch_options(cfg);
  o.force = force;
  o.data_dir = local_data_dir(cfg);
  if (!o.archive.empty() && !(data::dataset_present(o.data_dir) && !force)) o.archive = cloud::localize_file(o.archive);
  return data::ensure_dataset(o);
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
