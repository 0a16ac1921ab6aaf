#include "cloud/hub.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cloud/http_client.h"
#include "cloud/sigv4.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/log.h"

namespace cifar::cloud::hub {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string clean_token(std::string t) {
  t.erase(std::remove_if(t.begin(), t.end(), [](unsigned char c) { return c == '\r' || c == '\n'; }), t.end());
  const auto b = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
}

bool transient(const HttpResponse& r) {
  return r.status == 0 || r.status == 408 || r.status == 429 || r.status == 500 || r.status == 502 ||
         r.status == 503 || r.status == 504;
}

// The Hub's explanation of a failure: X-Error-Message, else the JSON body's error(s), else the body's start.
std::string hub_message(const HttpResponse& r) {
  if (r.status == 0) return r.transport_error;
  if (auto it = r.headers.find("x-error-message"); it != r.headers.end() && !it->second.empty()) return it->second;
  try {
    const json j = json::parse(r.body);
    if (j.contains("error")) {
      if (j["error"].is_string()) return j["error"].get<std::string>();
      if (j["error"].is_array() && !j["error"].empty()) return j["error"][0].dump();
      return j["error"].dump();
    }
    if (j.contains("errors") && j["errors"].is_array() && !j["errors"].empty())
      return j["errors"][0].value("message", j["errors"][0].dump());
  } catch (const json::exception&) {
  }
  std::string b = r.body.substr(0, 300);
  std::replace(b.begin(), b.end(), '\n', ' ');
  return b;
}

std::string error_code(const HttpResponse& r) {
  auto it = r.headers.find("x-error-code");
  return it == r.headers.end() ? std::string() : it->second;
}

std::string status_text(const HttpResponse& r) {
  if (r.status == 0) return "network error: " + r.transport_error;
  std::string s = "HTTP " + std::to_string(r.status);
  if (const std::string code = error_code(r); !code.empty()) s += " " + code;
  if (const std::string m = hub_message(r); !m.empty()) s += ": " + m;
  return s;
}

class Client {
 public:
  explicit Client(const HubOptions& opt) : opt_(opt) {
    while (!opt_.endpoint.empty() && opt_.endpoint.back() == '/') opt_.endpoint.pop_back();
  }
  const HubOptions& options() const { return opt_; }

