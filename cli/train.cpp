// `cifar100 train`: config -> data -> model -> trainer -> test report. Reads like the script it is.
#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <map>
#include <algorithm>

#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/workers.h"
#include "cloud/sagemaker.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/signals.h"
#include "data/channels.h"
#include "data/fetch.h"
#include "data/png.h"
#include "data/preview.h"
#include "data/split.h"
#include "dist/group.h"
#include "eval/evaluate.h"
#include "eval/html_report.h"
#include "eval/report.h"
#include "model/artifact.h"
#include "model/device.h"
#include "model/weights.h"
#include "model/wide_resnet.h"
#include "train/checkpoint.h"
#include "train/export.h"
#include "train/run_dir.h"
#include "train/tensorboard.h"
#include "train/trainer.h"

namespace cifar::cli {

namespace {

// The images `idx` of `split` as a normalised float32 N x 3 x 32 x 32 tensor.
at::Tensor normalized_images(const data::Split& split, const std::vector<int64_t>& idx) {
  at::Tensor x = torch::empty({static_cast<int64_t>(idx.size()), 3, data::kImageSize, data::kImageSize}, torch::kUInt8);
  for (size_t i = 0; i < idx.size(); ++i)
    std::memcpy(x.data_ptr<uint8_t>() + i * data::kPixels, split.image(idx[i]), data::kPixels);
  const at::Tensor mean = torch::tensor({data::kMean[0], data::kMean[1], data::kMean[2]}).view({1, 3, 1, 1});
  const at::Tensor std = torch::tensor({data::kStd[0], data::kStd[1], data::kStd[2]}).view({1, 3, 1, 1});
  return (x.to(torch::kFloat32) / 255.0f - mean) / std;
}
namespace stdfs = std::filesystem;
namespace sagemaker = cloud::sagemaker;

struct TrainArgs {
  ConfigArgs cfg;
  std::string out;
  std::string resume;
  bool overwrite = false;
  bool allow_config_change = false;
  bool help_config = false;
  std::string sagemaker = "auto";
  // Distributed training (the built-in launcher).
  std::string nproc = "auto";
  int nnodes = 1, node_rank = 0, master_port = 0;
  std::string master_addr = "127.0.0.1";
  std::vector<std::string> resolve;
};

// Exit status after a stop by signal: 0 for SIGTERM (SageMaker's stop), 128+n otherwise (Ctrl-C: 130).
int exit_status_for(int sig) { return sig == SIGTERM ? 0 : 128 + sig; }

// Finds the checkpoint to continue from, as `resume` says: auto, none, or a path.
std::optional<std::pair<std::string, train::Snapshot>> find_resume_point(const Config& cfg, const std::string& ckpt_dir,
                                                                         bool overwrite) {
  const std::string& mode = cfg.s("resume");
  if (mode == "none") {
    if (!train::Checkpointer::list(ckpt_dir).empty()) {
      if (!overwrite)
        fail("'{}' holds checkpoints and resume=none: pass --overwrite to start afresh (the old checkpoints are moved "
             "aside, not deleted), or drop resume=none to continue",
             ckpt_dir);
      const std::string aside = ckpt_dir + ".old-" + log::format_now("%Y%m%d-%H%M%S", false);
      stdfs::rename(ckpt_dir, aside);
      log::warn("starting afresh: the old checkpoints were moved to {}", aside);
    }
    return std::nullopt;
  }
  if (mode == "auto") {
    std::vector<std::string> problems;
    auto found = train::Checkpointer::load_latest(ckpt_dir, problems);
    for (const auto& p : problems) log::warn("skipping an unusable checkpoint: {}", p);
    return found;
  }
  return std::make_pair(mode, train::Checkpointer::load(mode));
}

// The SageMaker layout, when `train` runs inside one: the environment and what it implies for the config.
struct SageMakerJob {
  sagemaker::TrainingEnv env;
  std::string scratch;  // data staging and the .pt weights, outside output/data (every byte there is uploaded)
};

std::optional<SageMakerJob> detect_sagemaker(const std::string& mode) {
  if (mode == "off") return std::nullopt;
  if (!sagemaker::training_layout_present()) {
    if (mode == "on")
      fail_config("--sagemaker on, but there is no SageMaker training layout at {} (no input/config/); set "
                  "SAGEMAKER_BASE_DIR to a fake /opt/ml to run one locally",
                  sagemaker::base_dir());
    return std::nullopt;
  }
  SageMakerJob job;
  job.env = sagemaker::read_training_env(sagemaker::base_dir());
  job.scratch = (stdfs::path(fs::default_cache_dir()) / "sagemaker").string();
  return job;
}

// The job's channels as the data layer describes them.
std::vector<data::InputChannel> input_channels(const sagemaker::TrainingEnv& env) {
  std::vector<data::InputChannel> out;
  for (const auto& c : env.channels) out.push_back({c.name, c.dir, c.input_mode, c.env_name});
  return out;
}

// Adds what the layout implies to the config arguments: hyperparameters, the `config` preset, the data
// channels, and the checkpoint directory that SageMaker syncs with S3.
void apply_sagemaker(const SageMakerJob& job, ConfigArgs& ca) {
  log::info("{}", job.env.describe());
  const sagemaker::Hyperparameters hp =
      sagemaker::map_hyperparameters(job.env.hyperparameters, job.env.hyperparameters_origin);
  if (!hp.ignored.empty()) log::info("ignoring platform hyperparameters: {}", fmt::join(hp.ignored, ", "));
  if (!hp.preset.empty()) log::info("preset from the `config` hyperparameter: {}", hp.preset);
  if (job.env.channels.empty()) log::info("no input channels: the data set is downloaded (or taken from the cache)");
  ca.preset = hp.preset;
  ca.hyperparameters = hp.settings;
  ca.platform = data::channel_settings(input_channels(job.env), job.scratch);
  ca.platform.push_back({"checkpoint_dir", job.env.checkpoint_dir, "SageMaker layout"});
  // Spot capacity can vanish without the SIGTERM warning reaching a save in time: save on the clock too.
  ca.platform.push_back({"checkpoint_every_minutes", "10", "SageMaker layout"});
}

// Where the run ran, for results.json and the report.
nlohmann::json describe_hardware(const model::Runtime& rt) {
  nlohmann::json h = {{"device", rt.device.str()}, {"cores", cpu::available_cores()},
                      {"cpu_bf16", cpu::has_amx_bf16() ? "amx" : cpu::has_avx512_bf16() ? "avx512_bf16" : "none"}};
  char host[256] = "";
  if (gethostname(host, sizeof(host) - 1) == 0) h["host"] = host;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      h["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  return h;
}

// Loads the weights chosen on validation: best.pt, or (after a resume in a fresh container, where only
// the checkpoints survived) the newest best checkpoint.
void load_best_weights(model::WideResNet& net, const train::RunDir& run, const std::string& ckpt_dir) {
  if (fs::exists(run.best_weights())) return model::load_weights(*net, run.best_weights());
  auto best = train::Checkpointer::load_best(ckpt_dir);
  if (!best) fail("neither {} nor a best-* checkpoint in {} holds the best weights to test", run.best_weights(), ckpt_dir);
  // With a weight average, the best epoch's history says which weights won it.
  const train::Snapshot& snap = best->second;
  bool ema_won = false;
  for (const auto& m : snap.state.history)
    if (m.epoch == snap.state.best_epoch) ema_won = m.has_ema && m.selected == "ema";
  if (ema_won && !snap.ema.empty()) train::load_state(snap.ema, *net, "checkpoint " + best->first + " (weight average)");
  else train::restore_weights(snap, *net);
  model::save_weights(*net, run.best_weights());
  log::info("best weights restored from checkpoint {}", best->first);
}

int run_train(const TrainArgs& a, const std::optional<SageMakerJob>& sm, const dist::Topology* topo) {
  const auto t_start = std::chrono::steady_clock::now();
  signals::install_stop_handlers();

  // 1. Configuration, the process group (distributed runs), the checkpoint to resume from (if any), run
  //    and checkpoint directories. Rank 0 speaks for the job and alone writes files.
  ConfigArgs ca = a.cfg;
  if (!a.resume.empty()) ca.sets.insert(ca.sets.begin(), "resume=" + a.resume);
  if (sm) apply_sagemaker(*sm, ca);
  const Config cfg = resolve(ca);
  const bool leader = !topo || topo->rank == 0;
  if (!leader) log::set_level(log::Level::Warn);
  const std::string out = !a.out.empty() ? a.out
                          : sm           ? sm->env.output_data_dir
                                         : log::format_now("runs/%Y%m%d-%H%M%S", false);
  const std::string ckpt_dir = cfg.s("checkpoint_dir").empty() ? (stdfs::path(out) / "checkpoints").string()
                                                               : cfg.s("checkpoint_dir");
  const std::string model_dir = sm && a.out.empty() ? sm->env.model_dir : (stdfs::path(out) / "model").string();
  const model::Runtime rt = model::setup_runtime(cfg, topo ? topo->local_rank : 0, topo ? topo->local_world : 1);
  std::unique_ptr<dist::Group> group;
  if (topo) {
    log::info("distributed: {}", topo->describe());
    group = std::make_unique<dist::Group>(*topo, std::chrono::seconds(static_cast<int64_t>(cfg.f("dist_timeout"))),
                                          rt.device);
  }
  auto barrier = [&] {
    if (!group) return;
    at::Tensor t = torch::zeros({1}, torch::TensorOptions().device(rt.device));
    group->allreduce(t);
  };
  std::optional<std::pair<std::string, train::Snapshot>> resume;
  std::optional<train::RunDir> run;
  std::unique_ptr<train::Checkpointer> checkpointer;
  std::string data_dir;
  if (leader) {
    const std::string& mirror = cfg.s("checkpoint_mirror");
    if (!mirror.empty() && cfg.s("resume") == "auto" && train::Checkpointer::pull_mirror(mirror, ckpt_dir) > 0)
      log::info("no local checkpoint in {}: continuing from the mirror {}", ckpt_dir, mirror);
    resume = find_resume_point(cfg, ckpt_dir, a.overwrite);
    if (resume) train::check_resume_config(cfg, resume->second.config, resume->first, a.allow_config_change);
    run.emplace(out, a.overwrite, resume.has_value(),
                sm && a.out.empty() ? (stdfs::path(sm->scratch) / "weights").string() : "");
    checkpointer = std::make_unique<train::Checkpointer>(ckpt_dir, cfg.i("checkpoint_keep"));
    checkpointer->set_mirror(mirror);
    run->write_config(cfg);
    if (cfg.b("tensorboard")) run->enable_tensorboard();
    log_config(cfg);
    log::info("run directory {}; checkpoints in {}; {}", run->dir(), ckpt_dir, rt.describe());
    if (resume) log::info("resuming from checkpoint {}", resume->first);
  }
  // One process per host extracts or downloads the data; the others read it after the barrier, as they
  // read the checkpoint rank 0 chose (every host must see the checkpoint directory).
  if (!topo || topo->local_rank == 0) data_dir = prepare_dataset(cfg);
  barrier();
  if (!leader) {
    resume = find_resume_point(cfg, ckpt_dir, false);
    if (resume) train::check_resume_config(cfg, resume->second.config, resume->first, true);
  }
  if (topo && topo->local_rank != 0) data_dir = prepare_dataset(cfg);

  // 2. Data: extract or download if needed, read and validate, carve the validation split.
  const data::Dataset ds = data::read_dataset(data_dir);
  const auto seed = static_cast<uint64_t>(cfg.i("seed"));
  data::TrainValSplit split = data::stratified_split(ds.train.fine, cfg.i("val_size"), seed);
  data::limit_train(split, cfg.i("train_limit"));
  log::info("data {}: {} training, {} validation, {} test images", ds.dir, split.train.size(), split.val.size(),
            ds.test.size());

  // 3. Model.
  model::seed_torch(seed);
  model::WrnConfig mc{cfg.i("depth"), cfg.i("width"), cfg.f("dropout"), data::kNumClasses};
  if (cfg.s("arch") == "airbench") {
    mc.arch = "airbench";
    mc.widths = parse_widths(cfg.s("widths"), "config key 'widths'");
  }
  model::WideResNet net(mc);
  if (cfg.s("conv_init") == "dirac" && !resume) model::init_weights_dirac(*net);
  if (mc.airbench() && !resume) {
    // The whitening filters come from (up to) 5,000 training images, the same ones on every rank.
    const std::vector<int64_t> first(split.train.begin(),
                                     split.train.begin() + std::min<size_t>(split.train.size(), 5000));
    model::init_whitening(*net, normalized_images(ds.train, first));
  }
  model::place_module(*net, rt);
  log::info("model {}: {} parameters, {:.2f} GMAC per image", mc.name(), model::count_parameters(*net),
            static_cast<double>(model::count_macs(mc)) / 1e9);

  // 4. Train (or continue).
  train::Trainer trainer(cfg, rt, net, run ? &*run : nullptr, checkpointer.get(), group.get());
  // ShardedByS3Key: SageMaker gave each host its own part of the training objects.
  if (sm && topo && sm->env.hosts.size() > 1)
    for (const auto& c : sm->env.channels) {
      if (c.distribution != "ShardedByS3Key") continue;
      if (c.name == "test") {
        log::warn("channel 'test' is ShardedByS3Key: rank 0 tests on the part its host received");
        continue;
      }
      trainer.shard_by_host(topo->local_rank, topo->local_world, static_cast<int>(sm->env.hosts.size()));
    }
  const train::FitResult fit = trainer.fit(ds.train, split.train, split.val, resume ? &resume->second : nullptr);
  if (fit.stopped_by_signal) return exit_status_for(fit.stopped_by_signal);
  if (!leader) return 0;  // rank 0 tests and writes the artifact

  // 5. Test once, with the weights chosen on the validation set.
  if (!split.val.empty()) load_best_weights(net, *run, ckpt_dir);
  const eval::Metrics test = eval::evaluate(net, ds.test, {}, rt, cfg.i("eval_batch_size"),
                                            static_cast<int>(cfg.i("workers")), [] { return signals::stop_requested(); },
                                            /*keep_outputs=*/true, eval::parse_tta(cfg.s("tta")));
  if (test.interrupted) {
    log::info("stopped by {} during the final test; training is complete and checkpointed: run the same command to "
              "test",
              signals::name(signals::stop_signal()));
    return exit_status_for(signals::stop_signal());
  }
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
      {"resumed", resume.has_value()},
      {"wall_seconds", wall},
      {"model", mc.name()},
      {"parameters", model::count_parameters(*net)},
      {"runtime", rt.describe()},
      {"precision", rt.precision()},
  };
  results["hardware"] = describe_hardware(rt);
  if (sm) results["sagemaker"] = {{"job_name", sm->env.job_name}, {"job_arn", sm->env.job_arn},
                                  {"host", sm->env.current_host}};
  // The model artifact: the tested weights, the class names of this data set, the config and the results.
  model::ArtifactInfo info = train::artifact_info(mc, cfg.to_json(), &ds);
  info.metrics = results;
  info.source = {{"run", out}, {"weights", split.val.empty() ? "final" : "best"}, {"best_epoch", fit.best_epoch}};
  if (sm) info.source["training_job"] = sm->env.job_name;
  // The full test report (superclasses, per class, confusion matrix, calibration) from the same pass.
  std::vector<int64_t> coarse;
  for (int64_t y : test.labels) coarse.push_back(info.fine_to_coarse.empty() ? 0 : info.fine_to_coarse[static_cast<size_t>(y)]);
  const eval::Report report = eval::make_report(test.log_probs, test.labels, info.fine_to_coarse.empty() ? std::vector<int64_t>{} : coarse,
                                                info.fine_to_coarse);
  if (report.coarse_top1 >= 0) results["test_coarse_top1"] = report.coarse_top1;
  results["test_ece"] = report.ece;
  info.metrics = results;
  nlohmann::json report_json = eval::to_json(report, info.class_names);
  report_json["split"] = "test";
  report_json["architecture"] = mc.name();
  report_json["weights"] = split.val.empty() ? "final" : "best";
  eval::write_report_dir(run->file("report"), report, report_json, info.class_names);
  fs::write_atomic(run->file("report/gallery.json"), eval::make_gallery(ds.test, test.log_probs, info.class_names).dump() + "\n");
  // What the augmentation made of the first training images (epoch 1's draws), for the report and TensorBoard.
  data::PreviewOptions po;
  po.seed = seed;
  const std::vector<int64_t> shown(split.train.begin(), split.train.begin() + std::min<std::ptrdiff_t>(32, split.train.size()));
  const auto [aug_w, aug_h] = data::write_preview(run->file("report/augmented_samples.png"), ds.train, shown, ds.fine_names,
                                                  data::Pipeline::parse(cfg.s("augment")), po);
  run->write_results(results);
  model::write_artifact(model_dir, *net, info);
  if (train::TensorBoardWriter* tb = run->tensorboard()) {
    const auto step = static_cast<int64_t>(fit.history.size());
    tb->scalars(step, {{"test/loss", test.loss}, {"test/top1", test.top1}, {"test/top5", test.top5}});
    const std::string confusion = fs::read_text(run->file("report/confusion.png"));
    const auto [cw, ch] = data::png_size(confusion);
    tb->image(step, "confusion", ch, cw, confusion);
    tb->image(step, "augmented_samples", aug_h, aug_w, fs::read_text(run->file("report/augmented_samples.png")));
  }
  eval::write_report_html(run->dir(), "", model_dir);
  if (const std::string& to = cfg.s("model_out"); !to.empty()) {
    publish_artifact(model_dir, to);
    log::info("model artifact stored at {}", to);
  }
  log::info("{}", train::format_test_line(test.loss, test.top1, test.top5, wall));
  if (!split.val.empty())
    log::info("tested the weights of epoch {} (best validation top-1 {:.4f})", fit.best_epoch, fit.best_val_top1);
  log::info("results in {} (test report in {}, {}); model artifact in {}", run->file("results.json"), run->file("report"),
            run->file("report.html"), model_dir);
  return 0;
}

// How many processes on this host and where the job's master is: from the SageMaker layout (several
// hosts: master hosts[0] on port 7777, this host's index, the network interface) or from the options.
WorkerPlan plan_workers(const TrainArgs& a, const std::optional<SageMakerJob>& sm) {
  WorkerPlan p;
  if (a.nproc == "auto") {
    const bool cpu = a.cfg.device == "cpu";
    p.nproc = !cpu && torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 1;
  } else {
    try {
      size_t used = 0;
      p.nproc = std::stoi(a.nproc, &used);
      if (used != a.nproc.size() || p.nproc < 1 || p.nproc > 1024) throw std::invalid_argument("range");
    } catch (const std::exception&) {
      fail_config("--nproc '{}': give a number of processes from 1 to 1024, or auto (one per visible GPU, else 1)",
                  a.nproc);
    }
  }
  std::map<std::string, std::string> overrides;
  for (const auto& r : a.resolve) {
    const auto eq = r.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == r.size())
      fail_config("--resolve '{}': expected HOST=ADDRESS (for example algo-1=10.0.0.5)", r);
    overrides[r.substr(0, eq)] = r.substr(eq + 1);
  }
  const char* t = std::getenv("CIFAR100_DIST_TIMEOUT");
  const std::chrono::seconds timeout(t && *t ? std::max(1, std::atoi(t)) : 300);
  if (sm && sm->env.hosts.size() > 1) {
    const auto& hosts = sm->env.hosts;
    const auto it = std::find(hosts.begin(), hosts.end(), sm->env.current_host);
    if (it == hosts.end())
      fail("resourceconfig.json: current_host '{}' is not among hosts [{}]", sm->env.current_host, fmt::join(hosts, ", "));
    p.nnodes = static_cast<int>(hosts.size());
    p.node_rank = static_cast<int>(it - hosts.begin());
    p.master_addr = dist::resolve_host(hosts.front(), overrides, timeout);
    p.master_port = a.master_port > 0 ? a.master_port : 7777;
    if (auto self = overrides.find(sm->env.current_host); self != overrides.end()) p.self_addr = self->second;
    else p.interface = sm->env.network_interface;
    return p;
  }
  p.nnodes = a.nnodes;
  p.node_rank = a.node_rank;
  if (p.node_rank >= p.nnodes) fail_config("--node-rank {} must be below --nnodes {}", p.node_rank, p.nnodes);
  p.master_addr = dist::resolve_host(a.master_addr, overrides, timeout);
  p.master_port = a.master_port > 0 ? a.master_port : (p.nnodes > 1 ? 29500 : 0);
  return p;
}

// Inside SageMaker every failure also goes to output/failure, which the console shows as FailureReason.
int run_train_job(const TrainArgs& a) {
  if (a.help_config) {
    print_config_help();
    return 0;
  }
  std::string failure_file;
  try {
    if (a.sagemaker != "off" && sagemaker::training_layout_present())
      failure_file = sagemaker::failure_file(sagemaker::base_dir());
    if (!failure_file.empty()) {
      std::error_code ec;
      stdfs::remove(failure_file, ec);  // a reason left by an earlier attempt of this job is stale
      sagemaker::install_crash_reporter(failure_file);
    }
    const auto sm = detect_sagemaker(a.sagemaker);
    // A worker started by a launcher (ours or torchrun): join the group.
    if (dist::environment_has_rank()) {
      const dist::Topology topo = dist::from_environment();
      return run_train(a, sm, topo.distributed() ? &topo : nullptr);
    }
    WorkerPlan plan = plan_workers(a, sm);
    plan.failure_file = failure_file;
    if (plan.nproc * plan.nnodes == 1) return run_train(a, sm, nullptr);
    // Outside SageMaker (whose layout the workers apply), a bad configuration is reported once, here.
    if (!sm) {
      ConfigArgs ca = a.cfg;
      if (!a.resume.empty()) ca.sets.insert(ca.sets.begin(), "resume=" + a.resume);
      const Config cfg = resolve(ca);
      const int world = plan.nproc * plan.nnodes;
      if (cfg.i("batch_size") % world != 0)
        fail_config("batch_size {} is the global batch and must divide evenly among the {} ranks: choose a multiple of {}",
                    cfg.i("batch_size"), world, world);
    }
    return run_workers(plan);
  } catch (const std::exception& e) {
    if (!failure_file.empty()) sagemaker::write_failure(failure_file, std::string("cifar100 train: ") + e.what());
    throw;
  }
}
}  // namespace

