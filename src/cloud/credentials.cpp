#include "cloud/credentials.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cloud/http_client.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"

namespace cifar::cloud {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string home_file(const char* env_name, const char* rel) {
  const std::string e = env(env_name);
  if (!e.empty()) return e;
  const std::string home = env("HOME");
  return home.empty() ? "" : home + "/" + rel;
}

// [section] -> key -> value of an AWS INI file; empty when the file is absent.
std::map<std::string, std::map<std::string, std::string>> read_ini(const std::string& path) {
  std::map<std::string, std::map<std::string, std::string>> ini;
  std::ifstream in(path);
  std::string line, section;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const auto eq = line.find('=');
    if (eq != std::string::npos) ini[section][trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  return ini;
}

std::string profile() {
  const std::string p = env("AWS_PROFILE");
  return p.empty() ? "default" : p;
}

class Chain : public CredentialsProvider {
 protected:
  Credentials fetch() override {
    std::vector<std::string> tried;
    // 1. Environment.
    if (!env("AWS_ACCESS_KEY_ID").empty() && !env("AWS_SECRET_ACCESS_KEY").empty())
      return {env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN"), 0, "environment"};
    tried.push_back("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY");
    // 2. The shared credentials file.
    const std::string file = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    if (!file.empty()) {
      auto ini = read_ini(file);
      auto it = ini.find(profile());
      if (it != ini.end() && it->second.count("aws_access_key_id") && it->second.count("aws_secret_access_key"))
        return {it->second["aws_access_key_id"], it->second["aws_secret_access_key"], it->second["aws_session_token"],
                0, file + " [" + profile() + "]"};
      tried.push_back(file + " [" + profile() + "]");
    }
    // 3. Container credentials.
    const std::string rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!rel.empty() || !full.empty()) {
      HttpCall call;
      call.url = rel.empty() ? full : "http://169.254.170.2" + rel;
      call.connect_timeout_s = 2;
      call.total_timeout_s = 5;
      std::string token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
      if (const std::string tf = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); !tf.empty()) token = trim(fs::read_text(tf));
      if (rel.empty() && !token.empty()) call.headers.emplace_back("Authorization", token);
      const std::string source = "container credentials (" + call.url + ")";
      for (int attempt = 0; attempt < 3; ++attempt) {
        const HttpResponse r = http_perform(call);
        if (r.status == 200) return parse_credentials_json(r.body, source);
        if (attempt == 2)
          fail("cannot get AWS credentials from the {}: {}", source,
               r.status ? "HTTP " + std::to_string(r.status) : r.transport_error);
      }
    }
    // 4. Instance metadata (IMDSv2).
    if (env("AWS_EC2_METADATA_DISABLED") != "true") {
      std::string base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
      if (base.empty()) base = "http://169.254.169.254";
      while (!base.empty() && base.back() == '/') base.pop_back();
      HttpCall put;
      put.method = "PUT";
      put.url = base + "/latest/api/token";
      put.headers = {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}};
      put.connect_timeout_s = 1;
      put.total_timeout_s = 2;
      const HttpResponse t = http_perform(put);
      if (t.status == 200) {
        HttpCall get;
        get.connect_timeout_s = 1;
        get.total_timeout_s = 5;
        get.headers = {{"X-aws-ec2-metadata-token", t.body}};
        get.url = base + "/latest/meta-data/iam/security-credentials/";
        const HttpResponse role = http_perform(get);
        const std::string name = trim(role.body.substr(0, role.body.find('\n')));
        if (role.status == 200 && !name.empty()) {
          get.url += name;
          const HttpResponse c = http_perform(get);
          if (c.status == 200) return parse_credentials_json(c.body, "instance metadata (" + base + ")");
          fail("cannot get AWS credentials from instance metadata ({}): HTTP {}", get.url, c.status);
        }
        tried.push_back("instance metadata at " + base + " (no IAM role attached)");
      } else {
        tried.push_back("instance metadata at " + base + " (not reachable)");
      }
    }
    std::string list;
    for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
    fail("no AWS credentials found (looked at {}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile "
         "with AWS_PROFILE, or run where container or instance credentials exist",
         list);
  }
};

}  // namespace

std::time_t parse_iso8601(const std::string& text) {
  std::tm tm{};
  std::istringstream in(text);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return 0;
  return timegm(&tm);
}

Credentials parse_credentials_json(const std::string& body, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const std::exception&) {
    fail("the {} answered something that is not credentials JSON", source);  // the body may hold secrets: not shown
  }
  auto field = [&](const char* k) {
    if (!j.contains(k) || !j[k].is_string()) fail("the {} answered credentials without '{}'", source, k);
    return j[k].get<std::string>();
  };
  Credentials c{field("AccessKeyId"), field("SecretAccessKey"), j.value("Token", std::string()), 0, source};
  if (j.contains("Expiration") && j["Expiration"].is_string()) c.expiration = parse_iso8601(j["Expiration"]);
  return c;
}

std::shared_ptr<CredentialsProvider> CredentialsProvider::standard_chain() {
  static std::shared_ptr<CredentialsProvider> chain = std::make_shared<Chain>();
  return chain;
}

std::shared_ptr<CredentialsProvider> CredentialsProvider::new_standard_chain() { return std::make_shared<Chain>(); }

Credentials CredentialsProvider::get() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::time_t now = std::time(nullptr);
  if (valid_) {
    if (cached_.expiration == 0) return cached_;
    const std::time_t window = std::min<std::time_t>(300, (cached_.expiration - fetched_at_) / 2);
    if (now < cached_.expiration - window) return cached_;
  }
  try {
    cached_ = fetch();
  } catch (const Error&) {
    if (valid_ && (cached_.expiration == 0 || now < cached_.expiration)) {
      log::warn("could not refresh the AWS credentials from {}; using the current ones until they expire",
                cached_.source);
      return cached_;
    }
    throw;
  }
  if (!valid_) log::info("AWS credentials from {}", cached_.source);
  fetched_at_ = now;
  valid_ = true;
  return cached_;
}

void CredentialsProvider::invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  valid_ = false;
}

std::string aws_region() {
  for (const char* k : {"AWS_REGION", "AWS_DEFAULT_REGION"})
    if (const std::string v = env(k); !v.empty()) return v;
  const std::string file = home_file("AWS_CONFIG_FILE", ".aws/config");
  if (!file.empty()) {
    auto ini = read_ini(file);
    const std::string section = profile() == "default" ? "default" : "profile " + profile();
    if (auto it = ini.find(section); it != ini.end() && it->second.count("region")) return it->second["region"];
  }
  return "us-east-1";
}

std::string s3_endpoint_override() {
  for (const char* k : {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"})
    if (std::string v = env(k); !v.empty()) {
      while (!v.empty() && v.back() == '/') v.pop_back();
      return v;
    }
  return "";
}

}  // namespace cifar::cloud
