#include "train/checkpoint.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "cloud/storage.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/rng.h"
#include "model/torch_compat.h"
#include "model/safetensors.h"
#include "model/wide_resnet.h"

namespace cifar::train {

namespace stdfs = std::filesystem;
namespace safetensors = model::safetensors;

namespace {
constexpr const char* kState = "state.safetensors";
constexpr const char* kMeta = "meta.json";
constexpr const char* kSums = "SHA256SUMS";
constexpr size_t kMaxParameters = 100000;  // parameter tensors of a model (WRN-28-10 has 110)

std::string checkpoint_name(const TrainState& s, bool best) {
  return fmt::format("{}-{:09d}", best ? "best" : "ckpt", s.step);
}

// Step encoded in a checkpoint directory name, or -1 when the name is not one of ours.
int64_t step_of(const std::string& name) {
  for (const char* prefix : {"ckpt-", "best-"}) {
    const std::string p = prefix;
    if (name.rfind(p, 0) == 0 && name.size() == p.size() + 9 &&
        name.find_first_not_of("0123456789", p.size()) == std::string::npos)
      return std::stoll(name.substr(p.size()));
  }
  return -1;
}

nlohmann::json state_to_json(const TrainState& s) {
  nlohmann::json h = nlohmann::json::array();
  for (const auto& m : s.history) h.push_back(to_json(m));
  return {{"epoch", s.epoch},
          {"batch", s.batch},
          {"step", s.step},
          {"loss_sum", s.loss_sum},
          {"hit_sum", s.hit_sum},
          {"grad_norm", {{"sum", s.grad_norm_sum}, {"steps", s.grad_norm_steps}}},
          {"seen", s.seen},
          {"train_seconds", s.train_seconds},
          {"early_stopping", {{"best", s.es_best}, {"best_epoch", s.es_best_epoch}, {"bad_epochs", s.es_bad_epochs}}},
          {"best_epoch", s.best_epoch},
          {"best_val_top1", s.best_val_top1},
          {"finished", s.finished},
          {"early_stopped", s.early_stopped},
          {"loss_scale", {{"scale", s.loss_scale}, {"growth_tracker", s.scale_growth_tracker}, {"skipped_steps", s.skipped_steps}}},
          {"history", h}};
}

TrainState state_from_json(const nlohmann::json& j) {
  TrainState s;
  s.epoch = j.at("epoch").get<int64_t>();
  s.batch = j.at("batch").get<int64_t>();
  s.step = j.at("step").get<int64_t>();
  s.loss_sum = j.at("loss_sum").get<double>();
  s.hit_sum = j.at("hit_sum").get<double>();
  if (j.contains("grad_norm")) {  // absent from checkpoints written before it was measured
    s.grad_norm_sum = j["grad_norm"].at("sum").get<double>();
    s.grad_norm_steps = j["grad_norm"].at("steps").get<int64_t>();
  }
  s.seen = j.at("seen").get<int64_t>();
  s.train_seconds = j.at("train_seconds").get<double>();
  const auto& es = j.at("early_stopping");
  s.es_best = es.at("best").get<double>();
  s.es_best_epoch = es.at("best_epoch").get<int64_t>();
  s.es_bad_epochs = es.at("bad_epochs").get<int64_t>();
  s.best_epoch = j.at("best_epoch").get<int64_t>();
  s.best_val_top1 = j.at("best_val_top1").get<double>();
  s.finished = j.at("finished").get<bool>();
  s.early_stopped = j.at("early_stopped").get<bool>();
  if (j.contains("loss_scale")) {  // absent from checkpoints of earlier versions
    const auto& ls = j.at("loss_scale");
    s.loss_scale = ls.at("scale").get<double>();
    s.scale_growth_tracker = ls.at("growth_tracker").get<int64_t>();
    s.skipped_steps = ls.at("skipped_steps").get<int64_t>();
  }
  for (const auto& m : j.at("history")) s.history.push_back(epoch_metrics_from_json(m));
  return s;
}

void remove_quietly(const std::string& p) {
  std::error_code ec;
  stdfs::remove_all(p, ec);
}

// A private CPU copy (never a view of the live tensor: the background writer reads it while training goes on).
at::Tensor cpu_copy(const at::Tensor& t) { return t.detach().to(torch::kCPU).clone(at::MemoryFormat::Contiguous); }

at::Generator default_generator(c10::DeviceType type) {
  return at::globalContext().defaultGenerator(c10::Device(type, type == c10::kCPU ? -1 : 0));
}
}  // namespace

// ------------------------------------------------------------------------------------ capture/restore

Snapshot capture(const torch::nn::Module& model, const torch::optim::Optimizer& opt,
                 const std::vector<at::Tensor>& params, const TrainState& state, const nlohmann::json& config,
                 const std::string& reason, const torch::nn::Module* ema) {
  torch::NoGradGuard no_grad;
  Snapshot s;
  s.state = state;
  s.config = config;
  s.reason = reason;
  for (const auto& [name, t] : model::state_dict(model)) s.model.emplace_back(name, cpu_copy(t));
  if (ema)
    for (const auto& [name, t] : model::state_dict(*ema)) s.ema.emplace_back(name, cpu_copy(t));
  const auto& st = opt.state();
  for (const auto& p : params) {
    auto it = st.find(compat::optimizer_state_key(st, p));
    at::Tensor buf;
    if (it != st.end()) buf = static_cast<const torch::optim::SGDParamState&>(*it->second).momentum_buffer();
    s.momentum.push_back(buf.defined() ? cpu_copy(buf) : at::Tensor());
  }
  {
    auto gen = default_generator(c10::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    s.rng_cpu = gen.get_state();
  }
  if (!params.empty() && params[0].is_cuda()) {
    auto gen = default_generator(c10::kCUDA);
    std::lock_guard<std::mutex> lock(gen.mutex());
    s.rng_cuda = gen.get_state();
  }
  return s;
}

void load_state(const std::vector<std::pair<std::string, at::Tensor>>& tensors, torch::nn::Module& model,
                const std::string& what) {
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  for (auto& [name, t] : model::state_dict(model)) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail("{} has no tensor '{}' for this model (different depth or width?)", what, name);
    if (it->second.sizes() != t.sizes())
      fail("{}: tensor '{}' has a different shape than the model's (different depth or width?)", what, name);
    t.copy_(it->second);
  }
}

void restore_weights(const Snapshot& s, torch::nn::Module& model) { load_state(s.model, model, "checkpoint"); }

void restore(const Snapshot& s, torch::nn::Module& model, torch::optim::Optimizer& opt,
             const std::vector<at::Tensor>& params) {
  torch::NoGradGuard no_grad;
  restore_weights(s, model);
  if (s.momentum.size() != params.size())
    fail("checkpoint has optimizer state for {} parameters, the model has {}", s.momentum.size(), params.size());
  auto& st = opt.state();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto key = compat::optimizer_state_key(st, params[i]);
    st.erase(key);
    if (!s.momentum[i].defined()) continue;
    // Same memory format as the parameter (and so as its gradients), so the update runs the same kernels.
    at::Tensor buf = torch::empty_like(params[i]);
    buf.copy_(s.momentum[i]);
    auto ps = std::make_unique<torch::optim::SGDParamState>();
    ps->momentum_buffer(buf);
    st[key] = std::move(ps);
  }
  {
    auto gen = default_generator(c10::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s.rng_cpu);
  }
  if (s.rng_cuda.defined() && !params.empty() && params[0].is_cuda()) {
    auto gen = default_generator(c10::kCUDA);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s.rng_cuda);
  }
}

