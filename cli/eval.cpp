// `cifar100 eval`: the full evaluation report of a model artifact on the test (or validation) split.
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cloud/storage.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "data/fetch.h"
#include "data/split.h"
#include "eval/evaluate.h"
#include "eval/report.h"
#include "model/artifact.h"
#include "model/device.h"
#include "model/inference.h"

namespace cifar::cli {

namespace {

struct EvalArgs {
  ConfigArgs cfg;
  RuntimeArgs rt;
  std::string model;
  std::string split = "test";
  std::string json;
  std::string report_dir;
  std::string tta = "none";
  bool no_fold = false;
};

int run_eval(const EvalArgs& a) {
  const std::string dir = find_model_dir(a.model);
  const Config cfg = resolve(with_runtime_args(a.cfg, a.rt));
  const model::Runtime rt = model::setup_runtime(cfg);
  const auto t_load = std::chrono::steady_clock::now();
  const model::Artifact art = model::load_artifact(dir);
  model::InferenceOptions io;
  io.device = rt.device;
  io.bf16 = rt.bf16;
  io.channels_last = rt.channels_last;
  io.fold_batchnorm = !a.no_fold;
  const model::InferenceModel engine(art, io);
  log::info("model {} ({}), loaded in {:.2f} s", dir, engine.describe(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());

  const data::Dataset ds = data::read_dataset(prepare_dataset(cfg));
  const data::Split* split = &ds.test;
  std::vector<int64_t> indices;
  if (a.split == "val") {
    // The validation split of the training run: its val_size and seed, from the artifact's training config.
    const auto& tc = art.info.training_config;
    if (!tc.contains("val_size") || !tc.contains("seed"))
      fail("--split val: the artifact's config.json has no training val_size/seed to rebuild the validation split");
    const int64_t val_size = tc["val_size"].get<int64_t>();
    if (val_size == 0) fail("--split val: the model was trained with val_size=0, so there is no validation set");
    split = &ds.train;
    indices = data::stratified_split(ds.train.fine, val_size, tc["seed"].get<uint64_t>()).val;
  }
  std::vector<int64_t> labels, coarse;
  const auto& ids = indices;
  const int64_t n = ids.empty() ? split->size() : static_cast<int64_t>(ids.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = ids.empty() ? i : ids[static_cast<size_t>(i)];
    labels.push_back(split->fine[static_cast<size_t>(k)]);
    coarse.push_back(split->coarse[static_cast<size_t>(k)]);
  }
  if (art.info.arch.num_classes != data::kNumClasses)
    fail("model {} has {} classes; the data set has {}", dir, art.info.arch.num_classes, data::kNumClasses);

  const auto t0 = std::chrono::steady_clock::now();
  const at::Tensor lp = eval::infer_log_probs(engine, *split, indices, cfg.i("eval_batch_size"), eval::parse_tta(a.tta));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const eval::Report r = eval::make_report(lp, labels, coarse, art.info.fine_to_coarse);

  log::info("{} on {} ({} images, tta={}, {:.1f} s, {:.0f} images/s)", art.info.arch.name(), a.split, r.count, a.tta,
            seconds, static_cast<double>(r.count) / std::max(seconds, 1e-9));
  log::info("{0}_loss={1:.4f}; {0}_top1={2:.4f}; {0}_top5={3:.4f}; {0}_coarse_top1={4:.4f}; {0}_ece={5:.4f};", a.split,
            r.loss, r.top1, r.top5, r.coarse_top1, r.ece);
  // The three best and worst classes, for a quick look.
  std::vector<int64_t> order(static_cast<size_t>(r.num_classes));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return r.class_accuracy(x) > r.class_accuracy(y); });
  auto names_of = [&](auto begin, auto end) {
    std::string s;
    for (auto it = begin; it != end; ++it)
      s += fmt::format("{}{} {:.0f}%", s.empty() ? "" : ", ", art.info.class_names[static_cast<size_t>(*it)],
                       100 * r.class_accuracy(*it));
    return s;
  };
  if (r.num_classes >= 6)
    log::info("best classes: {}; worst: {}", names_of(order.begin(), order.begin() + 3), names_of(order.end() - 3, order.end()));

  nlohmann::json j = eval::to_json(r, art.info.class_names);
  j["split"] = a.split;
  j["model"] = dir;
  j["architecture"] = art.info.arch.name();
  j["tta"] = a.tta;
  j["engine"] = engine.describe();
  j["seconds"] = seconds;
  if (!a.json.empty()) {
    cloud::Output out(a.json, /*directory=*/false);
    fs::write_atomic(out.path(), j.dump(2) + "\n");
    out.commit();
    log::info("metrics written to {}", a.json);
  }
  if (!a.report_dir.empty()) {
    cloud::Output out(a.report_dir, /*directory=*/true);
    eval::write_report_dir(out.path(), r, j, art.info.class_names);
    out.commit({"metrics.json"});
    log::info("report written to {} (metrics.json, confusion.csv, per_class.csv, confusion.png)", a.report_dir);
  }
  return 0;
}
}  // namespace

Runner add_eval(CLI::App& root) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = root.add_subcommand("eval", "evaluate a model artifact: top-1/5, loss, superclasses, per class, "
                                              "confusion matrix, calibration");
  sub->add_option("--model,-m", a->model, "model artifact directory, a run directory (uses its model/), a model.tar.gz, or any of these at s3://")->required();
  sub->add_option("--split", a->split, "test, or val (the validation split of the training run)")
      ->check(CLI::IsMember({"test", "val"}));
  sub->add_option("--json", a->json, "write every metric, per-class accuracy and the confusion matrix to this JSON file (a path or s3://)");
  sub->add_option("--report-dir", a->report_dir,
                  "write metrics.json, confusion.csv, per_class.csv and confusion.png (a heat map) into this directory (or s3:// prefix)");
  sub->add_option("--tta", a->tta, "test-time augmentation: none, flip (average with the mirror image), or flip_translate (six views: "
                  "each of those two as is and shifted by one pixel up-left and down-right)")
      ->check(CLI::IsMember({"none", "flip", "flip_translate"}));
  sub->add_flag("--no-fold", a->no_fold, "run the network as trained, without folding batch norm (for comparison)");
  add_config_args(sub, a->cfg, "", true);
  add_runtime_args(sub, a->rt);
  return [a] { return run_eval(*a); };
}

}  // namespace cifar::cli
