#include "model/artifact.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "data/cifar.h"
#include "data/classes.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace cifar::model {

namespace {
namespace stdfs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormatName = "cifar100-artifact";

template <typename T>
T field(const json& j, const char* key, const std::string& name) {
  if (!j.contains(key)) fail("'{}': missing field '{}' (not a cifar100 artifact, or written by another tool?)", name, key);
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    fail("'{}': field '{}' has the wrong type ({})", name, key, j.at(key).dump().substr(0, 80));
  }
}
}  // namespace

json ArtifactInfo::to_json() const {
  json j = {
      {"format", kFormatName},
      {"format_version", kArtifactFormat},
      {"architecture", arch.airbench() ? "airbench" : "wide_resnet"},
      {"model_name", arch.name()},
      {"depth", arch.depth},
      {"width", arch.width},
      {"dropout", arch.dropout},
      {"num_classes", arch.num_classes},
      {"image_size", image_size},
      {"channels", 3},
      {"input", "RGB, pixel/255, then (x - mean) / std per channel, NCHW float32"},
      {"mean", mean},
      {"std", std},
      {"class_names", class_names},
      {"weights", {{"safetensors", "model.safetensors"}, {"pytorch", "model.pt"}, {"dtype", "float32"}}},
      {"created_by", std::string("cifar100 0.1.0 (LibTorch ") + TORCH_VERSION + ")"},
  };
  if (arch.airbench()) j["widths"] = arch.widths;
  if (!coarse_names.empty()) {
    j["coarse_class_names"] = coarse_names;
    j["fine_to_coarse"] = fine_to_coarse;
  }
  j["training"] = {{"config", training_config}, {"metrics", metrics}, {"source", source}};
  return j;
}

ArtifactInfo ArtifactInfo::from_json(const json& j, const std::string& name) {
  if (!j.is_object()) fail("'{}' is not a JSON object", name);
  if (field<std::string>(j, "format", name) != kFormatName)
    fail("'{}': format is '{}', expected '{}'", name, j["format"].get<std::string>(), kFormatName);
  const int version = field<int>(j, "format_version", name);
  if (version > kArtifactFormat)
    fail("'{}': artifact format version {} is newer than this program reads ({}); upgrade cifar100", name, version,
         kArtifactFormat);
  const std::string architecture = field<std::string>(j, "architecture", name);
  if (architecture != "wide_resnet" && architecture != "airbench")
    fail("'{}': architecture '{}' is not supported (wide_resnet or airbench)", name, architecture);
  ArtifactInfo info;
  if (architecture == "airbench") {
    info.arch.arch = "airbench";
    if (!j.contains("widths") || !j["widths"].is_array() || j["widths"].size() != 3)
      fail("'{}': an airbench model needs 'widths', three channel counts", name);
    info.arch.widths.clear();
    for (const auto& w : j["widths"]) {
      if (!w.is_number_integer() || w.get<int64_t>() < 1 || w.get<int64_t>() > 4096)
        fail("'{}': widths {} must be three integers in 1..4096", name, j["widths"].dump());
      info.arch.widths.push_back(w.get<int64_t>());
    }
  }
  info.arch.depth = field<int64_t>(j, "depth", name);
  info.arch.width = field<int64_t>(j, "width", name);
  info.arch.dropout = j.contains("dropout") ? field<double>(j, "dropout", name) : 0.0;
  info.arch.num_classes = field<int64_t>(j, "num_classes", name);
  if (info.arch.depth < 10 || (info.arch.depth - 4) % 6 != 0) fail("'{}': depth {} is not 6n+4", name, info.arch.depth);
  if (info.arch.width < 1 || info.arch.width > 64) fail("'{}': width {} is out of range (1..64)", name, info.arch.width);
  if (info.arch.num_classes < 1 || info.arch.num_classes > 100000)
    fail("'{}': num_classes {} is out of range", name, info.arch.num_classes);
  info.image_size = field<int>(j, "image_size", name);
  if (info.image_size != data::kImageSize) fail("'{}': image_size {} is not supported (32 only)", name, info.image_size);
  const auto mean = field<std::vector<float>>(j, "mean", name);
  const auto sd = field<std::vector<float>>(j, "std", name);
  if (mean.size() != 3 || sd.size() != 3) fail("'{}': mean and std need 3 values each (RGB)", name);
  for (int c = 0; c < 3; ++c) {
    if (!(sd[c] > 0)) fail("'{}': std[{}] = {} must be positive", name, c, sd[c]);
    info.mean[c] = mean[c];
    info.std[c] = sd[c];
  }
  info.class_names = field<std::vector<std::string>>(j, "class_names", name);
  if (static_cast<int64_t>(info.class_names.size()) != info.arch.num_classes)
    fail("'{}': {} class_names for num_classes {}", name, info.class_names.size(), info.arch.num_classes);
  if (j.contains("coarse_class_names")) {
    info.coarse_names = field<std::vector<std::string>>(j, "coarse_class_names", name);
    info.fine_to_coarse = field<std::vector<int>>(j, "fine_to_coarse", name);
    if (info.fine_to_coarse.size() != info.class_names.size())
      fail("'{}': fine_to_coarse has {} entries, num_classes is {}", name, info.fine_to_coarse.size(),
           info.class_names.size());
    for (int c : info.fine_to_coarse)
      if (c < 0 || c >= static_cast<int>(info.coarse_names.size()))
        fail("'{}': fine_to_coarse holds {}, outside the {} coarse classes", name, c, info.coarse_names.size());
  }
  if (j.contains("training") && j["training"].is_object()) {
    const json& t = j["training"];
    if (t.contains("config")) info.training_config = t["config"];
    if (t.contains("metrics")) info.metrics = t["metrics"];
    if (t.contains("source")) info.source = t["source"];
  }
  return info;
}

