#include "common/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/error.h"

namespace cifar {

const char* const kOfficialUrl = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
const char* const kOfficialMd5 = "03b5dce01913d631647c71ecec9e9cb8";

const std::vector<OptionSpec>& option_table() {
  constexpr double kBig = 1e300;
  static const std::vector<OptionSpec> table = {
      // model
      {"arch", OptType::String, "wrn",
       "network: wrn (WideResNet-depth-width) or airbench (patch-whitening + three conv groups of `widths` "
       "channels; the speedrun network)", "model", "", {"wrn", "airbench"}},
      {"widths", OptType::String, "64,256,256", "airbench: channels of its three conv groups", "model", "", {}},
      {"conv_init", OptType::String, "kaiming",
       "weight initialisation of a fresh run: kaiming (He normal, fan-in, ReLU gain) or dirac (airbench: "
       "PyTorch's default uniform, each convolution's first min(in, out) filters set to the identity)",
       "model", "", {"kaiming", "dirac"}},
      {"depth", OptType::Int, "28", "WideResNet depth, 6n+4 (10, 16, 22, 28, 40, ...)", "model", "", {}, 10, 1000},
      {"width", OptType::Int, "10", "WideResNet widening factor k (channels 16k, 32k, 64k)", "model", "", {}, 1, 64},
      {"dropout", OptType::Float, "0.3", "dropout between the two convolutions of each block", "model", "", {}, 0, 1, true},
      // optimisation
      {"epochs", OptType::Int, "100", "number of training epochs", "optim", "", {}, 1, 1e6},
      {"batch_size", OptType::Int, "256", "training batch size (total, per step)", "optim", "", {}, 1, 65536},
      {"lr", OptType::Float, "0.1", "base learning rate at lr_reference_batch; scaled linearly with batch_size",
       "optim", "", {}, 1e-12, 100},
      {"lr_reference_batch", OptType::Int, "256",
       "batch size at which lr applies: peak lr = lr * batch_size / lr_reference_batch", "optim", "", {}, 1, 65536},
      {"lr_schedule", OptType::String, "cosine",
       "after warmup: cosine (annealing to min_lr) or linear (straight down to min_lr)", "optim", "",
       {"cosine", "linear"}},
      {"min_lr", OptType::Float, "0", "learning rate at the end of the schedule", "optim", "", {}, 0, 100},
      {"warmup_epochs", OptType::Float, "5", "linear warmup length in epochs (fractions allowed), then cosine",
       "optim", "", {}, 0, 1e6},
      {"momentum", OptType::Float, "0.9", "SGD momentum", "optim", "", {}, 0, 1, true},
      {"nesterov", OptType::Bool, "true", "use Nesterov momentum", "optim", "", {}, -kBig, kBig},
      {"weight_decay", OptType::Float, "0.0005", "L2 weight decay", "optim", "", {}, 0, 1},
      {"decay_norm_and_bias", OptType::Bool, "false", "also apply weight decay to batch-norm parameters and biases",
       "optim", "", {}, -kBig, kBig},
      {"label_smoothing", OptType::Float, "0.1", "label smoothing epsilon", "optim", "", {}, 0, 1, true},
      {"mixup_alpha", OptType::Float, "0.2", "MixUp Beta(alpha, alpha) parameter; 0 turns MixUp off", "augment", "",
       {}, 0, 1000},
      {"ema_decay", OptType::Float, "0",
       "exponential moving average of the weights, decay per step (e.g. 0.999); validated every epoch beside the "
       "raw weights and selectable as the best weights; 0 turns it off", "optim", "", {}, 0, 1, true},
      {"sam_rho", OptType::Float, "0",
       "Sharpness-Aware Minimization neighbourhood size (0.05-0.1 for SAM, 0.5-2 for ASAM); two forward and "
       "backward passes per step; 0 turns it off", "optim", "", {}, 0, 100},
      {"sam_adaptive", OptType::Bool, "false", "ASAM: scale the SAM perturbation by |w| per weight", "optim", "", {},
       -kBig, kBig},
      {"grad_clip", OptType::Float, "1.0", "clip gradients to this global L2 norm; 0 turns clipping off", "optim", "",
       {}, 0, 1e9},
      {"early_stopping_patience", OptType::Int, "15",
       "stop after this many epochs without a better validation top-1; 0 turns early stopping off", "optim", "", {}, 0,
       1e6},
      // augmentation
      {"augment", OptType::String, "standard",
       "training augmentation pipeline: a preset (none, standard, seed, autoaugment, randaugment, trivialaugment) "
       "or transforms such as 'random_crop(padding=4); hflip; trivial_augment_wide; cutout(size=16)' (docs/AUGMENTATION.md)",
       "augment", "", {}, -kBig, kBig, false, true},
      {"augment_on_device", OptType::String, "auto",
       "run the augmentation as batched tensor operations on the training device, the data set resident there "
       "(crop, flip and cutout; pixel-identical to the CPU loader): auto (on CUDA when the pipeline allows), "
       "true, false", "augment", "", {"auto", "true", "false"}},
      {"cutmix_alpha", OptType::Float, "0", "CutMix Beta(alpha, alpha) parameter; 0 turns CutMix off", "augment", "",
       {}, 0, 1000},
      {"mix_prob", OptType::Float, "1.0", "probability that a batch is mixed (MixUp or CutMix) when either is on",
       "augment", "", {}, 0, 1},
      {"mix_switch_prob", OptType::Float, "0.5", "with both MixUp and CutMix on, probability of CutMix for a batch",
       "augment", "", {}, 0, 1},
      // data
      {"val_size", OptType::Int, "5000",
       "validation images carved from the training set (stratified, fixed by seed); 0 = no validation", "data", "", {},
       0, 50000},
      {"train_limit", OptType::Int, "0", "train on only the first N remaining training images; 0 = all", "data", "",
       {}, 0, 1e9},
      {"drop_last", OptType::Bool, "true", "drop the last incomplete training batch of each epoch", "data", "", {},
       -kBig, kBig},
      {"data_dir", OptType::String, "",
       "directory holding the extracted data set (train.bin, test.bin, label names), or an s3:// prefix holding "
       "them (as `data upload` writes it); default $XDG_CACHE_HOME/cifar100/cifar-100-binary",
       "data", "CIFAR100_DATA_DIR"},
      {"archive", OptType::String, "",
       "cifar-100-binary.tar.gz (a path or an s3:// address) to extract instead of downloading",
       "data", "CIFAR100_ARCHIVE"},
      {"archive_md5", OptType::String, "",
       "expected MD5 of the local archive; empty = accept it with a warning if it is not the official one", "data",
       ""},
      {"data_url", OptType::String, kOfficialUrl, "where `data download` fetches the archive", "data",
       "CIFAR100_DATA_URL"},
      {"archive_sha256", OptType::String, "",
       "expected SHA-256 of the local archive (64 hex digits); empty = not checked (the SHA-256 is logged)", "data", ""},
      {"download_md5", OptType::String, kOfficialMd5, "MD5 the downloaded archive must have (the checksum the data "
       "set's publisher gives)", "data", ""},
      {"download_sha256", OptType::String, "",
       "SHA-256 the downloaded archive must have; empty = not checked (the publisher gives none; it is logged)", "data",
       ""},
      {"download_bytes", OptType::Int, "168513733", "size the downloaded archive must have", "data", "", {}, 1, 1e12},
      // checkpoints
      {"checkpoint_dir", OptType::String, "",
       "where checkpoints go; default OUT/checkpoints (SageMaker: /opt/ml/checkpoints)", "checkpoint",
       "CIFAR100_CHECKPOINT_DIR"},
      {"checkpoint_mirror", OptType::String, "",
       "also copy every complete checkpoint here (a directory or s3://bucket/prefix) and resume from it when the "
       "checkpoint directory is empty; \"\" = off",
       "checkpoint", "CIFAR100_CHECKPOINT_MIRROR"},
      {"checkpoint_every_epochs", OptType::Int, "10", "write a checkpoint every N epochs; 0 = only at the end",
       "checkpoint", "", {}, 0, 1e6},
      {"checkpoint_every_minutes", OptType::Float, "0",
       "also write a checkpoint when this many minutes passed since the last one (mid-epoch too); 0 = off",
       "checkpoint", "", {}, 0, 1e6},
      {"checkpoint_keep", OptType::Int, "2", "periodic checkpoints kept (newest first), besides the best one",
       "checkpoint", "", {}, 1, 1000},
      {"model_out", OptType::String, "",
       "also store the model artifact here: a directory, a model.tar.gz, or either at an s3:// address; \"\" = only "
       "OUT/model",
       "checkpoint", "CIFAR100_MODEL_OUT"},
      {"resume", OptType::String, "auto",
       "auto (continue from the newest valid checkpoint if there is one), none (start afresh), or a checkpoint path",
       "checkpoint", "CIFAR100_RESUME"},
      // system
      {"seed", OptType::Int, "42", "random seed for initialisation, split, shuffling, augmentation, MixUp", "system",
       "", {}, 0, 9.2e18},
      {"device", OptType::String, "auto", "auto (CUDA when available), cpu or cuda", "system", "CIFAR100_DEVICE",
       {"auto", "cpu", "cuda"}},
      {"precision", OptType::String, "auto",
       "auto (bf16 autocast where the CPU or GPU supports bf16, else fp32), fp32, bf16, or fp16 (CUDA only: "
       "float16 autocast with a dynamic loss scale)", "system",
       "CIFAR100_PRECISION", {"auto", "fp32", "bf16", "fp16"}},
      {"channels_last", OptType::Bool, "true", "channels-last (NHWC) memory format for activations and weights",
       "system", "", {}, -kBig, kBig},
      {"caching_allocator", OptType::Bool, "true",
       "keep large CPU tensor blocks for reuse instead of returning them to the OS (much faster eager training on "
       "the CPU; never installed when the device is CUDA)",
       "system", "", {}, -kBig, kBig},
      {"threads", OptType::Int, "0", "intra-op CPU threads; 0 = one per available core", "system", "CIFAR100_THREADS",
       {}, 0, 4096},
      {"workers", OptType::Int, "1", "data loader threads; 0 = load batches in the training thread", "system", "", {},
       0, 256},
      {"prefetch", OptType::Int, "4", "batches the loader may prepare ahead", "system", "", {}, 1, 1024},
      {"synthetic_data", OptType::Bool, "false",
       "train on one pre-made batch reused every step instead of the loader (to measure the loader's cost)", "system",
       "", {}, -kBig, kBig},
      {"tta", OptType::String, "none",
       "test-time augmentation for validation and the final test: none, flip (with the mirror image) or "
       "flip_translate (six views: those two, each also shifted by one pixel up-left and down-right)", "system", "",
       {"none", "flip", "flip_translate"}},
      {"eval_batch_size", OptType::Int, "500", "batch size for validation and test", "system", "", {}, 1, 65536},
      {"sync_bn", OptType::Bool, "false",
       "distributed training: batch norm uses the statistics of the global batch (all ranks) instead of each "
       "rank's share",
       "system", "", {}, -kBig, kBig},
      {"dist_timeout", OptType::Float, "300",
       "distributed training: seconds to wait for every rank at the rendezvous and for any collective", "system",
       "CIFAR100_DIST_TIMEOUT", {}, 1, 86400},
      {"bucket_mb", OptType::Float, "25",
       "distributed training: MiB of gradients per all-reduce bucket (the first bucket holds 1 MiB)", "system", "", {},
       0.01, 4096},
      {"log_interval", OptType::Int, "50",
       "steps between progress lines when stdout is not a terminal; 0 = only epoch lines", "system", "", {}, 0, 1e9},
      {"tensorboard", OptType::Bool, "true",
       "write TensorBoard event files to OUT/tensorboard/: every epoch's metrics as scalars, the confusion heat map "
       "and augmented samples as images",
       "system", "", {}, -kBig, kBig},
  };
  return table;
}

ResumeRule resume_rule(const std::string& key) {
  // What a checkpoint's weights and data order depend on must match; where data lives, how many threads
  // run, how often to log or save may change freely; the rest changes the run from then on (warned).
  static const std::set<std::string> must = {"arch", "widths", "depth", "width", "dropout", "batch_size", "val_size", "train_limit",
                                             "drop_last", "augment", "seed", "synthetic_data"};
  static const std::set<std::string> free = {
      "data_dir", "archive", "archive_md5", "archive_sha256", "data_url", "download_md5", "download_sha256",
      "download_bytes", "device", "threads",
      "workers", "prefetch", "eval_batch_size", "log_interval", "checkpoint_dir", "checkpoint_every_epochs",
      "checkpoint_every_minutes", "checkpoint_keep", "resume", "caching_allocator", "checkpoint_mirror", "model_out",
      "dist_timeout", "bucket_mb", "augment_on_device", "tensorboard", "conv_init"};
  if (must.count(key)) return ResumeRule::MustMatch;
  if (free.count(key)) return ResumeRule::Free;
  return ResumeRule::Warn;
}

const OptionSpec* find_option(const std::string& key) {
  for (const auto& o : option_table())
    if (o.key == key) return &o;
  return nullptr;
}

const char* source_name(Source s) {
  switch (s) {
    case Source::Default: return "default";
    case Source::Platform: return "SageMaker layout";
    case Source::File: return "config file";
    case Source::Env: return "environment";
    case Source::Hyperparameter: return "hyperparameters";
    case Source::CommandLine: return "command line";
  }
  return "?";
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string fmt_number(double v) { return fmt::format("{}", v); }

std::string range_text(const OptionSpec& spec) {
  if (spec.max >= 1e6 && spec.type == OptType::Int) return fmt::format("must be at least {}", fmt_number(spec.min));
  if (spec.type == OptType::Int)
    return fmt::format("must be between {} and {}", fmt_number(spec.min), fmt_number(spec.max));
  if (spec.max >= 1e6) return fmt::format("must be at least {}", fmt_number(spec.min));
  return fmt::format("must be in [{}, {}{}", fmt_number(spec.min), fmt_number(spec.max), spec.max_exclusive ? ")" : "]");
}

Config::Value parse_value(const OptionSpec& spec, const std::string& raw, const std::string& origin) {
  const std::string t = trim(raw);
  auto bad = [&](const std::string& why) -> ConfigError {
    return ConfigError(fmt::format("{}: invalid value '{}' for '{}': {} ({})", origin, raw, spec.key, why, spec.help));
  };
  switch (spec.type) {
    case OptType::Int: {
      if (t.empty()) throw bad("expected an integer");
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(t.c_str(), &end, 10);
      if (errno != 0 || end != t.c_str() + t.size()) throw bad("expected an integer");
      if (static_cast<double>(v) < spec.min || static_cast<double>(v) > spec.max) throw bad(range_text(spec));
      return static_cast<int64_t>(v);
    }
    case OptType::Float: {
      if (t.empty()) throw bad("expected a number");
      char* end = nullptr;
      errno = 0;
      double v = std::strtod(t.c_str(), &end);
      if (errno != 0 || end != t.c_str() + t.size() || !std::isfinite(v)) throw bad("expected a finite number");
      bool too_big = spec.max_exclusive ? v >= spec.max : v > spec.max;
      if (v < spec.min || too_big) throw bad(range_text(spec));
      return v;
    }
    case OptType::Bool: {
      std::string l = t;
      std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
      if (l == "false" || l == "0" || l == "no" || l == "off") return false;
      throw bad("expected true or false");
    }
    case OptType::String: {
      if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), t) == spec.choices.end()) {
        std::string all;
        for (const auto& c : spec.choices) all += (all.empty() ? "" : ", ") + c;
        throw bad("expected one of " + all);
      }
      return t;
    }
  }
  throw bad("unknown type");
}

