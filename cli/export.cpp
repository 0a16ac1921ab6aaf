// `cifar100 export`: a checkpoint (or the best one of a run) -> a model artifact directory.
#include "cli/commands.h"
#include "cloud/storage.h"
#include "common/log.h"
#include "data/fetch.h"
#include "model/artifact.h"
#include "train/export.h"

namespace cifar::cli {

namespace {
struct ExportArgs {
  ConfigArgs cfg;
  std::string checkpoint;
  std::string out;
};

int run_export(const ExportArgs& a) {
  const Config cfg = resolve(a.cfg);
  // A directory on this machine is replaced in one step; a model.tar.gz or an s3:// address is made from a
  // staged directory.
  const bool staged = cloud::is_tar_gz(a.out) || cloud::is_remote(a.out);
  const cloud::TempDir stage;
  const std::string dir = staged ? stage.path() + "/model" : a.out;
  const std::string used = train::export_checkpoint(a.checkpoint, dir, local_data_dir(cfg));
  const model::ArtifactInfo info = model::read_artifact_info(dir);
  if (staged) publish_artifact(dir, a.out);
  log::info("exported {} from {} to {} (model.safetensors, model.pt, config.json)", info.arch.name(), used, a.out);
  return 0;
}
}  // namespace

Runner add_export(CLI::App& root) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* sub = root.add_subcommand("export", "turn a checkpoint into a model artifact directory "
                                                "(model.safetensors, model.pt, config.json)");
  sub->add_option("--checkpoint", a->checkpoint,
                  "a checkpoint directory, a checkpoints/ directory or a run directory (then the newest valid best-*, "
                  "else the newest valid checkpoint)")
      ->required();
  sub->add_option("--out,-o", a->out,
                  "artifact directory to write (replaced if it holds an artifact), a model.tar.gz (SageMaker's packing), "
                  "or either at an s3:// address")
      ->required();
  sub->add_option("--set,-s", a->cfg.sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  sub->add_option("--data-dir", a->cfg.data_dir, "data set directory whose label-name files give the class names "
                                                 "(default: the cache; official names when absent)");
  return [a] { return run_export(*a); };
}

}  // namespace cifar::cli
