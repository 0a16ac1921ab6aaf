// The one table of options (name, type, default, help, environment variable, allowed range) and the
// resolved Config. Precedence: command line (--set) > SageMaker hyperparameters > environment > config file
// (YAML) > platform defaults (the SageMaker layout: channels, checkpoint directory) > default.
// Every value is checked when it is set; cross-field rules are checked by validate().
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cifar {

enum class OptType { Int, Float, Bool, String };

struct OptionSpec {
  std::string key;
  OptType type;
  std::string default_value;
  std::string help;
  std::string section;               // model, data, optim, augment, system
  std::string env;                   // environment variable, "" if none
  std::vector<std::string> choices;  // allowed values of a String option, empty = any
  double min = -1e300, max = 1e300;  // inclusive bounds of numeric options
  bool max_exclusive = false;
  bool yaml_list = false;  // a YAML list is accepted and joined into "a; b(k=v); ..." (augment)
};

// "64,256,256" -> {64, 256, 256} (the airbench `widths` key); a ConfigError naming `what` unless it is three
// integers in 1..4096.
std::vector<int64_t> parse_widths(const std::string& text, const std::string& what);

// The table, in display order.
const std::vector<OptionSpec>& option_table();
const OptionSpec* find_option(const std::string& key);

// How a key may differ between a checkpoint and the run that resumes from it.
enum class ResumeRule { MustMatch, Warn, Free };
ResumeRule resume_rule(const std::string& key);

enum class Source { Default, Platform, File, Env, Hyperparameter, CommandLine };
const char* source_name(Source s);

class Config {
 public:
  using Value = std::variant<int64_t, double, bool, std::string>;

  // All options at their defaults.
  Config();

  // Set one option from text; throws ConfigError naming `origin` (file, env var or option) on a bad value
  // or an unknown key (with the nearest known key as a suggestion).
  void set(const std::string& key, const std::string& text, Source source, const std::string& origin);
  // YAML mapping of key: scalar. Throws ConfigError naming the file and key.
  void load_yaml_file(const std::string& path);
  void load_yaml_string(const std::string& text, const std::string& origin);
  // Every option that declares an environment variable and finds it set.
  void apply_env();
  // "key=value" strings from the command line.
  void apply_overrides(const std::vector<std::string>& assignments);
  // Cross-field rules (e.g. depth = 6n+4, warmup shorter than training).
  void validate() const;

  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  bool b(const std::string& key) const;
  const std::string& s(const std::string& key) const;
  Source source(const std::string& key) const;
  std::string text(const std::string& key) const;  // value as text, as it would be written in YAML

  std::string to_yaml() const;
  nlohmann::json to_json() const;
  // Keys whose values differ between two configs.
  std::vector<std::string> diff(const Config& other) const;

 private:
  const Value& get(const std::string& key, OptType type) const;
  std::map<std::string, Value> values_;
  std::map<std::string, Source> sources_;
};

// One setting from a source that is neither a file nor the command line; `origin` names it in messages.
struct Setting {
  std::string key, value, origin;
};

// Every layer of a configuration, lowest precedence first.
struct ConfigLayers {
  std::vector<Setting> platform;             // what the SageMaker layout implies (channels, checkpoints)
  std::vector<std::string> yaml_paths;       // preset and --config files, in order (empty paths skipped)
  std::vector<Setting> hyperparameters;      // SageMaker hyperparameters (the toolkit passes them as arguments)
  std::vector<std::string> overrides;        // "key=value" from the command line
};

// Defaults < platform < YAML files < environment < hyperparameters < command line; validated.
Config resolve_config(const ConfigLayers& layers);
// Defaults, then each YAML file in order (empty paths skipped), then the environment, then the
// command-line overrides ("key=value"); validated.
Config resolve_config(const std::vector<std::string>& yaml_paths, const std::vector<std::string>& overrides);

// Nearest key by edit distance, "" when nothing is close.
std::string suggest_key(const std::string& key);

}  // namespace cifar
