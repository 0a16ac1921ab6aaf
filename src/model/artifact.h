// The model artifact directory (what SageMaker packs from /opt/ml/model into model.tar.gz):
//   model.safetensors  fp32 weights and batch-norm buffers in the safetensors format, state-dict names
//   model.pt           the same tensors as a PyTorch state dict (torch.load + load_state_dict)
//   config.json        architecture, input normalisation, class names, the training config and metrics
// Written into a temporary sibling directory and renamed into place: a reader sees the old artifact or the
// new one, never a mix (into a mount point such as /opt/ml/model, whose directory cannot be replaced, the
// files are moved in one by one, config.json last). Loading checks config.json's fields, and the safetensors header's names, dtypes and
// shapes against the architecture, and names the file and the tensor of any mismatch.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/wide_resnet.h"

namespace cifar::model {

constexpr int kArtifactFormat = 1;

struct ArtifactInfo {
  WrnConfig arch;  // dropout is kept for the record; inference ignores it
  int image_size = 32;
  std::array<float, 3> mean{}, std{};
  std::vector<std::string> class_names;   // num_classes entries
  std::vector<std::string> coarse_names;  // may be empty
  std::vector<int> fine_to_coarse;        // num_classes entries when coarse_names is set
  nlohmann::json training_config = nlohmann::json::object();  // the resolved config of the run
  nlohmann::json metrics = nlohmann::json::object();          // final metrics (test top-1, ...)
  nlohmann::json source = nlohmann::json::object();           // where the weights came from

  nlohmann::json to_json() const;
  // Parses and validates config.json's content; `name` is used in messages.
  static ArtifactInfo from_json(const nlohmann::json& j, const std::string& name);
};

// Info with CIFAR-100's normalisation and official class names for a model of this architecture.
ArtifactInfo default_info(const WrnConfig& arch);

// Writes the three files of the artifact for `net` (any device) into `dir`. An existing artifact there is
// replaced; a non-empty directory that is not an artifact is refused.
void write_artifact(const std::string& dir, const torch::nn::Module& net, const ArtifactInfo& info);

struct Artifact {
  std::string dir;
  ArtifactInfo info;
  WideResNet net{nullptr};  // on the CPU, in eval mode
};
// Loads config.json and model.safetensors (model.pt is for other tools).
Artifact load_artifact(const std::string& dir);
ArtifactInfo read_artifact_info(const std::string& dir);
// True when `dir` holds a config.json and a model.safetensors.
bool is_artifact_dir(const std::string& dir);

}  // namespace cifar::model