  // One exchange with retries of transient failures. `authorize`: send the token (never to other hosts).
  HttpResponse call(HttpCall c, bool authorize, const std::string& what) const {
    if (authorize && !opt_.token.empty()) c.headers.emplace_back("Authorization", "Bearer " + opt_.token);
    c.headers.emplace_back("User-Agent", "cifar100/0.1.0");
    HttpResponse r;
    for (int attempt = 1;; ++attempt) {
      r = http_perform(c);
      if (!transient(r) || attempt >= opt_.attempts) break;
      double wait = opt_.backoff_seconds * static_cast<double>(1 << (attempt - 1));
      if (auto it = r.headers.find("retry-after"); it != r.headers.end()) {
        try {
          wait = std::min(30.0, std::max(wait, std::stod(it->second)));
        } catch (const std::exception&) {
        }
      }
      log::warn("{}: {} (attempt {} of {}); retrying in {:.1f} s", what, status_text(r), attempt, opt_.attempts, wait);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    return r;
  }

  HttpResponse json_call(const std::string& method, const std::string& url, const json& body, const std::string& what,
                         const std::string& content_type = "application/json") const {
    HttpCall c;
    c.method = method;
    c.url = url;
    if (!body.is_null()) {
      c.body = body.dump();
      c.headers.emplace_back("Content-Type", content_type);
    }
    if (content_type != "application/json") c.headers.emplace_back("Accept", content_type);
    return call(c, true, what);
  }

  std::string api(const std::string& path) const { return opt_.endpoint + "/api" + path; }
  std::string url(const std::string& path) const { return opt_.endpoint + path; }

  // A failure that no retry mends, explained for the user.
  [[noreturn]] void fail_with(const HttpResponse& r, const std::string& what, const std::string& repo,
                              const std::string& revision = "") const {
    if (r.status == 401)
      fail("{}: the Hub at {} refused the token ({}; {}): set HF_TOKEN to a valid access token (create one at "
           "https://huggingface.co/settings/tokens; write access is needed to push), or put it in $HF_HOME/token",
           what, opt_.endpoint, status_text(r), token_origin());
    if (r.status == 403)
      fail("{}: the token ({}) cannot write to {} ({}): use a token with write access to the namespace '{}', or push "
           "to a repo of your own",
           what, token_origin(), repo, status_text(r), repo.substr(0, repo.find('/')));
    if (r.status == 404) {
      if (error_code(r) == "RevisionNotFound" && !revision.empty())
        fail("{}: {} has no revision '{}' ({})", what, repo, revision, status_text(r));
      fail("{}: {} was not found on {} ({}); check the name{}", what, repo + (revision.empty() ? "" : "@" + revision),
           opt_.endpoint, status_text(r),
           opt_.token.empty() ? ", or set HF_TOKEN if the repo is private" : " and that the token can see it");
    }
    fail("{}: {} ({}{})", what, status_text(r), repo,
         transient(r) ? fmt::format(", still failing after {} attempts", opt_.attempts) : "");
  }

 private:
  std::string token_origin() const { return opt_.token.empty() ? "no token was given" : "token from " + opt_.token_source; }
  HubOptions opt_;
};

json parse_json(const HttpResponse& r, const std::string& what) {
  try {
    return json::parse(r.body);
  } catch (const json::exception& e) {
    fail("{}: the Hub's answer is not JSON ({}): {}", what, e.what(), r.body.substr(0, 200));
  }
}

std::string read_head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '{}'", path);
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

struct Staged {
  const UploadFile* file;
  int64_t size = 0;
  bool lfs = false;
  std::string oid;  // sha256 (LFS)
};

std::string strip_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  e.erase(std::remove(e.begin(), e.end(), '"'), e.end());
  return e;
}

}  // namespace

std::string url_quote(const std::string& s, bool keep_slash) { return uri_encode(s, keep_slash); }

void check_repo_id(const std::string& repo_id) {
  const auto slash = repo_id.find('/');
  auto ok_part = [](const std::string& p) {
    if (p.empty() || p.size() > 96 || p.front() == '-' || p.front() == '.' || p.back() == '-' || p.back() == '.')
      return false;
    if (p.find("--") != std::string::npos || p.find("..") != std::string::npos) return false;
    return std::all_of(p.begin(), p.end(),
                       [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; });
  };
  if (slash == std::string::npos || repo_id.find('/', slash + 1) != std::string::npos ||
      !ok_part(repo_id.substr(0, slash)) || !ok_part(repo_id.substr(slash + 1)))
    fail_config("'{}' is not a Hub repo id: give OWNER/NAME (letters, digits, '-', '_' and '.'), e.g. alice/wrn-28-10",
                repo_id);
}

HubOptions options_from_env() {
  HubOptions o;
  if (std::string e = env("HF_ENDPOINT"); !e.empty()) o.endpoint = e;
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
    if (std::string t = clean_token(env(name)); !t.empty()) {
      o.token = t;
      o.token_source = name;
      return o;
    }
  std::string path = env("HF_TOKEN_PATH");
  if (path.empty()) {
    std::string home = env("HF_HOME");
    if (home.empty()) {
      const std::string xdg = env("XDG_CACHE_HOME");
      home = !xdg.empty() ? xdg + "/huggingface" : env("HOME") + "/.cache/huggingface";
    }
    path = home + "/token";
  }
  if (fs::exists(path)) {
    o.token = clean_token(fs::read_text(path));
    o.token_source = path;
  }
  return o;
}