Runner add_train(CLI::App& root) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = root.add_subcommand("train", "train a WideResNet (writes a run directory; resumable)");
  add_config_args(sub, a->cfg, "YAML config file, e.g. configs/quick-cpu.yaml (keys: --help-config)", true);
  sub->add_option("--out,-o", a->out, "run directory (default runs/YYYYmmdd-HHMMSS)");
  sub->add_option("--resume", a->resume,
                  "auto (default: continue from the newest valid checkpoint if any), none, or a checkpoint path");
  sub->add_flag("--allow-config-change", a->allow_config_change,
                "resume even if the model or data configuration differs from the checkpoint's (fine-tuning)");
  sub->add_flag("--overwrite", a->overwrite, "replace the results of an earlier run in --out when not resuming");
  sub->add_flag("--help-config", a->help_config, "list every config key with its default and help, then exit");
  sub->add_option("--sagemaker", a->sagemaker,
                  "auto (default): use the SageMaker layout under $SAGEMAKER_BASE_DIR or /opt/ml when it is there; "
                  "on: require it; off: ignore it")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  sub->add_option("--nproc", a->nproc,
                  "processes on this host, each training on its share of every global batch: a number, or auto "
                  "(default: one per visible GPU, else 1)")
      ->group("Distributed");
  sub->add_option("--nnodes", a->nnodes, "hosts in the job (default 1; SageMaker: from resourceconfig.json)")
      ->check(CLI::Range(1, 65536))
      ->group("Distributed");
  sub->add_option("--node-rank", a->node_rank, "this host's index, 0 to nnodes-1 (default 0; SageMaker: current_host's)")
      ->check(CLI::Range(0, 65535))
      ->group("Distributed");
  sub->add_option("--master-addr", a->master_addr,
                  "host of rank 0, which serves the rendezvous (default 127.0.0.1; SageMaker: hosts[0])")
      ->group("Distributed");
  sub->add_option("--master-port", a->master_port,
                  "rendezvous port (default: a free port on one host, 29500 on several; SageMaker: 7777)")
      ->check(CLI::Range(1, 65535))
      ->group("Distributed");
  sub->add_option("--resolve", a->resolve,
                  "HOST=ADDRESS: use this address for a host name (repeatable; e.g. SageMaker host names without DNS)")
      ->group("Distributed");
  return [a] { return run_train_job(*a); };
}

}  // namespace cifar::cli
