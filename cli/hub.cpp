// `cifar100 push` and `cifar100 pull`: a model artifact to and from the Hugging Face Hub, with a generated
// model card (README.md with the Hub's metadata header and model-index).
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cloud/hub.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/artifact.h"

namespace cifar::cli {

namespace {
namespace stdfs = std::filesystem;
using nlohmann::json;

struct PushArgs {
  std::string model, repo, revision = "main", message, license = "other";
  bool private_repo = false;
};
struct PullArgs {
  std::string repo, out, revision = "main";
};

std::string pct(const json& m, const char* key) {
  return m.contains(key) && m[key].is_number() ? fmt::format("{:.2f}%", 100.0 * m[key].get<double>()) : "n/a";
}

// The model card: the Hub's YAML metadata (so that the Hub shows the results), then the description.
std::string model_card(const model::ArtifactInfo& info, const std::string& repo,
                       const std::string& license, bool has_confusion) {
  const json& m = info.metrics;
  const std::string name = info.arch.name();
  const double top1 = m.value("test_top1", 0.0);
  std::string c = "---\n";
  c += "library_name: cifar100\n";
  c += "license: " + license + "\n";
  c += "tags:\n- image-classification\n- wide-resnet\n- cifar100\n";
  c += "datasets:\n- cifar100\n";
  c += "metrics:\n- accuracy\n";
  c += "pipeline_tag: image-classification\n";
  c += "model-index:\n- name: " + json(name).dump() + "\n  results:\n  - task:\n      type: image-classification\n"
       "      name: Image Classification\n    dataset:\n      type: cifar100\n      name: CIFAR-100\n      split: test\n"
       "    metrics:\n";
  c += "    - type: accuracy\n      value: " + json(top1).dump() + "\n      name: Top-1 accuracy\n";
  if (m.contains("test_top5"))
    c += "    - type: top_5_accuracy\n      value: " + m["test_top5"].dump() + "\n      name: Top-5 accuracy\n";
  c += "---\n\n";

  c += fmt::format("# {} on CIFAR-100\n\n", name);
  c += fmt::format("A {} ({} classes, {}x{} RGB input) trained on CIFAR-100 with "
                   "cifar100, a native C++ trainer and server (LibTorch), with no Python.\n\n",
                   name, info.arch.num_classes, info.image_size, info.image_size);
  c += "## Results on the CIFAR-100 test set\n\n| metric | value |\n| --- | --- |\n";
  c += "| top-1 accuracy | " + pct(m, "test_top1") + " |\n";
  c += "| top-5 accuracy | " + pct(m, "test_top5") + " |\n";
  c += "| superclass (20 coarse classes) accuracy | " + pct(m, "test_coarse_top1") + " |\n";
  c += "| expected calibration error (15 bins) | " +
       (m.contains("test_ece") ? fmt::format("{:.4f}", m["test_ece"].get<double>()) : std::string("n/a")) + " |\n";
  if (m.contains("test_loss")) c += fmt::format("| cross-entropy | {:.4f} |\n", m["test_loss"].get<double>());
  if (m.contains("test_images")) c += fmt::format("| test images | {} |\n", m["test_images"].dump());
  c += "\n";
  if (m.contains("weights_tested"))
    c += fmt::format("The {} weights were tested{}, chosen {}; the test set was used once.\n\n",
                     m["weights_tested"].get<std::string>(),
                     m.contains("best_epoch") ? fmt::format(" (epoch {})", m["best_epoch"].dump()) : "",
                     m["weights_tested"] == "best" ? "on a held-out validation split" : "as the last epoch's");
  if (has_confusion) c += "![Confusion matrix on the test set (row = true class)](confusion.png)\n\n";

  c += "## Training\n\n";
  if (m.contains("hardware") && m["hardware"].is_object()) {
    const json& h = m["hardware"];
    c += fmt::format("Trained on {} ({} cores{}) in {:.0f} s of wall time over {} epochs ({}).\n\n",
                     h.value("cpu", std::string("?")), h.value("cores", 0),
                     h.value("device", std::string("cpu")) == "cpu" ? "" : ", " + h.value("device", std::string()),
                     m.value("wall_seconds", 0.0), m.value("epochs_run", 0), m.value("runtime", std::string()));
  } else if (m.contains("wall_seconds")) {
    c += fmt::format("Wall time {:.0f} s over {} epochs ({}).\n\n", m.value("wall_seconds", 0.0), m.value("epochs_run", 0),
                     m.value("runtime", std::string()));
  }
  if (!info.training_config.empty()) {
    c += "<details><summary>The full training configuration</summary>\n\n```json\n" + info.training_config.dump(2) +
         "\n```\n\n</details>\n\n";
    c += "Saved as `run.yaml` (JSON is YAML), `cifar100 train --config run.yaml` repeats the run; data paths may need "
         "changing.\n\n";
  }

  c += "## Use it with cifar100\n\n```sh\n";
  c += fmt::format("cifar100 pull {} --out model\n", repo);
  c += "cifar100 predict --model model image.png          # top-5 classes\n";
  c += "cifar100 eval --model model                       # the test report\n";
  c += "cifar100 serve --model model --port 8080          # an HTTP endpoint (SageMaker's /ping and /invocations)\n";
  c += "```\n\n";

  c += "## Use it in PyTorch\n\n";
  c += "The weights are a plain state dict (`model.safetensors`, also `model.pt`). This defines the same network:\n\n";
  c += "```python\n"
       "import torch, torch.nn as nn, torch.nn.functional as F\n"
       "from safetensors.torch import load_file  # or: torch.load(\"model.pt\")\n\n";
  if (info.arch.airbench())
    c += fmt::format(R"(class Group(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
    def forward(self, x):
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))

class Airbench(nn.Module):
    def __init__(self, widths=({}, {}, {}), num_classes={}):
        super().__init__()
        self.register_buffer("whiten_weight", torch.zeros(24, 3, 2, 2))
        self.whiten_bias = nn.Parameter(torch.zeros(24))
        w = [24, *widths]
        self.groups = nn.Sequential(*[Group(w[g], w[g + 1]) for g in range(3)])
        self.head = nn.Linear(w[3], num_classes, bias=False)
    def forward(self, x):
        x = F.gelu(F.conv2d(x, self.whiten_weight, self.whiten_bias))
        return self.head(F.max_pool2d(self.groups(x), 3).flatten(1)) / 9

)",
                     info.arch.widths[0], info.arch.widths[1], info.arch.widths[2], info.arch.num_classes);
  else
    c += fmt::format(R"(class WideBasic(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(i, o, 1, stride, 0, bias=False) if i != o or stride != 1 else None
    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)

