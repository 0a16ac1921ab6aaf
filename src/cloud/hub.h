// The Hugging Face Hub over its HTTP API (no Python client): create a model repo, a branch, and one commit
// of several files, large ones through the Git LFS batch API (basic transfers); download files pinned to
// one commit, checking each against the Hub's hashes (SHA-256 for LFS files, Git's blob SHA-1 otherwise).
// Transient failures (network errors, 408, 429, 5xx) are retried with exponential backoff; the commit
// carries its parent commit, so a retried commit can never land twice. The token never leaves for the
// storage or CDN hosts that uploads and downloads are redirected to.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cifar::cloud::hub {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";
  std::string token;          // empty: anonymous (downloads of public repos only)
  std::string token_source;   // where the token came from, for messages (never the token itself)
  int attempts = 3;           // per request, for transient failures
  double backoff_seconds = 0.5;
};
// HF_ENDPOINT; the token from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the file HF_TOKEN_PATH, else
// $HF_HOME/token (HF_HOME defaults to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface).
HubOptions options_from_env();

struct UploadFile {
  std::string path;        // in the repo
  std::string local_path;  // the file to upload, or
  std::string content;     // this text (when local_path is empty)
};

struct PushResult {
  std::string commit_oid, commit_url;
  bool created_repo = false, created_branch = false;
  int lfs_uploaded = 0, lfs_already_stored = 0;
};

// `repo_id` is OWNER/NAME. Creates the repo when missing (private when asked), the branch `revision` when
// it is not main and missing, then commits every file in one commit titled `message`.
PushResult push(const HubOptions& opt, const std::string& repo_id, const std::string& revision, bool private_repo,
                const std::string& message, const std::vector<UploadFile>& files);

struct PulledFile {
  std::string path;
  int64_t size = 0;
  bool lfs = false;
};
// Downloads the repo files named in `wanted` that the revision holds (failing when one of `required` is
// missing) into `dir`, all from the one commit the revision resolves to. Returns that commit's id.
std::string pull(const HubOptions& opt, const std::string& repo_id, const std::string& revision,
                 const std::vector<std::string>& wanted, const std::vector<std::string>& required, const std::string& dir,
                 std::vector<PulledFile>* pulled = nullptr);

// OWNER/NAME with the Hub's character rules; throws a configuration error otherwise.
void check_repo_id(const std::string& repo_id);
// Percent-encoding as the Hub's client quotes: every byte but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash); RFC 3986's
// unreserved set, the same as SigV4's.
std::string url_quote(const std::string& s, bool keep_slash = false);

}  // namespace cifar::cloud::hub