PushResult push(const HubOptions& opt, const std::string& repo_id, const std::string& revision, bool private_repo,
                const std::string& message, const std::vector<UploadFile>& files) {
  check_repo_id(repo_id);
  if (opt.token.empty())
    fail("pushing to {} needs a Hugging Face token with write access: set HF_TOKEN, or put the token in "
         "$HF_HOME/token (~/.cache/huggingface/token)",
         repo_id);
  const Client hub(opt);
  const std::string owner = repo_id.substr(0, repo_id.find('/')), name = repo_id.substr(repo_id.find('/') + 1);
  const std::string rev = url_quote(revision);
  PushResult result;

  // 1. The repo: created when missing (409: it exists). A 403 may only mean that the token cannot create in the
  //    namespace: the repo may still exist and be writable, which the next calls find out.
  json create = {{"type", "model"}, {"name", name}, {"organization", owner}, {"private", private_repo}};
  HttpResponse r = hub.json_call("POST", hub.api("/repos/create"), create, "creating " + repo_id);
  if (r.status == 200 || r.status == 201) {
    result.created_repo = true;
    log::info("created the {}model repo {}", private_repo ? "private " : "", repo_id);
  } else if (r.status == 403) {
    const HttpResponse info = hub.json_call("GET", hub.api("/models/" + repo_id), nullptr, "looking up " + repo_id);
    if (info.status != 200) hub.fail_with(r, "creating " + repo_id, repo_id);
  } else if (r.status != 409) {
    hub.fail_with(r, "creating " + repo_id, repo_id);
  }

  // 2. The branch, when it is not main and does not exist yet.
  if (revision != "main") {
    r = hub.json_call("GET", hub.api("/models/" + repo_id + "/revision/" + rev), nullptr, "looking up " + repo_id);
    if (r.status == 404) {
      r = hub.json_call("POST", hub.api("/models/" + repo_id + "/branch/" + rev), json::object(),
                        "creating the branch " + revision);
      if (r.status != 200 && r.status != 201 && r.status != 409) hub.fail_with(r, "creating the branch " + revision, repo_id);
      result.created_branch = r.status != 409;
    } else if (r.status != 200) {
      hub.fail_with(r, "looking up " + repo_id, repo_id, revision);
    }
  }

  // 3. Preupload: the Hub says which files go through LFS; its commitOid is the parent of our commit.
  std::vector<Staged> staged;
  json pre_files = json::array();
  for (const auto& f : files) {
    Staged s{&f};
    const std::string sample = f.local_path.empty() ? f.content.substr(0, 512) : read_head(f.local_path, 512);
    s.size = f.local_path.empty() ? static_cast<int64_t>(f.content.size())
                                  : static_cast<int64_t>(stdfs::file_size(f.local_path));
    pre_files.push_back({{"path", f.path}, {"sample", hash::base64(sample.data(), sample.size())}, {"size", s.size}});
    staged.push_back(s);
  }
  r = hub.json_call("POST", hub.api("/models/" + repo_id + "/preupload/" + rev), json{{"files", pre_files}},
                    "preparing the upload to " + repo_id);
  if (r.status != 200) hub.fail_with(r, "preparing the upload to " + repo_id, repo_id, revision);
  const json pre = parse_json(r, "preupload");
  const std::string parent = pre.value("commitOid", std::string());
  for (const auto& pf : pre.value("files", json::array())) {
    const std::string path = pf.value("path", std::string());
    for (auto& s : staged)
      if (s.file->path == path) s.lfs = pf.value("uploadMode", std::string("regular")) == "lfs";
  }

  // 4. LFS objects: one batch request, then a PUT (and a verify) per object the Hub does not hold yet.
  json objects = json::array();
  for (auto& s : staged) {
    if (!s.lfs) continue;
    s.oid = s.file->local_path.empty() ? hash::sha256(s.file->content.data(), s.file->content.size())
                                       : hash::sha256_file(s.file->local_path);
    objects.push_back({{"oid", s.oid}, {"size", s.size}});
  }
  if (!objects.empty()) {
    const json batch = {{"operation", "upload"},
                        {"transfers", {"basic"}},
                        {"objects", objects},
                        {"hash_algo", "sha256"},
                        {"ref", {{"name", revision}}}};
    r = hub.json_call("POST", hub.url("/" + repo_id + ".git/info/lfs/objects/batch"), batch,
                      "requesting LFS uploads for " + repo_id, "application/vnd.git-lfs+json");
    if (r.status != 200) hub.fail_with(r, "requesting LFS uploads for " + repo_id, repo_id, revision);
    const json answer = parse_json(r, "LFS batch");
    for (const auto& o : answer.value("objects", json::array())) {
      const std::string oid = o.value("oid", std::string());
      const auto it = std::find_if(staged.begin(), staged.end(), [&](const Staged& s) { return s.lfs && s.oid == oid; });
      if (it == staged.end()) fail("LFS batch: the Hub answered for an object we did not ask about ({})", oid);
      if (o.contains("error"))
        fail("LFS upload of {} refused by the Hub: {} {}", it->file->path, o["error"].value("code", 0),
             o["error"].value("message", std::string()));
      if (!o.contains("actions") || !o["actions"].contains("upload")) {
        ++result.lfs_already_stored;
        continue;
      }
      const json& up = o["actions"]["upload"];
      if (up.contains("header") && up["header"].contains("chunk_size"))
        fail("LFS upload of {}: the Hub asked for a multipart transfer, which this client does not offer", it->file->path);
      HttpCall put;
      put.method = "PUT";
      put.url = up.at("href").get<std::string>();
      if (it->file->local_path.empty()) {
        put.body = it->file->content;
      } else {
        put.body_file = it->file->local_path;
        put.body_size = it->size;
      }
      put.stall_timeout_s = 120;
      // The presigned storage URL must not see the token.
      const HttpResponse pr = hub.call(put, /*authorize=*/false, "uploading " + it->file->path);
      if (pr.status < 200 || pr.status >= 300) hub.fail_with(pr, "uploading " + it->file->path, repo_id, revision);
      if (o["actions"].contains("verify")) {
        const json& v = o["actions"]["verify"];
        HttpCall vc;
        vc.method = "POST";
        vc.url = v.at("href").get<std::string>();
        vc.body = json{{"oid", it->oid}, {"size", it->size}}.dump();
        vc.headers = {{"Content-Type", "application/vnd.git-lfs+json"}, {"Accept", "application/vnd.git-lfs+json"}};
        const HttpResponse vr = hub.call(vc, true, "verifying " + it->file->path);
        if (vr.status != 200) hub.fail_with(vr, "verifying the upload of " + it->file->path, repo_id, revision);
      }
      ++result.lfs_uploaded;
      log::info("uploaded {} ({:.1f} MB, LFS)", it->file->path, static_cast<double>(it->size) / 1e6);
    }
  }

  // 5. One commit of every file. With the parent commit named, a retried commit cannot land twice.
  json header = {{"summary", message}, {"description", ""}};
  if (!parent.empty()) header["parentCommit"] = parent;
  std::string ndjson = json{{"key", "header"}, {"value", header}}.dump() + "\n";
  for (const auto& s : staged) {
    if (s.lfs) {
      ndjson += json{{"key", "lfsFile"}, {"value", {{"path", s.file->path}, {"algo", "sha256"}, {"oid", s.oid}, {"size", s.size}}}}.dump() + "\n";
    } else {
      const std::string content = s.file->local_path.empty() ? s.file->content : fs::read_text(s.file->local_path);
      ndjson += json{{"key", "file"},
                     {"value", {{"content", hash::base64(content.data(), content.size())}, {"path", s.file->path}, {"encoding", "base64"}}}}
                    .dump() +
                "\n";
    }
  }
  HttpCall commit;
  commit.method = "POST";
  commit.url = hub.api("/models/" + repo_id + "/commit/" + rev);
  commit.body = ndjson;
  commit.headers = {{"Content-Type", "application/x-ndjson"}};
  r = hub.call(commit, true, "committing to " + repo_id);
  if (r.status != 200 && r.status != 201) {
    if (r.status == 412)
      fail("committing to {}: the branch '{}' moved while we uploaded (412: another commit landed first); push again",
           repo_id, revision);
    hub.fail_with(r, "committing to " + repo_id, repo_id, revision);
  }
  const json done = parse_json(r, "commit");
  result.commit_oid = done.value("commitOid", std::string());
  result.commit_url = done.value("commitUrl", opt.endpoint + "/" + repo_id + "/commit/" + result.commit_oid);
  return result;
}