// ------------------------------------------------------------------------------------------ writing

Checkpointer::Checkpointer(std::string dir, int64_t keep) : dir_(std::move(dir)), keep_(std::max<int64_t>(1, keep)) {
  fs::make_dirs(dir_);
  const std::string lock_path = (stdfs::path(dir_) / ".lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) fail("cannot create '{}': {}", lock_path, std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail("checkpoint directory '{}' is in use by another cifar100 process; use another --out or checkpoint_dir", dir_);
  }
  for (const auto& e : stdfs::directory_iterator(dir_))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) {
      log::warn("removing '{}', an incomplete checkpoint left by an interrupted save", e.path().string());
      remove_quietly(e.path().string());
    }
}

Checkpointer::~Checkpointer() {
  const std::string err = wait();
  if (!err.empty()) log::error("{}", err);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Checkpointer::write(const Snapshot& s, bool best) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = checkpoint_name(s.state, best);
  const std::string final_path = (stdfs::path(dir_) / name).string();
  const std::string tmp = (stdfs::path(dir_) / fmt::format(".tmp-{}-{}", name, ::getpid())).string();
  remove_quietly(tmp);
  try {
    fs::make_dirs(tmp);
    safetensors::Tensors tensors;
    for (const auto& [n, t] : s.model) tensors.emplace_back("model/" + n, t);
    for (const auto& [n, t] : s.ema) tensors.emplace_back("ema/" + n, t);
    for (size_t i = 0; i < s.momentum.size(); ++i)
      if (s.momentum[i].defined()) tensors.emplace_back("momentum/" + std::to_string(i), s.momentum[i]);
    tensors.emplace_back("rng/cpu", s.rng_cpu);
    if (s.rng_cuda.defined()) tensors.emplace_back("rng/cuda", s.rng_cuda);
    const std::string state_sha = safetensors::write((stdfs::path(tmp) / kState).string(), tensors,
                                                     {{"format", "cifar100-checkpoint"}});
    nlohmann::json meta = {{"format", kCheckpointFormat},
                           {"program", "cifar100 0.1.0"},
                           {"torch", TORCH_VERSION},
                           {"created", log::format_now("%Y-%m-%dT%H:%M:%SZ", true)},
                           {"reason", s.reason},
                           {"kind", best ? "best" : "ckpt"},
                           {"parameters", s.momentum.size()},
                           {"state", state_to_json(s.state)},
                           {"config", s.config}};
    const std::string meta_text = meta.dump(1) + "\n";
    const std::string sums =
        fmt::format("{}  {}\n{}  {}\n", state_sha, kState, hash::sha256(meta_text.data(), meta_text.size()), kMeta);
    fs::write_atomic((stdfs::path(tmp) / kMeta).string(), meta_text);
    fs::write_atomic((stdfs::path(tmp) / kSums).string(), sums);
    fs::sync_dir(tmp);
    std::error_code ec;
    if (stdfs::exists(final_path)) {
      // The same step saved again (a signal right after an epoch's save): swap the complete new directory
      // with the old one in one step, so that a valid checkpoint sits at the name at every moment.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) != 0)
        fail("cannot replace '{}': {}", final_path, std::strerror(errno));
      if (const char* t = std::getenv("CIFAR100_TEST_ABORT_AFTER_SWAP")) {  // tests: die before the cleanup
        if (std::string(t) == "1") std::abort();
      }
      fs::sync_dir(dir_);
      remove_quietly(tmp);  // now the previous one; a leftover is removed at the next start
    } else {
      stdfs::rename(tmp, final_path, ec);
      if (ec) fail("cannot rename '{}' to '{}': {}", tmp, final_path, ec.message());
      fs::sync_dir(dir_);
    }
  } catch (const std::exception& e) {
    remove_quietly(tmp);
    fail("checkpoint '{}' was not written: {}; older checkpoints are untouched", final_path, e.what());
  }
  const std::vector<std::string> pruned = prune(best);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("checkpoint {} written ({}, epoch {}, batch {}, step {}, {:.2f} s)", final_path, s.reason,
            s.state.epoch + 1, s.state.batch, s.state.step, seconds);
  if (!mirror_.empty()) mirror(name, pruned);
}