std::string value_text(const Config::Value& v) {
  if (auto p = std::get_if<int64_t>(&v)) return std::to_string(*p);
  if (auto p = std::get_if<double>(&v)) return fmt_number(*p);
  if (auto p = std::get_if<bool>(&v)) return *p ? "true" : "false";
  return std::get<std::string>(v);
}

// A YAML list of steps ("name", "name(k=v)" or {name: {k: v}}) as "name; name(k=v, ...)".
std::string join_yaml_list(const YAML::Node& list, const std::string& key, const std::string& where) {
  std::string out;
  for (const auto& item : list) {
    std::string step;
    if (item.IsScalar()) {
      step = item.Scalar();
    } else if (item.IsMap() && item.size() == 1) {
      const auto kv = *item.begin();
      step = kv.first.as<std::string>();
      if (kv.second.IsMap()) {
        std::string args;
        for (const auto& a : kv.second) {
          if (!a.second.IsScalar())
            throw ConfigError(fmt::format("{}: key '{}': parameter '{}' of '{}' must be a single value", where, key,
                                          a.first.as<std::string>(), step));
          args += (args.empty() ? "" : ", ") + a.first.as<std::string>() + "=" + a.second.Scalar();
        }
        step += "(" + args + ")";
      } else if (!kv.second.IsNull()) {
        throw ConfigError(fmt::format("{}: key '{}': '{}' needs a mapping of parameters (or nothing)", where, key, step));
      }
    } else {
      throw ConfigError(fmt::format("{}: key '{}': each list item is a name or a one-key mapping name: {{params}}",
                                    where, key));
    }
    out += (out.empty() ? "" : "; ") + step;
  }
  return out;
}

}  // namespace