ArtifactInfo default_info(const WrnConfig& arch) {
  ArtifactInfo info;
  info.arch = arch;
  info.image_size = data::kImageSize;
  info.mean = data::kMean;
  info.std = data::kStd;
  if (arch.num_classes == data::kNumClasses) {
    info.class_names.assign(data::kFineNames.begin(), data::kFineNames.end());
    info.coarse_names.assign(data::kCoarseNames.begin(), data::kCoarseNames.end());
    info.fine_to_coarse.assign(data::kFineToCoarse.begin(), data::kFineToCoarse.end());
  } else {
    for (int64_t c = 0; c < arch.num_classes; ++c) info.class_names.push_back("class_" + std::to_string(c));
  }
  return info;
}

bool is_artifact_dir(const std::string& dir) {
  return fs::exists((stdfs::path(dir) / "config.json").string()) &&
         fs::exists((stdfs::path(dir) / "model.safetensors").string());
}

namespace {
// The three files of the artifact, written into directory `d`.
void write_files(const stdfs::path& d, const torch::nn::Module& net, const ArtifactInfo& info) {
  safetensors::Tensors tensors;
  for (const auto& [name, t] : state_dict(net))
    tensors.emplace_back(name, t.detach().to(torch::kCPU).to(t.is_floating_point() ? torch::kFloat32 : t.scalar_type()));
  const std::string sha = safetensors::write((d / "model.safetensors").string(), tensors,
                                             {{"format", "pt"}, {"model", info.arch.name()}, {"producer", "cifar100"}});
  save_weights(net, (d / "model.pt").string());
  json j = info.to_json();
  j["weights"]["safetensors_sha256"] = sha;
  fs::write_atomic((d / "config.json").string(), j.dump(2) + "\n");
  fs::sync_dir(d.string());
}

// A mount point cannot be renamed or replaced (EBUSY). A bind mount of a directory of the same file system
// (SageMaker's /opt/ml/model, `docker run -v`) has its parent's st_dev, so ask the kernel (statx, Linux 5.8+).
bool is_mount_point(const stdfs::path& p) {
  struct statx sx{};
  if (::statx(AT_FDCWD, p.c_str(), 0, STATX_BASIC_STATS, &sx) == 0 && (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  struct stat a{}, b{};
  return ::stat(p.c_str(), &a) == 0 && ::stat(p.parent_path().c_str(), &b) == 0 && a.st_dev != b.st_dev;
}

// Into a directory that cannot be replaced (a mount point such as SageMaker's /opt/ml/model, or one whose
// parent is not writable): the files are written to a temporary directory inside it and moved in one by
// one, config.json last, after any old config.json is gone, so a reader never pairs old and new files.
void write_in_place(const stdfs::path& target, const torch::nn::Module& net, const ArtifactInfo& info) {
  std::string tmp = (target / ".artifact.tmp-XXXXXX").string();
  if (!::mkdtemp(tmp.data())) fail("cannot write the model artifact into '{}': {}", target.string(), std::strerror(errno));
  try {
    write_files(tmp, net, info);
    std::error_code ec;
    stdfs::remove(target / "config.json", ec);
    for (const char* f : {"model.safetensors", "model.pt", "config.json"})
      if (::rename((stdfs::path(tmp) / f).c_str(), (target / f).c_str()) != 0)
        fail("cannot move {} into '{}': {}", f, target.string(), std::strerror(errno));
    stdfs::remove_all(tmp, ec);
    fs::sync_dir(target.string());
  } catch (...) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    throw;
  }
}
}  // namespace

void write_artifact(const std::string& dir, const torch::nn::Module& net, const ArtifactInfo& info) {
  const stdfs::path target = stdfs::absolute(stdfs::path(dir)).lexically_normal();
  const bool exists = stdfs::exists(target);
  if (exists) {
    if (!stdfs::is_directory(target)) fail("cannot write the model artifact to '{}': it is a file", dir);
    if (!stdfs::is_empty(target) && !is_artifact_dir(dir))
      fail("cannot write the model artifact to '{}': the directory holds other files (choose an empty or new "
           "directory)",
           dir);
    if (is_mount_point(target) || ::access(target.parent_path().c_str(), W_OK) != 0)
      return write_in_place(target, net, info);
  }
  fs::make_dirs(target.parent_path().string());
  std::string tmp = (target.parent_path() / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  if (!::mkdtemp(tmp.data())) fail("cannot create a temporary directory next to '{}': {}", dir, std::strerror(errno));
  try {
    write_files(tmp, net, info);
    if (exists) {
      // Swap the new directory with the old one in one step, then remove the old.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0)
        fail("cannot replace '{}': {}", dir, std::strerror(errno));
      std::error_code ec;
      stdfs::remove_all(tmp, ec);
    } else if (::rename(tmp.c_str(), target.c_str()) != 0) {
      fail("cannot move the model artifact into '{}': {}", dir, std::strerror(errno));
    }
    fs::sync_dir(target.parent_path().string());
  } catch (...) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    throw;
  }
}

ArtifactInfo read_artifact_info(const std::string& dir) {
  const std::string path = (stdfs::path(dir) / "config.json").string();
  if (!stdfs::is_directory(dir)) fail("model directory '{}' does not exist", dir);
  if (!fs::exists(path))
    fail("'{}' is not a model artifact: it has no config.json (train writes one to OUT/model; `cifar100 export` makes "
         "one from a checkpoint)",
         dir);
  json j;
  try {
    j = json::parse(fs::read_text(path));
  } catch (const json::exception& e) {
    fail("'{}' is not valid JSON: {}", path, e.what());
  }
  return ArtifactInfo::from_json(j, path);
}

Artifact load_artifact(const std::string& dir) {
  Artifact a;
  a.dir = dir;
  a.info = read_artifact_info(dir);
  const std::string path = (stdfs::path(dir) / "model.safetensors").string();
  if (!fs::exists(path)) fail("'{}' has no model.safetensors", dir);
  const safetensors::File file = safetensors::read(path);
  WrnConfig arch = a.info.arch;
  arch.dropout = 0;
  a.net = WideResNet(arch);
  std::map<std::string, const at::Tensor*> loaded;
  for (const auto& [name, t] : file.tensors) loaded[name] = &t;
  torch::NoGradGuard no_grad;
  std::set<std::string> seen;
  for (auto& [name, t] : state_dict(*a.net)) {
    auto it = loaded.find(name);
    if (it == loaded.end())
      fail("'{}' has no tensor '{}', which {} needs (config.json and weights from different models?)", path, name,
           arch.name());
    const at::Tensor& src = *it->second;
    if (src.scalar_type() != t.scalar_type())
      fail("'{}': tensor '{}' is {}, expected {}", path, name, c10::toString(src.scalar_type()),
           c10::toString(t.scalar_type()));
    if (src.sizes() != t.sizes())
      fail("'{}': tensor '{}' has shape [{}], {} from config.json needs [{}]", path, name,
           fmt::format("{}", fmt::join(src.sizes(), ", ")), arch.name(), fmt::format("{}", fmt::join(t.sizes(), ", ")));
    t.copy_(src);
    seen.insert(name);
  }
  for (const auto& [name, t] : file.tensors)
    if (!seen.count(name)) fail("'{}' has a tensor '{}' that {} does not have", path, name, arch.name());
  a.net->eval();
  return a;
}

}  // namespace cifar::model
