#include "cloud/sagemaker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"

namespace cifar::cloud::sagemaker {

namespace {
namespace stdfs = std::filesystem;
using nlohmann::json;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// A JSON document from a file (when it exists) or from an environment variable (SM_*); null when neither.
json read_json_source(const std::string& path, const char* env_name, std::string& origin) {
  std::string text;
  if (fs::exists(path)) {
    origin = path;
    text = fs::read_text(path);
  } else if (const char* v = std::getenv(env_name); v && *v) {
    origin = env_name;
    text = v;
  } else {
    origin.clear();
    return nullptr;
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail_config("{} is not valid JSON: {}", origin, e.what());
  }
}

std::string string_field(const json& obj, const char* key, const std::string& where) {
  if (!obj.contains(key) || obj[key].is_null()) return "";
  if (!obj[key].is_string()) fail_config("{}: field '{}' must be a string", where, key);
  return obj[key].get<std::string>();
}

std::string upper(std::string s) {
  for (auto& c : s) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// ---- crash reporter ---------------------------------------------------------------------------------
char g_failure_path[4096];

void crash_handler(int sig) {
  const char* what = sig == SIGSEGV   ? "SIGSEGV (segmentation fault)"
                     : sig == SIGBUS  ? "SIGBUS (bus error)"
                     : sig == SIGFPE  ? "SIGFPE (arithmetic error)"
                     : sig == SIGILL  ? "SIGILL (illegal instruction: the CPU lacks an instruction set the build needs)"
                                      : "SIGABRT (aborted)";
  const int fd = ::open(g_failure_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    const char* head = "cifar100 crashed with ";
    const char* tail = ". The last lines of the job's log (CloudWatch) show what it was doing; checkpoints written before "
                       "the crash are kept, and running the job again resumes from the newest one.";
    (void)!::write(fd, head, std::strlen(head));
    (void)!::write(fd, what, std::strlen(what));
    (void)!::write(fd, tail, std::strlen(tail));
    ::close(fd);
  }
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}

int parse_int_env(const char* name, int lo, int hi, const char* expects) {
  const char* v = std::getenv(name);
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || errno != 0 || x < lo || x > hi)
    fail_config("environment variable {}='{}': expected {} ({} to {})", name, v, expects, lo, hi);
  return static_cast<int>(x);
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}
}  // namespace

std::string base_dir() { return env_or("SAGEMAKER_BASE_DIR", "/opt/ml"); }

bool training_layout_present() {
  const std::string base = base_dir();
  const bool present = stdfs::is_directory(stdfs::path(base) / "input" / "config");
  if (!present && env_set("SAGEMAKER_BASE_DIR"))
    fail_config("SAGEMAKER_BASE_DIR='{}' has no input/config/ directory, so it is not a SageMaker training layout: "
                "create {}/input/config/hyperparameters.json (and input/data/<channel>/), or unset SAGEMAKER_BASE_DIR",
                base, base);
  return present;
}

std::string failure_file(const std::string& base) {
  return (stdfs::path(env_or("SM_OUTPUT_DIR", (stdfs::path(base) / "output").string())) / "failure").string();
}

std::string TrainingEnv::describe() const {
  std::vector<std::string> ch;
  for (const auto& c : channels) ch.push_back(fmt::format("{} ({})", c.name, c.input_mode));
  return fmt::format("SageMaker training layout found at {}: job {}, channels [{}], host {} of [{}], model to {}, "
                     "output to {}, checkpoints in {}",
                     base, job_name.empty() ? "(no TRAINING_JOB_NAME)" : job_name, join(ch),
                     current_host.empty() ? "-" : current_host, join(hosts), model_dir, output_data_dir,
                     checkpoint_dir);
}

TrainingEnv read_training_env(const std::string& base) {
  TrainingEnv env;
  env.base = base;
  const stdfs::path b(base), cfg = b / "input" / "config";
  env.job_name = env_or("TRAINING_JOB_NAME", "");
  env.job_arn = env_or("TRAINING_JOB_ARN", "");

  std::string origin;
  json hps = read_json_source((cfg / "hyperparameters.json").string(), "SM_HPS", origin);
  if (!hps.is_null()) {
    if (!hps.is_object()) fail_config("{}: expected a JSON object of hyperparameter names and values", origin);
    env.hyperparameters = hps;
    env.hyperparameters_origin = origin;
  }

  // Channels: the directories under input/data, the ones inputdataconfig.json declares, SM_CHANNEL_*.
  std::map<std::string, Channel> channels;
  const stdfs::path data = b / "input" / "data";
  std::error_code ec;
  if (stdfs::is_directory(data, ec))
    for (const auto& e : stdfs::directory_iterator(data, ec))
      if (e.is_directory()) channels[e.path().filename().string()].name = e.path().filename().string();
  json idc = read_json_source((cfg / "inputdataconfig.json").string(), "SM_INPUT_DATA_CONFIG", origin);
  if (!idc.is_null()) {
    if (!idc.is_object()) fail_config("{}: expected a JSON object with one entry per channel", origin);
    for (const auto& [name, spec] : idc.items()) {
      if (!spec.is_object()) fail_config("{}: channel '{}' must be an object", origin, name);
      const std::string where = fmt::format("{} (channel '{}')", origin, name);
      Channel& c = channels[name];
      c.name = name;
      const std::string mode = string_field(spec, "TrainingInputMode", where);
      if (!mode.empty()) c.input_mode = mode;
      c.distribution = string_field(spec, "S3DistributionType", where);
      c.content_type = string_field(spec, "ContentType", where);
    }
  }
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    const std::string prefix = "SM_CHANNEL_";
    if (kv.rfind(prefix, 0) != 0) continue;
    const auto eq = kv.find('=');
    std::string name = kv.substr(prefix.size(), eq - prefix.size());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!name.empty()) channels[name].name = name;
  }
  for (auto& [name, c] : channels) {
    c.env_name = "SM_CHANNEL_" + upper(name);
    c.dir = env_or(c.env_name.c_str(), (data / name).string());
    env.channels.push_back(c);
  }

  json rc = read_json_source((cfg / "resourceconfig.json").string(), "SM_RESOURCE_CONFIG", origin);
  if (!rc.is_null()) {
    if (!rc.is_object()) fail_config("{}: expected a JSON object", origin);
    env.current_host = string_field(rc, "current_host", origin);
    env.network_interface = string_field(rc, "network_interface_name", origin);
    if (rc.contains("hosts")) {
      if (!rc["hosts"].is_array()) fail_config("{}: field 'hosts' must be a list of host names", origin);
      for (const auto& h : rc["hosts"]) {
        if (!h.is_string()) fail_config("{}: field 'hosts' must be a list of host names", origin);
        env.hosts.push_back(h.get<std::string>());
      }
    }
  }
  env.current_host = env_or("SM_CURRENT_HOST", env.current_host);
  env.network_interface = env_or("SM_NETWORK_INTERFACE_NAME", env.network_interface);
  if (env_set("SM_HOSTS")) {
    json h = read_json_source("", "SM_HOSTS", origin);
    if (!h.is_array()) fail_config("SM_HOSTS must be a JSON list of host names");
    env.hosts.clear();
    for (const auto& x : h) env.hosts.push_back(x.is_string() ? x.get<std::string>() : x.dump());
  }
  std::sort(env.hosts.begin(), env.hosts.end());

  env.model_dir = model_dir(base);
  env.output_data_dir = env_or("SM_OUTPUT_DATA_DIR", (b / "output" / "data").string());
  env.failure_file = failure_file(base);
  env.checkpoint_dir = (b / "checkpoints").string();
  return env;
}