std::string suggest_key(const std::string& key) {
  if (key.size() >= 3)  // a known key that starts with what was typed ("mixup" -> "mixup_alpha")
    for (const auto& o : option_table())
      if (o.key.rfind(key, 0) == 0) return o.key;
  std::string best;
  size_t best_d = std::max<size_t>(3, key.size() / 3) + 1;
  for (const auto& o : option_table()) {
    size_t d = edit_distance(key, o.key);
    if (d < best_d) best_d = d, best = o.key;
  }
  return best;
}

Config::Config() {
  for (const auto& o : option_table()) {
    values_[o.key] = parse_value(o, o.default_value, "default");
    sources_[o.key] = Source::Default;
  }
}

void Config::set(const std::string& key, const std::string& text, Source source, const std::string& origin) {
  const OptionSpec* spec = find_option(key);
  if (!spec) {
    std::string hint = suggest_key(key);
    throw ConfigError(fmt::format("{}: unknown config key '{}'{}; `cifar100 train --help-config` lists every key",
                                  origin, key, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
  }
  values_[key] = parse_value(*spec, text, origin);
  sources_[key] = source;
}

void Config::load_yaml_string(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: not valid YAML: {}", origin, e.what()));
  }
  if (root.IsNull()) return;  // empty file
  if (!root.IsMap()) throw ConfigError(fmt::format("{}: expected a mapping of key: value at the top level", origin));
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const std::string where = fmt::format("{} (line {})", origin, kv.first.Mark().line + 1);
    const OptionSpec* spec = find_option(key);
    if (spec && spec->yaml_list && kv.second.IsSequence()) {
      set(key, join_yaml_list(kv.second, key, where), Source::File, where);
      continue;
    }
    if (!kv.second.IsScalar())
      throw ConfigError(fmt::format("{}: key '{}' must have a single value, not a list or mapping", where, key));
    set(key, kv.second.Scalar(), Source::File, where);
  }
}

