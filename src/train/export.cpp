#include "train/export.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <optional>

#include "common/config.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "data/classes.h"
#include "train/checkpoint.h"

namespace cifar::train {

namespace stdfs = std::filesystem;

model::ArtifactInfo artifact_info(const model::WrnConfig& arch, const nlohmann::json& training_config,
                                  const data::Dataset* ds) {
  model::ArtifactInfo info = model::default_info(arch);
  info.training_config = training_config;
  if (ds && static_cast<int64_t>(ds->fine_names.size()) == arch.num_classes &&
      static_cast<int>(ds->coarse_names.size()) == data::kNumCoarse) {
    info.class_names = ds->fine_names;
    info.coarse_names = ds->coarse_names;
    // The superclass of each class as the training labels pair them (official map for unseen classes).
    std::vector<int> map(data::kFineToCoarse.begin(), data::kFineToCoarse.end());
    std::vector<bool> seen(map.size(), false);
    for (int64_t i = 0; i < ds->train.size(); ++i) {
      const size_t f = ds->train.fine[static_cast<size_t>(i)];
      if (f < map.size() && !seen[f]) map[f] = ds->train.coarse[static_cast<size_t>(i)], seen[f] = true;
    }
    info.fine_to_coarse = map;
  }
  return info;
}

std::string resolve_checkpoint(const std::string& path) {
  if (!stdfs::is_directory(path)) fail("checkpoint '{}' does not exist or is not a directory", path);
  if (fs::exists((stdfs::path(path) / "meta.json").string()) || fs::exists((stdfs::path(path) / "SHA256SUMS").string()))
    return path;
  std::string dir = path;
  if (Checkpointer::list(dir).empty() && !Checkpointer::list((stdfs::path(path) / "checkpoints").string()).empty())
    dir = (stdfs::path(path) / "checkpoints").string();
  const auto all = Checkpointer::list(dir);
  if (all.empty()) fail("'{}' holds no checkpoints (give a checkpoint directory, a checkpoints/ directory or a run)", path);
  std::vector<std::string> problems;
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& c : all) {
      if (pass == 0 && stdfs::path(c).filename().string().rfind("best-", 0) != 0) continue;
      try {
        (void)Checkpointer::load(c);
        return c;
      } catch (const std::exception& e) {
        if (pass == 0) problems.push_back(e.what());
      }
    }
  std::string msg;
  for (const auto& p : problems) msg += "\n  " + p;
  fail("no valid checkpoint in '{}':{}", dir, msg);
}

std::string export_checkpoint(const std::string& path, const std::string& out_dir, const std::string& data_dir) {
  const std::string ckpt = resolve_checkpoint(path);
  const Snapshot s = Checkpointer::load(ckpt);
  const auto& c = s.config;
  auto get_i = [&](const char* k) {
    if (!c.contains(k)) fail("checkpoint '{}' has no '{}' in its config", ckpt, k);
    const auto& v = c[k];
    return v.is_string() ? std::stoll(v.get<std::string>()) : v.get<int64_t>();
  };
  model::WrnConfig arch{get_i("depth"), get_i("width"), 0.0, data::kNumClasses};
  if (c.contains("dropout")) arch.dropout = c["dropout"].is_string() ? std::stod(c["dropout"].get<std::string>()) : c["dropout"].get<double>();
  if (c.contains("arch") && c["arch"].get<std::string>() == "airbench") {
    arch.arch = "airbench";
    arch.widths = parse_widths(c.value("widths", std::string("64,256,256")), "checkpoint '" + ckpt + "' widths");
  }
  model::WideResNet net(arch);
  {
    torch::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> by_name(s.model.begin(), s.model.end());
    for (auto& [name, t] : model::state_dict(*net)) {
      auto it = by_name.find(name);
      if (it == by_name.end()) fail("checkpoint '{}' has no tensor '{}' for {}", ckpt, name, arch.name());
      if (it->second.sizes() != t.sizes()) fail("checkpoint '{}': tensor '{}' has the wrong shape for {}", ckpt, name, arch.name());
      t.copy_(it->second);
    }
  }
  // Class names and superclasses from the data set directory when it is there.
  std::optional<data::Dataset> ds;
  if (!data_dir.empty() && fs::exists(data::data_files(data_dir).fine_names)) {
    try {
      ds = data::read_dataset(data_dir);
    } catch (const std::exception& e) {
      log::warn("class names: the data set in '{}' cannot be read ({}); using the official CIFAR-100 names", data_dir,
                e.what());
    }
  } else {
    log::info("no data set in '{}': the artifact gets the official CIFAR-100 class names", data_dir);
  }
  model::ArtifactInfo info = artifact_info(arch, c, ds ? &*ds : nullptr);
  const TrainState& st = s.state;
  info.metrics = {{"epochs_completed", st.history.size()}, {"best_epoch", st.best_epoch},
                  {"best_val_top1", st.best_val_top1}};
  if (!st.history.empty()) {
    const auto& last = st.history.back();
    info.metrics["last_epoch"] = {{"epoch", last.epoch}, {"train_loss", last.train_loss}, {"train_acc", last.train_acc}};
    if (last.has_val) info.metrics["last_epoch"]["val_top1"] = last.val_top1;
  }
  info.source = {{"checkpoint", ckpt}, {"reason", s.reason}, {"epoch", st.epoch}, {"batch", st.batch}, {"step", st.step}};
  model::write_artifact(out_dir, *net, info);
  return ckpt;
}

}  // namespace cifar::train