Hyperparameters map_hyperparameters(const json& hps, const std::string& origin) {
  Hyperparameters h;
  if (hps.is_null()) return h;
  if (!hps.is_object()) fail_config("{}: expected a JSON object of hyperparameter names and values", origin);
  for (const auto& [raw_key, value] : hps.items()) {
    if (raw_key.rfind('_', 0) == 0 || raw_key.rfind("sagemaker_", 0) == 0) {
      h.ignored.push_back(raw_key);
      continue;
    }
    std::string text;
    if (value.is_string()) text = value.get<std::string>();
    else if (value.is_boolean()) text = value.get<bool>() ? "true" : "false";
    else if (value.is_number()) text = value.dump();
    else
      fail_config("{}: hyperparameter '{}' must be a string (SageMaker passes every value as a string), not {}", origin,
                  raw_key, value.type_name());
    std::string key = raw_key;
    std::replace(key.begin(), key.end(), '-', '_');
    if (key == "config") h.preset = text;
    else h.settings.push_back({key, text, fmt::format("{} (hyperparameter '{}')", origin, raw_key)});
  }
  return h;
}

std::string failure_text(const std::string& message) {
  std::string s;
  bool space = false;
  for (char c : message) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !s.empty();
      continue;
    }
    if (space) s += ' ';
    space = false;
    s += c;
  }
  constexpr size_t kMax = 1024;
  if (s.size() <= kMax) return s;
  size_t cut = kMax - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return s.substr(0, cut) + "...";
}

