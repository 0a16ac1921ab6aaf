// From training to a model artifact: at the end of `train` (OUT/model/) and in `cifar100 export`, which turns
// any checkpoint into one.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "data/cifar.h"
#include "model/artifact.h"

namespace cifar::train {

// Class names (and the fine -> coarse map) from the data set the model was trained on; the official names
// when `ds` is null or its name files do not have the model's class count.
model::ArtifactInfo artifact_info(const model::WrnConfig& arch, const nlohmann::json& training_config,
                                  const data::Dataset* ds);

// A checkpoint directory as given, or the one to export from a directory of checkpoints or a run directory:
// the newest valid `best-*` (the weights chosen on validation), else the newest valid checkpoint.
std::string resolve_checkpoint(const std::string& path);

// Writes the artifact of a checkpoint into `out_dir`; returns the checkpoint used. Class names come from the
// label files in `data_dir` when they are there, else the official ones.
std::string export_checkpoint(const std::string& path, const std::string& out_dir, const std::string& data_dir);

}  // namespace cifar::train