void Checkpointer::mirror(const std::string& name, const std::vector<std::string>& pruned) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    cloud::publish_dir((stdfs::path(dir_) / name).string(), cloud::join(mirror_, name), {kState, kMeta, kSums});
    for (const auto& old : pruned) {
      cloud::Storage& st = cloud::storage_for(mirror_);
      for (const char* f : {kSums, kMeta, kState}) st.remove(cloud::join(cloud::join(mirror_, old), f));
    }
    log::info("checkpoint {} mirrored to {} ({:.2f} s)", name, cloud::join(mirror_, name),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  } catch (const std::exception& e) {
    log::warn("checkpoint {} was not mirrored to {}: {}; the local copy is complete, training goes on", name, mirror_,
              e.what());
  }
}

int Checkpointer::pull_mirror(const std::string& mirror, const std::string& dir) {
  if (!list(dir).empty()) return 0;
  cloud::Storage& st = cloud::storage_for(mirror);
  std::map<std::string, std::set<std::string>> files;  // checkpoint name -> its files in the mirror
  for (const auto& e : st.list(mirror)) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos) files[e.name.substr(0, slash)].insert(e.name.substr(slash + 1));
  }
  std::vector<std::pair<int64_t, std::string>> complete;
  for (const auto& [name, have] : files)
    if (step_of(name) >= 0 && have.count(kSums) && have.count(kMeta) && have.count(kState))
      complete.emplace_back(step_of(name), name);
  std::sort(complete.rbegin(), complete.rend());
  int pulled = 0;
  for (const char* kind : {"ckpt-", "best-"}) {
    auto it = std::find_if(complete.begin(), complete.end(), [&](const auto& c) { return c.second.rfind(kind, 0) == 0; });
    if (it == complete.end()) continue;
    const std::string tmp = (stdfs::path(dir) / (".tmp-" + it->second)).string();
    remove_quietly(tmp);
    fs::make_dirs(tmp);
    for (const char* f : {kState, kMeta, kSums})
      st.get(cloud::join(cloud::join(mirror, it->second), f), (stdfs::path(tmp) / f).string());
    std::error_code ec;
    stdfs::rename(tmp, stdfs::path(dir) / it->second, ec);
    if (ec) fail("cannot move '{}' into place: {}", tmp, ec.message());
    log::info("checkpoint {} copied from the mirror {}", it->second, mirror);
    ++pulled;
  }
  return pulled;
}

