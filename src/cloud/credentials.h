// AWS credentials in the order the AWS SDKs look for them, and AWS settings from the environment:
//   1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN);
//   2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials), profile
//      AWS_PROFILE (else "default");
//   3. container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (at http://169.254.170.2), or
//      AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE): what a SageMaker
//      job, ECS task or EKS pod gets;
//   4. instance metadata over IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address;
//      AWS_EC2_METADATA_DISABLED=true skips it).
// Temporary credentials are fetched again before they expire (jobs outlive them) or when a service says
// they expired. Secrets never reach logs or messages.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "cloud/sigv4.h"

namespace cifar::cloud {

class CredentialsProvider {
 public:
  // The standard chain, shared by the process, resolved on first use.
  static std::shared_ptr<CredentialsProvider> standard_chain();
  // A new, separate instance of the chain (tests; a second account).
  static std::shared_ptr<CredentialsProvider> new_standard_chain();
  virtual ~CredentialsProvider() = default;
  // Current credentials, refreshed when temporary ones are within their refresh window of expiring
  // (5 minutes, or half their lifetime when that is shorter). Throws Error when none can be found.
  Credentials get();
  // Forget the cached credentials (the service said they expired); the next get() fetches anew.
  void invalidate();

 protected:
  virtual Credentials fetch() = 0;

 private:
  std::mutex mu_;
  Credentials cached_;
  std::time_t fetched_at_ = 0;
  bool valid_ = false;
};

// The region: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's region in ~/.aws/config (AWS_CONFIG_FILE),
// else "us-east-1".
std::string aws_region();
// The S3 endpoint override: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else "".
std::string s3_endpoint_override();
// Parses the credentials JSON of the container and instance-metadata endpoints ({AccessKeyId,
// SecretAccessKey, Token, Expiration}); `source` names the endpoint in messages.
Credentials parse_credentials_json(const std::string& body, const std::string& source);
// An ISO-8601 UTC time ("2026-12-01T10:00:00Z") as seconds since the epoch; 0 when it cannot be parsed.
std::time_t parse_iso8601(const std::string& text);

}  // namespace cifar::cloud