class WideResNet(nn.Module):
    def __init__(self, depth={}, width={}, num_classes={}):
        super().__init__()
        n, w = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        self.stem, c = nn.Conv2d(3, 16, 3, 1, 1, bias=False), 16
        for g in range(3):
            blocks = []
            for b in range(n):
                blocks.append(WideBasic(c, w[g + 1], 2 if b == 0 and g > 0 else 1))
                c = w[g + 1]
            setattr(self, f"layer{{g + 1}}", nn.Sequential(*blocks))
        self.bn, self.fc = nn.BatchNorm2d(c), nn.Linear(c, num_classes)
    def forward(self, x):
        y = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(y)), 1).flatten(1))

)",
                     info.arch.depth, info.arch.width, info.arch.num_classes);
  c += fmt::format(R"(net = {}().eval()
net.load_state_dict(load_file("model.safetensors"))
mean = torch.tensor({}).view(1, 3, 1, 1)
std = torch.tensor({}).view(1, 3, 1, 1)
# x: uint8 RGB images, N x 3 x 32 x 32
logits = net((x.float() / 255 - mean) / std)
```

)",
                   info.arch.airbench() ? "Airbench" : "WideResNet", json(info.mean).dump(), json(info.std).dump());
  c += "`config.json` holds the class names (in logit order), the normalisation and the training metrics.\n\n";

  c += "## Intended use and limits\n\n";
  c += "- Classifying 32x32 natural images into the 100 CIFAR-100 classes; a baseline or a starting point for "
       "fine-tuning and research on small-image classification.\n";
  c += "- CIFAR-100's images are tiny and its classes few: the model knows nothing outside them and will still "
       "answer with one of its 100 classes. Larger images are resized to 32x32 and lose detail.\n";
  c += "- Accuracy differs between classes (see the confusion matrix); do not use it where a wrong label is costly.\n";
  c += "- The data set was collected from the web in 2008 (Krizhevsky, 2009) and carries its biases.\n";
  return c;
}

// The confusion heat map to show on the card: in the artifact, or in the report of the run it belongs to.
std::string find_confusion_png(const std::string& dir) {
  const stdfs::path p(dir);
  if (stdfs::exists(p / "confusion.png")) return (p / "confusion.png").string();
  const stdfs::path parent = stdfs::absolute(p).lexically_normal().parent_path();
  if (p.filename() == "model" || stdfs::absolute(p).lexically_normal().filename() == "model")
    if (stdfs::exists(parent / "report" / "confusion.png")) return (parent / "report" / "confusion.png").string();
  return "";
}

int run_push(const PushArgs& a) {
  cloud::hub::check_repo_id(a.repo);
  // The artifact must load before anything leaves this machine.
  const std::string dir = find_model_dir(a.model);
  const model::Artifact art = model::load_artifact(dir);
  const std::string confusion = find_confusion_png(dir);
  std::vector<cloud::hub::UploadFile> files = {
      {"README.md", "", model_card(art.info, a.repo, a.license, !confusion.empty())},
      {"config.json", (stdfs::path(dir) / "config.json").string(), ""},
      {"model.safetensors", (stdfs::path(dir) / "model.safetensors").string(), ""},
  };
  if (fs::exists((stdfs::path(dir) / "model.pt").string()))
    files.push_back({"model.pt", (stdfs::path(dir) / "model.pt").string(), ""});
  if (!confusion.empty()) files.push_back({"confusion.png", confusion, ""});
  const std::string message =
      !a.message.empty() ? a.message
                         : fmt::format("Upload {} (test top-1 {:.2f}%) from cifar100", art.info.arch.name(),
                                       100.0 * art.info.metrics.value("test_top1", 0.0));
  const cloud::hub::HubOptions opt = cloud::hub::options_from_env();
  const cloud::hub::PushResult r = cloud::hub::push(opt, a.repo, a.revision, a.private_repo, message, files);
  log::info("pushed {} files to {} ({}): {} LFS object(s) uploaded, {} already stored", files.size(), a.repo,
            a.revision, r.lfs_uploaded, r.lfs_already_stored);
  fmt::print("{}\n", r.commit_url);
  return 0;
}

int run_pull(const PullArgs& a) {
  cloud::hub::check_repo_id(a.repo);
  const stdfs::path out(a.out);
  if (stdfs::exists(out) && !(stdfs::is_directory(out) && (stdfs::is_empty(out) || model::is_artifact_dir(a.out))))
    fail("'{}' exists and is neither empty nor a model artifact: choose another --out", a.out);
  // Downloaded next to the target and checked there; the target is replaced only by a complete, loadable artifact.
  const stdfs::path parent = stdfs::absolute(out).parent_path();
  fs::make_dirs(parent.string());
  const std::string stage = (parent / fmt::format(".{}.pull-{}", out.filename().string(), getpid())).string();
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ec;
      stdfs::remove_all(path, ec);
    }
  } cleanup{stage};
  std::vector<cloud::hub::PulledFile> pulled;
  const std::string sha = cloud::hub::pull(cloud::hub::options_from_env(), a.repo, a.revision,
                                           {"config.json", "model.safetensors", "model.pt", "README.md", "confusion.png"},
                                           {"config.json", "model.safetensors"}, stage, &pulled);
  const model::Artifact art = model::load_artifact(stage);  // verifies names, dtypes and shapes
  std::error_code ec;
  stdfs::remove_all(out, ec);
  stdfs::rename(stage, out);
  int64_t bytes = 0;
  for (const auto& p : pulled) bytes += p.size;
  log::info("pulled {}@{} (commit {}): {} ({} files, {:.1f} MB, hashes checked) into {}", a.repo, a.revision,
            sha.substr(0, 12), art.info.arch.name(), pulled.size(), static_cast<double>(bytes) / 1e6, a.out);
  return 0;
}
}  // namespace

Runner add_push(CLI::App& root) {
  auto a = std::make_shared<PushArgs>();
  CLI::App* sub = root.add_subcommand(
      "push", "upload a model artifact to the Hugging Face Hub with a generated model card (token: HF_TOKEN or "
              "$HF_HOME/token; endpoint: HF_ENDPOINT)");
  sub->add_option("--model", a->model, "the artifact: a directory, a run directory, a model.tar.gz, or one at s3://")
      ->required();
  sub->add_option("--repo", a->repo, "the Hub repo, OWNER/NAME (created when missing)")->required();
  sub->add_flag("--private", a->private_repo, "create the repo private (an existing repo keeps its visibility)");
  sub->add_option("--revision", a->revision, "the branch to commit to (created from main when missing)")
      ->default_str("main");
  sub->add_option("--message", a->message, "the commit title (default: names the model and its test top-1)");
  sub->add_option("--license", a->license, "the licence id in the model card's metadata (a Hub licence id)")
      ->default_str("other");
  return [a] { return run_push(*a); };
}

Runner add_pull(CLI::App& root) {
  auto a = std::make_shared<PullArgs>();
  CLI::App* sub = root.add_subcommand(
      "pull", "download a model artifact from the Hugging Face Hub and verify it, for eval, predict and serve");
  sub->add_option("repo", a->repo, "the Hub repo, OWNER/NAME")->required();
  sub->add_option("--out,-o", a->out, "the artifact directory to write (must be empty, absent, or an artifact)")
      ->required();
  sub->add_option("--revision", a->revision, "a branch, tag or commit")->default_str("main");
  return [a] { return run_pull(*a); };
}

}  // namespace cifar::cli