std::string pull(const HubOptions& opt, const std::string& repo_id, const std::string& revision,
                 const std::vector<std::string>& wanted, const std::vector<std::string>& required, const std::string& dir,
                 std::vector<PulledFile>* pulled) {
  check_repo_id(repo_id);
  const Client hub(opt);
  // The revision's commit and files; every download is then pinned to that commit.
  HttpResponse r = hub.json_call("GET", hub.api("/models/" + repo_id + "/revision/" + url_quote(revision)), nullptr,
                                 "looking up " + repo_id);
  if (r.status != 200) hub.fail_with(r, "looking up " + repo_id, repo_id, revision);
  const json info = parse_json(r, "repo info");
  const std::string sha = info.value("sha", revision);
  std::vector<std::string> present;
  for (const auto& s : info.value("siblings", json::array())) present.push_back(s.value("rfilename", std::string()));
  for (const auto& need : required)
    if (std::find(present.begin(), present.end(), need) == present.end())
      fail("{}@{} holds no cifar100 model: {} is missing (the repo has: {}); push one with `cifar100 push`", repo_id,
           revision, need, present.empty() ? std::string("no files") : fmt::format("{}", fmt::join(present, ", ")));
  fs::make_dirs(dir);
  for (const auto& name : wanted) {
    if (std::find(present.begin(), present.end(), name) == present.end()) continue;
    const std::string target = (stdfs::path(dir) / name).string();
    const std::string what = "downloading " + name + " from " + repo_id;
    HttpCall c;
    c.url = hub.url("/" + repo_id + "/resolve/" + url_quote(sha) + "/" + url_quote(name, true));
    c.sink_file = target;
    c.stall_timeout_s = 120;
    r = hub.call(c, true, what);
    std::string expect_sha256, expect_sha1;
    int64_t expect_size = -1;
    if (r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308) {
      // LFS files live elsewhere (a CDN): their hash and size are on this redirect only.
      auto h = [&](const char* k) { return r.headers.count(k) ? r.headers.at(k) : std::string(); };
      expect_sha256 = strip_etag(h("x-linked-etag"));
      if (!h("x-linked-size").empty()) expect_size = std::stoll(h("x-linked-size"));
      std::string location = h("location");
      if (location.empty()) fail("{}: a redirect without a Location header", what);
      const bool relative = location.front() == '/';
      HttpCall follow;
      follow.url = relative ? opt.endpoint + location : location;
      follow.sink_file = target;
      follow.stall_timeout_s = 120;
      r = hub.call(follow, /*authorize=*/relative, what);  // the token stays with the Hub
    } else if (r.status == 200) {
      expect_sha1 = strip_etag(r.headers.count("etag") ? r.headers.at("etag") : "");
    }
    if (r.status != 200) hub.fail_with(r, what, repo_id, revision);
    const auto size = static_cast<int64_t>(stdfs::file_size(target));
    if (expect_size >= 0 && size != expect_size)
      fail("{}: got {} bytes, the Hub says {}; the download is incomplete or altered (nothing was kept)", what, size,
           expect_size);
    if (!expect_sha256.empty() && expect_sha256.size() == 64) {
      if (const std::string got = hash::sha256_file(target); got != expect_sha256)
        fail("{}: SHA-256 {} differs from the Hub's {} (the download is corrupt; nothing was kept)", what, got,
             expect_sha256);
    } else if (expect_sha1.size() == 40) {
      if (const std::string got = hash::git_blob_sha1_file(target, size); got != expect_sha1)
        fail("{}: git blob SHA-1 {} differs from the Hub's {} (the download is corrupt; nothing was kept)", what, got,
             expect_sha1);
    }
    if (pulled) pulled->push_back({name, size, !expect_sha256.empty()});
  }
  return sha;
}

}  // namespace cifar::cloud::hub
