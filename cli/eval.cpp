// `cifar100 eval`: evaluate saved weights on the test (or validation) split.
#include <torch/torch.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "data/fetch.h"
#include "data/split.h"
#include "eval/evaluate.h"
#include "model/device.h"
#include "model/weights.h"
#include "model/wide_resnet.h"

namespace cifar::cli {

namespace {
namespace stdfs = std::filesystem;

struct EvalArgs {
  ConfigArgs cfg;
  std::string model;
  std::string weights = "best";
  std::string split = "test";
  std::string json;
};

int run_eval(const EvalArgs& a) {
  // A run directory holds config.yaml next to best.pt and final.pt; a weights file may have a config beside it.
  std::string weights, base_yaml;
  if (stdfs::is_directory(a.model)) {
    weights = (stdfs::path(a.model) / (a.weights + ".pt")).string();
    base_yaml = (stdfs::path(a.model) / "config.yaml").string();
  } else {
    weights = a.model;
    base_yaml = (stdfs::path(a.model).parent_path() / "config.yaml").string();
  }
  if (!fs::exists(weights)) fail("weights '{}' do not exist (--model takes a run directory or a .pt file)", weights);
  if (!a.cfg.config.empty() || !fs::exists(base_yaml)) base_yaml.clear();
  if (base_yaml.empty() && a.cfg.config.empty())
    log::warn("no config.yaml next to '{}' and no --config: assuming the default architecture (depth/width)", weights);
  const Config cfg = resolve(a.cfg, base_yaml);
  const model::Runtime rt = model::setup_runtime(cfg);

  const data::Dataset ds = data::read_dataset(data::ensure_dataset(data::fetch_options(cfg)));
  const model::WrnConfig mc{cfg.i("depth"), cfg.i("width"), cfg.f("dropout"), data::kNumClasses};
  model::WideResNet net(mc);
  model::load_weights(*net, weights);
  model::place_module(*net, rt);

  const data::Split* split = &ds.test;
  std::vector<int64_t> indices;
  if (a.split == "val") {
    if (cfg.i("val_size") == 0) fail("--split val: this configuration has val_size=0, so there is no validation set");
    split = &ds.train;
    indices = data::stratified_split(ds.train.fine, cfg.i("val_size"), static_cast<uint64_t>(cfg.i("seed"))).val;
  }
  const eval::Metrics m =
      eval::evaluate(net, *split, indices, rt, cfg.i("eval_batch_size"), static_cast<int>(cfg.i("workers")));
  log::info("model {} from {} on {} ({} images, {}, {:.1f} s)", mc.name(), weights, a.split, m.count, rt.describe(),
            m.seconds);
  log::info("{0}_loss={1:.4f}; {0}_top1={2:.4f}; {0}_top5={3:.4f};", a.split, m.loss, m.top1, m.top5);
  if (!a.json.empty()) {
    nlohmann::json j = {{"split", a.split}, {"weights", weights}, {"model", mc.name()}, {"images", m.count},
                        {"loss", m.loss},   {"top1", m.top1},     {"top5", m.top5},     {"seconds", m.seconds}};
    fs::write_atomic(a.json, j.dump(2) + "\n");
  }
  return 0;
}
}  // namespace

Runner add_eval(CLI::App& root) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = root.add_subcommand("eval", "evaluate saved weights on the test or validation split");
  sub->add_option("--model,-m", a->model, "run directory (uses its config.yaml) or a .pt weights file")->required();
  sub->add_option("--weights", a->weights, "which weights of a run directory: best or final")
      ->check(CLI::IsMember({"best", "final"}));
  sub->add_option("--split", a->split, "test or val (the validation split of the run's seed)")
      ->check(CLI::IsMember({"test", "val"}));
  sub->add_option("--json", a->json, "also write the metrics to this JSON file");
  add_config_args(sub, a->cfg, "YAML config to use instead of the config.yaml next to the weights", true);
  return [a] { return run_eval(*a); };
}

}  // namespace cifar::cli
