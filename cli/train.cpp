// `cifar100 train`: config -> data -> model -> trainer -> test report. Reads like the script it is.
#include <torch/torch.h>

#include <chrono>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/log.h"
#include "data/fetch.h"
#include "data/split.h"
#include "eval/evaluate.h"
#include "model/device.h"
#include "model/weights.h"
#include "model/wide_resnet.h"
#include "train/run_dir.h"
#include "train/trainer.h"

namespace cifar::cli {

namespace {
struct TrainArgs {
  ConfigArgs cfg;
  std::string out;
  bool overwrite = false;
  bool help_config = false;
};

int run_train(const TrainArgs& a) {
  if (a.help_config) {
    print_config_help();
    return 0;
  }
  const auto t_start = std::chrono::steady_clock::now();

  // 1. Configuration and run directory.
  const Config cfg = resolve(a.cfg);
  const train::RunDir run(a.out.empty() ? log::format_now("runs/%Y%m%d-%H%M%S", false) : a.out, a.overwrite);
  run.write_config(cfg);
  log_config(cfg);
  const model::Runtime rt = model::setup_runtime(cfg);
  log::info("run directory {}; {}", run.dir(), rt.describe());

  // 2. Data: extract or download if needed, read and validate, carve the validation split.
  const data::Dataset ds = data::read_dataset(data::ensure_dataset(data::fetch_options(cfg)));
  const auto seed = static_cast<uint64_t>(cfg.i("seed"));
  data::TrainValSplit split = data::stratified_split(ds.train.fine, cfg.i("val_size"), seed);
  data::limit_train(split, cfg.i("train_limit"));
  log::info("data {}: {} training, {} validation, {} test images", ds.dir, split.train.size(), split.val.size(),
            ds.test.size());

  // 3. Model.
  model::seed_torch(seed);
  const model::WrnConfig mc{cfg.i("depth"), cfg.i("width"), cfg.f("dropout"), data::kNumClasses};
  model::WideResNet net(mc);
  model::place_module(*net, rt);
  log::info("model {}: {} parameters, {:.2f} GMAC per image", mc.name(), model::count_parameters(*net),
            static_cast<double>(model::count_macs(mc)) / 1e9);

  // 4. Train.
  train::Trainer trainer(cfg, rt, net, run);
  const train::FitResult fit = trainer.fit(ds.train, split.train, split.val);

  // 5. Test once, with the weights chosen on the validation set.
  if (!split.val.empty()) model::load_weights(*net, run.best_weights());
  const eval::Metrics test = eval::evaluate(net, ds.test, {}, rt, cfg.i("eval_batch_size"),
                                            static_cast<int>(cfg.i("workers")));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  nlohmann::json results = {
      {"test_top1", test.top1},
      {"test_top5", test.top5},
      {"test_loss", test.loss},
      {"test_images", test.count},
      {"best_epoch", fit.best_epoch},
      {"best_val_top1", split.val.empty() ? nlohmann::json(nullptr) : nlohmann::json(fit.best_val_top1)},
      {"weights_tested", split.val.empty() ? "final" : "best"},
      {"epochs_run", fit.history.size()},
      {"early_stopped", fit.early_stopped},
      {"wall_seconds", wall},
      {"model", mc.name()},
      {"parameters", model::count_parameters(*net)},
      {"runtime", rt.describe()},
  };
  run.write_results(results);
  log::info("test_loss={:.4f}; test_top1={:.4f}; test_top5={:.4f}; wall_seconds={:.1f};", test.loss, test.top1,
            test.top5, wall);
  if (!split.val.empty())
    log::info("tested the weights of epoch {} (best validation top-1 {:.4f})", fit.best_epoch, fit.best_val_top1);
  log::info("results in {}", run.file("results.json"));
  return 0;
}
}  // namespace

Runner add_train(CLI::App& root) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = root.add_subcommand("train", "train a WideResNet (writes a run directory)");
  add_config_args(sub, a->cfg, "YAML config file, e.g. configs/quick-cpu.yaml (keys: --help-config)", true);
  sub->add_option("--out,-o", a->out, "run directory (default runs/YYYYmmdd-HHMMSS)");
  sub->add_flag("--overwrite", a->overwrite, "replace the results of an earlier run in --out");
  sub->add_flag("--help-config", a->help_config, "list every config key with its default and help, then exit");
  return [a] { return run_train(*a); };
}

}  // namespace cifar::cli
