// The Amazon SageMaker container contract (bring-your-own-container): where the platform's layout is
// (/opt/ml, or $SAGEMAKER_BASE_DIR), its hyperparameters mapped onto config settings, the data channels
// turned into a data set, the output locations, and the failure file. SM_* variables of the Python
// toolkit (local runs) override the paths they name. Serving knobs of the hosting contract live here too.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"

namespace cifar::cloud::sagemaker {

// The base of the layout: $SAGEMAKER_BASE_DIR when set, else /opt/ml.
std::string base_dir();
// The training layout is there when <base>/input/config is a directory. Throws Error when
// $SAGEMAKER_BASE_DIR is set to a directory without it (a misconfigured local run).
bool training_layout_present();

struct Channel {
  std::string name;
  std::string dir;                      // <base>/input/data/<name>, or $SM_CHANNEL_<NAME>
  std::string input_mode = "File";      // File, FastFile or Pipe (TrainingInputMode)
  std::string distribution;             // FullyReplicated or ShardedByS3Key ("" when not given)
  std::string content_type;
  std::string env_name;                 // SM_CHANNEL_<NAME>, which can also give the directory
};

struct TrainingEnv {
  std::string base;
  std::string job_name, job_arn;             // TRAINING_JOB_NAME / TRAINING_JOB_ARN ("" outside SageMaker)
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::string hyperparameters_origin;        // the file, or "SM_HPS"
  std::vector<Channel> channels;             // sorted by name
  std::string model_dir;                     // <base>/model or $SM_MODEL_DIR
  std::string output_data_dir;               // <base>/output/data or $SM_OUTPUT_DATA_DIR
  std::string failure_file;                  // <base>/output/failure (or $SM_OUTPUT_DIR/failure)
  std::string checkpoint_dir;                // <base>/checkpoints (CheckpointConfig.LocalPath's default)
  std::string current_host;                  // resourceconfig.json ("" when absent)
  std::vector<std::string> hosts;
  std::string network_interface;

  // One line for the log: where the layout is, the job, channels and hosts.
  std::string describe() const;
};

// <base>/output/failure, or $SM_OUTPUT_DIR/failure.
std::string failure_file(const std::string& base);

// Reads <base>/input/config/{hyperparameters,inputdataconfig,resourceconfig}.json and the channel
// directories; SM_* variables win where set. Throws Error naming the file and the field on bad JSON.
TrainingEnv read_training_env(const std::string& base);

// Hyperparameters as config settings. Every value is a string on SageMaker (numbers and booleans are
// accepted for local runs); keys may use '-' for '_'. `config` names a preset; keys starting with '_' or
// 'sagemaker_' are platform keys and are ignored. Unknown keys surface when the settings are applied.
struct Hyperparameters {
  std::string preset;                  // the `config` hyperparameter, "" when absent
  std::vector<Setting> settings;       // config keys and their text values
  std::vector<std::string> ignored;    // platform keys that were skipped
};
Hyperparameters map_hyperparameters(const nlohmann::json& hps, const std::string& origin);

// The text SageMaker shows as FailureReason: one paragraph (newlines folded), at most 1,024 bytes, cut on
// a UTF-8 character boundary with an ellipsis when longer.
std::string failure_text(const std::string& message);
// Writes failure_text(message) to `path` (atomically; errors are only logged: this runs while failing).
void write_failure(const std::string& path, const std::string& message);
// Makes SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT write a short reason to `path` before the process dies
// with that signal, so that a crash still tells SageMaker why.
void install_crash_reporter(const std::string& path);

// ---- hosting (`serve`) ----------------------------------------------------------------------------

// Where the hosting platform puts the model: $SM_MODEL_DIR, else <base>/model.
std::string model_dir(const std::string& base = base_dir());

struct ServingEnv {
  std::optional<int> bind_port;                     // SAGEMAKER_BIND_TO_PORT
  std::optional<std::pair<int, int>> safe_ports;    // SAGEMAKER_SAFE_PORT_RANGE "XXXX-YYYY"
  bool batch = false;                               // SAGEMAKER_BATCH=true: Batch Transform
  std::optional<int> max_payload_mb;                // SAGEMAKER_MAX_PAYLOAD_IN_MB
  std::string batch_strategy;                       // SINGLE_RECORD / MULTI_RECORD ("" when unset)
  std::optional<int> max_concurrent_transforms;     // SAGEMAKER_MAX_CONCURRENT_TRANSFORMS
  std::optional<int> workers;                       // SAGEMAKER_MODEL_SERVER_WORKERS
  std::optional<int> timeout_s;                     // SAGEMAKER_MODEL_SERVER_TIMEOUT
};
// Reads the variables above; a malformed value is a ConfigError naming the variable and what it expects.
ServingEnv read_serving_env();

}  // namespace cifar::cloud::sagemaker