std::vector<std::string> Checkpointer::prune(bool best) {
  // Keep the newest `keep` periodic checkpoints and the newest best one.
  int64_t kept = 0;
  std::vector<std::string> removed;
  for (const auto& path : list(dir_)) {
    const std::string name = stdfs::path(path).filename().string();
    const bool is_best = name.rfind("best-", 0) == 0;
    if (is_best != best) continue;
    if (++kept > (best ? 1 : keep_)) {
      remove_quietly(path);
      removed.push_back(name);
    }
  }
  return removed;
}

void Checkpointer::throw_if_failed() {
  if (!failed_.load(std::memory_order_relaxed)) return;
  const std::string err = wait();
  failed_ = false;
  const auto all = list(dir_);
  fail("{}; stopping here rather than training on without checkpoints. The newest complete checkpoint is {}: fix "
       "the cause (free disk space) and run the same command again to resume from it",
       err, all.empty() ? std::string("none") : "'" + all.front() + "'");
}

std::string Checkpointer::save(const Snapshot& s, bool best) {
  throw_if_failed();
  const std::string err = wait();
  if (!err.empty()) log::error("{}", err);
  write(s, best);
  return (stdfs::path(dir_) / checkpoint_name(s.state, best)).string();
}

void Checkpointer::save_async(Snapshot s, bool best) {
  throw_if_failed();
  const std::string err = wait();
  if (!err.empty()) log::error("{}", err);
  worker_ = std::thread([this, s = std::move(s), best]() {
    try {
      write(s, best);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      pending_error_ = e.what();
      failed_ = true;
    }
  });
}

std::string Checkpointer::wait() {
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = false;
  return std::exchange(pending_error_, std::string());
}

// ------------------------------------------------------------------------------------------ reading