void Config::load_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("config file '{}' cannot be read: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  load_yaml_string(ss.str(), path);
}

void Config::apply_env() {
  for (const auto& o : option_table()) {
    if (o.env.empty()) continue;
    if (const char* v = std::getenv(o.env.c_str()); v && *v)
      set(o.key, v, Source::Env, "environment variable " + o.env);
  }
}

void Config::apply_overrides(const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) {
    auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(fmt::format("--set '{}': expected key=value (for example --set epochs=10)", a));
    set(trim(a.substr(0, eq)), a.substr(eq + 1), Source::CommandLine, fmt::format("--set {}", a));
  }
}

std::vector<int64_t> parse_widths(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  const auto bad = [&] {
    return ConfigError(fmt::format("{} = '{}': expected three comma-separated channel counts in 1..4096, like 64,256,256",
                                   what, text));
  };
  while (std::getline(in, item, ',')) {
    item = trim(item);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || errno != 0 || *end != '\0' || v < 1 || v > 4096) throw bad();
    out.push_back(v);
  }
  if (out.size() != 3) throw bad();
  return out;
}

void Config::validate() const {
  if (s("arch") == "airbench") parse_widths(s("widths"), "config key 'widths'");
  const int64_t depth = i("depth");
  if ((depth - 4) % 6 != 0)
    throw ConfigError(fmt::format("config key 'depth' = {}: a WideResNet depth must be 6n+4 (10, 16, 22, 28, 34, 40)",
                                  depth));
  if (f("warmup_epochs") >= static_cast<double>(i("epochs")) && f("warmup_epochs") > 0)
    throw ConfigError(fmt::format("config key 'warmup_epochs' = {} must be shorter than 'epochs' = {}",
                                  text("warmup_epochs"), i("epochs")));
  if (f("min_lr") > f("lr") * static_cast<double>(i("batch_size")) / static_cast<double>(i("lr_reference_batch")))
    throw ConfigError("config key 'min_lr' must not exceed the peak learning rate (lr * batch_size / lr_reference_batch)");
  for (const char* k : {"download_md5", "archive_md5"}) {
    const std::string& v = s(k);
    if (!v.empty() && (v.size() != 32 || v.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos))
      throw ConfigError(fmt::format("config key '{}' = '{}': expected 32 hexadecimal digits", k, v));
  }
  for (const char* k : {"download_sha256", "archive_sha256"}) {
    const std::string& v = s(k);
    if (!v.empty() && (v.size() != 64 || v.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos))
      throw ConfigError(fmt::format("config key '{}' = '{}': expected 64 hexadecimal digits", k, v));
  }
}