void write_failure(const std::string& path, const std::string& message) {
  try {
    fs::make_dirs(stdfs::path(path).parent_path().string());
    fs::write_atomic(path, failure_text(message));
  } catch (const std::exception& e) {
    log::error("cannot write the failure reason to {}: {}", path, e.what());
  }
}

void install_crash_reporter(const std::string& path) {
  if (path.size() >= sizeof(g_failure_path)) return;
  std::memcpy(g_failure_path, path.c_str(), path.size() + 1);
  // An alternate stack, so that a stack overflow still gets its report.
  static std::vector<char> alt(1 << 16);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_handler = crash_handler;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

std::string model_dir(const std::string& base) { return env_or("SM_MODEL_DIR", (stdfs::path(base) / "model").string()); }

ServingEnv read_serving_env() {
  ServingEnv s;
  if (env_set("SAGEMAKER_BIND_TO_PORT")) s.bind_port = parse_int_env("SAGEMAKER_BIND_TO_PORT", 1, 65535, "a TCP port");
  if (env_set("SAGEMAKER_SAFE_PORT_RANGE")) {
    const std::string v = std::getenv("SAGEMAKER_SAFE_PORT_RANGE");
    const auto dash = v.find('-');
    char *e1 = nullptr, *e2 = nullptr;
    const std::string a = v.substr(0, dash), b = dash == std::string::npos ? "" : v.substr(dash + 1);
    const long lo = std::strtol(a.c_str(), &e1, 10), hi = std::strtol(b.c_str(), &e2, 10);
    if (dash == std::string::npos || a.empty() || b.empty() || *e1 || *e2 || lo < 1 || hi > 65535 || lo > hi)
      fail_config("environment variable SAGEMAKER_SAFE_PORT_RANGE='{}': expected two ports as XXXX-YYYY", v);
    s.safe_ports = std::make_pair(static_cast<int>(lo), static_cast<int>(hi));
  }
  if (env_set("SAGEMAKER_BATCH")) {
    std::string v = std::getenv("SAGEMAKER_BATCH");
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (v != "true" && v != "false") fail_config("environment variable SAGEMAKER_BATCH='{}': expected true or false", v);
    s.batch = v == "true";
  }
  if (env_set("SAGEMAKER_MAX_PAYLOAD_IN_MB"))
    s.max_payload_mb = parse_int_env("SAGEMAKER_MAX_PAYLOAD_IN_MB", 0, 100, "megabytes");
  if (env_set("SAGEMAKER_BATCH_STRATEGY")) {
    const std::string v = std::getenv("SAGEMAKER_BATCH_STRATEGY");
    const std::string u = upper(v);
    if (u == "SINGLE_RECORD" || u == "SINGLERECORD") s.batch_strategy = "SINGLE_RECORD";
    else if (u == "MULTI_RECORD" || u == "MULTIRECORD") s.batch_strategy = "MULTI_RECORD";
    else
      fail_config("environment variable SAGEMAKER_BATCH_STRATEGY='{}': expected SINGLE_RECORD or MULTI_RECORD "
                  "(SingleRecord, MultiRecord)",
                  v);
  }
  if (env_set("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"))
    s.max_concurrent_transforms = parse_int_env("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1, 4096, "a number of requests");
  if (env_set("SAGEMAKER_MODEL_SERVER_WORKERS"))
    s.workers = parse_int_env("SAGEMAKER_MODEL_SERVER_WORKERS", 1, 64, "a number of inference workers");
  if (env_set("SAGEMAKER_MODEL_SERVER_TIMEOUT"))
    s.timeout_s = parse_int_env("SAGEMAKER_MODEL_SERVER_TIMEOUT", 1, 3600, "seconds");
  return s;
}

}  // namespace cifar::cloud::sagemaker