std::vector<std::string> Checkpointer::list(const std::string& dir) {
  std::vector<std::pair<std::pair<int64_t, int>, std::string>> found;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return {};
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const int64_t step = step_of(name);
    if (step >= 0 && e.is_directory()) found.push_back({{step, name.rfind("ckpt-", 0) == 0 ? 1 : 0}, e.path().string()});
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

Snapshot Checkpointer::load(const std::string& path) {
  auto file_path = [&](const char* n) { return (stdfs::path(path) / n).string(); };
  if (!fs::exists(file_path(kSums))) fail("checkpoint '{}' is incomplete: {} is missing", path, kSums);
  std::map<std::string, std::string> sums;
  {
    std::istringstream in(fs::read_text(file_path(kSums)));
    std::string hex, name;
    while (in >> hex >> name) sums[name] = hex;
  }
  std::map<std::string, std::vector<uint8_t>> bytes;
  for (const char* n : {kState, kMeta}) {
    if (!fs::exists(file_path(n))) fail("checkpoint '{}' is incomplete: {} is missing", path, n);
    bytes[n] = fs::read_bytes(file_path(n));
    if (!sums.count(n)) fail("checkpoint '{}': {} lists no checksum for {}", path, kSums, n);
    if (hash::sha256(bytes[n].data(), bytes[n].size()) != sums[n])
      fail("checkpoint '{}': {} is corrupt (its SHA-256 does not match {})", path, n, kSums);
  }
  Snapshot s;
  nlohmann::json meta;
  size_t nparams = 0;
  try {
    meta = nlohmann::json::parse(bytes[kMeta].begin(), bytes[kMeta].end());
    const int format = meta.at("format").get<int>();
    if (format > kCheckpointFormat)
      fail("checkpoint '{}' has format {}, newer than this program's {}: use a newer cifar100", path, format,
           kCheckpointFormat);
    s.state = state_from_json(meta.at("state"));
    s.config = meta.at("config");
    s.reason = meta.value("reason", "");
    nparams = meta.at("parameters").get<size_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint '{}': {} is not valid: {}", path, kMeta, e.what());
  }
  if (nparams > kMaxParameters)
    fail("checkpoint '{}': {} lists {} parameters; no model here has more than {}", path, kMeta, nparams, kMaxParameters);
  const auto& raw = bytes[kState];
  safetensors::File file = safetensors::parse(raw.data(), raw.size(), file_path(kState));
  s.momentum.resize(nparams);
  for (auto& [key, t] : file.tensors) {
    if (key.rfind("model/", 0) == 0) s.model.emplace_back(key.substr(6), t);
    else if (key.rfind("ema/", 0) == 0) s.ema.emplace_back(key.substr(4), t);
    else if (key.rfind("momentum/", 0) == 0) {
      const std::string idx = key.substr(9);
      if (idx.empty() || idx.size() > 9 || idx.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(idx) >= nparams)
        fail("checkpoint '{}': momentum buffer '{}' is not one of the {} parameters", path, idx, nparams);
      const size_t i = std::stoul(idx);
      s.momentum[i] = t;
    } else if (key == "rng/cpu") s.rng_cpu = t;
    else if (key == "rng/cuda") s.rng_cuda = t;
  }
  if (!s.rng_cpu.defined()) fail("checkpoint '{}': {} has no RNG state", path, kState);
  return s;
}

std::optional<std::pair<std::string, Snapshot>> Checkpointer::load_latest(const std::string& dir,
                                                                          std::vector<std::string>& problems) {
  const auto all = list(dir);
  for (const auto& path : all) {
    try {
      return std::make_pair(path, load(path));
    } catch (const Error& e) {
      problems.push_back(e.what());
    } catch (const std::exception& e) {  // any other failure of a malformed checkpoint (JSON, torch, allocation)
      problems.push_back(fmt::format("checkpoint '{}' is unusable: {}", path, e.what()));
    }
  }
  if (all.empty()) return std::nullopt;
  std::string msg = fmt::format("none of the {} checkpoints in '{}' is valid (nothing was deleted):", all.size(), dir);
  for (const auto& p : problems) msg += "\n  " + p;
  throw Error(msg);
}

std::optional<std::pair<std::string, Snapshot>> Checkpointer::load_best(const std::string& dir) {
  for (const auto& path : list(dir)) {
    if (std::filesystem::path(path).filename().string().rfind("best-", 0) != 0) continue;
    try {
      return std::make_pair(path, load(path));
    } catch (const std::exception& e) {
      log::warn("skipping an unusable best checkpoint {}: {}", path, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace cifar::train