const Config::Value& Config::get(const std::string& key, OptType type) const {
  const OptionSpec* spec = find_option(key);
  if (!spec || spec->type != type) throw std::logic_error("config key '" + key + "' read with the wrong type");
  return values_.at(key);
}

int64_t Config::i(const std::string& key) const { return std::get<int64_t>(get(key, OptType::Int)); }
double Config::f(const std::string& key) const { return std::get<double>(get(key, OptType::Float)); }
bool Config::b(const std::string& key) const { return std::get<bool>(get(key, OptType::Bool)); }
const std::string& Config::s(const std::string& key) const { return std::get<std::string>(get(key, OptType::String)); }
Source Config::source(const std::string& key) const { return sources_.at(key); }
std::string Config::text(const std::string& key) const { return value_text(values_.at(key)); }

std::string Config::to_yaml() const {
  std::string out, section;
  for (const auto& o : option_table()) {
    if (o.section != section) {
      section = o.section;
      out += fmt::format("{}# {}\n", out.empty() ? "" : "\n", section);
    }
    std::string v = text(o.key);
    if (o.type == OptType::String) v = nlohmann::json(v).dump();  // a JSON string is a valid YAML scalar
    out += fmt::format("{}: {}\n", o.key, v);
  }
  return out;
}

nlohmann::json Config::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& o : option_table()) {
    const auto& v = values_.at(o.key);
    std::visit([&](const auto& x) { j[o.key] = x; }, v);
  }
  return j;
}

std::vector<std::string> Config::diff(const Config& other) const {
  std::vector<std::string> keys;
  for (const auto& o : option_table())
    if (values_.at(o.key) != other.values_.at(o.key)) keys.push_back(o.key);
  return keys;
}

Config resolve_config(const ConfigLayers& layers) {
  Config c;
  for (const auto& s : layers.platform) c.set(s.key, s.value, Source::Platform, s.origin);
  for (const auto& path : layers.yaml_paths)
    if (!path.empty()) c.load_yaml_file(path);
  c.apply_env();
  for (const auto& s : layers.hyperparameters) c.set(s.key, s.value, Source::Hyperparameter, s.origin);
  c.apply_overrides(layers.overrides);
  c.validate();
  return c;
}

Config resolve_config(const std::vector<std::string>& yaml_paths, const std::vector<std::string>& overrides) {
  ConfigLayers layers;
  layers.yaml_paths = yaml_paths;
  layers.overrides = overrides;
  return resolve_config(layers);
}

}  // namespace cifar
