// `cifar100 export`: a checkpoint (or the best one of a run) -> a model artifact directory; and a
// checkpoint or an artifact -> an ONNX model.
#include "cli/commands.h"
#include "cloud/storage.h"
#include "common/error.h"
#include "common/log.h"
#include "data/fetch.h"
#include "model/artifact.h"
#include "model/onnx_export.h"
#include "train/export.h"

namespace cifar::cli {

namespace {
struct ExportArgs {
  ConfigArgs cfg;
  std::string checkpoint, model;
  std::string out;
  std::string onnx, onnx_input = "float";
};

int run_export(const ExportArgs& a) {
  if (a.checkpoint.empty() == a.model.empty())
    fail_config("export: give exactly one source, --checkpoint (a checkpoint or run directory) or --model (an artifact)");
  if (a.out.empty() && a.onnx.empty()) fail_config("export: give --out (an artifact directory), --onnx FILE, or both");
  if (!a.model.empty() && !a.out.empty())
    fail_config("export: --out makes an artifact from a checkpoint; --model already is one (use --onnx, or copy it)");
  const Config cfg = resolve(a.cfg);
  const cloud::TempDir stage;
  std::string dir;
  if (!a.checkpoint.empty()) {
    // A directory on this machine is replaced in one step; a model.tar.gz or an s3:// address is made from a
    // staged directory (so is the artifact that only feeds --onnx).
    const bool staged = a.out.empty() || cloud::is_tar_gz(a.out) || cloud::is_remote(a.out);
    dir = staged ? stage.path() + "/model" : a.out;
    const std::string used = train::export_checkpoint(a.checkpoint, dir, local_data_dir(cfg));
    const model::ArtifactInfo info = model::read_artifact_info(dir);
    if (!a.out.empty()) {
      if (staged) publish_artifact(dir, a.out);
      log::info("exported {} from {} to {} (model.safetensors, model.pt, config.json)", info.arch.name(), used, a.out);
    }
  } else {
    dir = find_model_dir(a.model);
  }
  if (!a.onnx.empty()) {
    const model::Artifact art = model::load_artifact(dir);
    model::OnnxOptions opt;
    opt.uint8_input = a.onnx_input == "uint8";
    cloud::Output out(a.onnx, /*directory=*/false);
    model::write_onnx(out.path(), *art.net, art.info, opt);
    out.commit();
    log::info("wrote ONNX model {} ({}, input \"image\" {} NCHW with a dynamic batch, output \"logits\"; opset 13)",
              a.onnx, art.info.arch.name(), opt.uint8_input ? "uint8 pixels" : "float32 normalised");
  }
  return 0;
}
}  // namespace

Runner add_export(CLI::App& root) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* sub = root.add_subcommand("export", "turn a checkpoint into a model artifact directory "
                                                "(model.safetensors, model.pt, config.json), and a checkpoint or an "
                                                "artifact into an ONNX model");
  sub->add_option("--checkpoint", a->checkpoint,
                  "a checkpoint directory, a checkpoints/ directory or a run directory (then the newest valid best-*, "
                  "else the newest valid checkpoint)");
  sub->add_option("--model", a->model,
                  "an artifact to convert with --onnx: a directory, a run directory, a model.tar.gz, or one at an "
                  "s3:// address (instead of --checkpoint)");
  sub->add_option("--out,-o", a->out,
                  "artifact directory to write (replaced if it holds an artifact), a model.tar.gz (SageMaker's packing), "
                  "or either at an s3:// address");
  sub->add_option("--onnx", a->onnx,
                  "also (or only) write an ONNX model here (a file, or an s3:// address): batch norm folded, dynamic "
                  "batch, preprocessing and class names in its metadata");
  sub->add_option("--onnx-input", a->onnx_input,
                  "the ONNX input: float (float32, already normalised: (pixel/255 - mean)/std) or uint8 (RGB pixels "
                  "0-255, normalised inside the model)")
      ->check(CLI::IsMember({"float", "uint8"}))
      ->default_str("float");
  sub->add_option("--set,-s", a->cfg.sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  sub->add_option("--data-dir", a->cfg.data_dir, "data set directory whose label-name files give the class names "
                                                 "(default: the cache; official names when absent)");
  return [a] { return run_export(*a); };
}

}  // namespace cifar::cli
