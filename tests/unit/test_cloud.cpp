// Unit tests for src/cloud's signer, credentials, S3 helpers and storage: AWS's published SigV4 examples,
// encoding rules, the credential chain's environment, file and JSON parts, tar.gz packing, local storage.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cloud/credentials.h"
#include "cloud/s3.h"
#include "cloud/sigv4.h"
#include "cloud/storage.h"
#include "common/fsutil.h"
#include "support/testutil.h"

using namespace cifar;
using namespace cifar::cloud;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

class EnvGuard {
 public:
  explicit EnvGuard(std::vector<std::string> names) : names_(std::move(names)) {
    for (const auto& n : names_) {
      const char* v = std::getenv(n.c_str());
      saved_.push_back(v ? std::optional<std::string>(v) : std::nullopt);
      ::unsetenv(n.c_str());
    }
  }
  ~EnvGuard() {
    for (size_t i = 0; i < names_.size(); ++i)
      if (saved_[i]) ::setenv(names_[i].c_str(), saved_[i]->c_str(), 1);
      else ::unsetenv(names_[i].c_str());
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::optional<std::string>> saved_;
};

// The example credentials and time of AWS's SigV4 test suite (2015-08-30T12:36:00Z).
const Credentials kSuite{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "", 0, "test"};
const std::time_t kSuiteTime = 1440938160;
}  // namespace

TEST(SigV4, AwsTestSuiteGetVanilla) {
  HttpRequest r{"GET", "example.amazonaws.com", "/", {}, {}, kEmptySha};
  const Signature s = sign_v4(r, kSuite, "us-east-1", "service", kSuiteTime);
  EXPECT_EQ(s.canonical_request, std::string("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                                             "host;x-amz-date\n") + kEmptySha);
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, AwsTestSuiteQueryOrder) {
  HttpRequest r{"GET", "example.amazonaws.com", "/", {{"Param2", "value2"}, {"Param1", "value1"}}, {}, kEmptySha};
  EXPECT_EQ(sign_v4(r, kSuite, "us-east-1", "service", kSuiteTime).signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4, AwsS3DocumentationGetObjectExample) {
  // "Example: GET Object" of the S3 SigV4 header-authentication documentation (2013-05-24, examplebucket).
  const Credentials c{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", 0, "test"};
  HttpRequest r{"GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {{"Range", "bytes=0-9"}}, kEmptySha};
  const Signature s = sign_v4(r, c, "us-east-1", "s3", 1369353600);
  EXPECT_EQ(s.signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, SessionTokenIsSignedAndHeadersAreFolded) {
  Credentials c = kSuite;
  c.session_token = "TOKEN";
  HttpRequest r{"PUT", "b.s3.us-east-1.amazonaws.com", "/k", {}, {{"Content-Type", "  text/plain   x "}}, kEmptySha};
  const Signature s = sign_v4(r, c, "us-east-1", "s3", kSuiteTime);
  EXPECT_EQ(s.headers.at("x-amz-security-token"), "TOKEN");
  EXPECT_EQ(s.headers.at("x-amz-content-sha256"), kEmptySha);
  EXPECT_EQ(s.signed_headers, "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
  EXPECT_NE(s.canonical_request.find("content-type:text/plain x\n"), std::string::npos);
  EXPECT_EQ(s.authorization.find("TOKEN"), std::string::npos);  // the token is a header, never in the signature line
}

TEST(SigV4, EncodingFollowsRfc3986) {
  EXPECT_EQ(uri_encode("a b/c~d_e.f-g", true), "a%20b/c~d_e.f-g");
  EXPECT_EQ(uri_encode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(uri_encode("\xc3\xa9+=&", false), "%C3%A9%2B%3D%26");
  EXPECT_EQ(canonical_query({{"uploadId", "a/b"}, {"partNumber", "2"}}), "partNumber=2&uploadId=a%2Fb");
  EXPECT_EQ(canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(canonical_query({{"prefix", "x"}, {"list-type", "2"}, {"continuation-token", "1/2 3"}}),
            "continuation-token=1%2F2%203&list-type=2&prefix=x");
  EXPECT_EQ(sha256_hex(""), kEmptySha);
}

TEST(S3, AddressesAndXml) {
  EXPECT_EQ(parse_s3_uri("s3://my-bucket/a/b.bin").key, "a/b.bin");
  EXPECT_EQ(parse_s3_uri("s3://my-bucket").key, "");
  EXPECT_NE(error_of([] { (void)parse_s3_uri("s3://My_Bucket/x"); }).find("not a valid bucket name"), std::string::npos);
  EXPECT_NE(error_of([] { (void)parse_s3_uri("/tmp/x"); }).find("not an s3://bucket/key address"), std::string::npos);
  const std::string xml = "<Error><Code>NoSuchKey</Code><Message>a &amp; b &lt;c&gt; &#233;</Message></Error>";
  EXPECT_EQ(xml_text(xml, "Code"), "NoSuchKey");
  EXPECT_EQ(xml_text(xml, "Message"), "a & b <c> \xc3\xa9");
  EXPECT_EQ(xml_text(xml, "Missing"), "");
}

TEST(Credentials, JsonAndTimes) {
  EXPECT_EQ(parse_iso8601("2026-12-01T10:00:00Z"), 1796119200);
  EXPECT_EQ(parse_iso8601("soon"), 0);
  const Credentials c = parse_credentials_json(
      R"({"AccessKeyId": "AK", "SecretAccessKey": "SK", "Token": "T", "Expiration": "2026-12-01T10:00:00Z"})", "x");
  EXPECT_EQ(c.access_key_id, "AK");
  EXPECT_EQ(c.session_token, "T");
  EXPECT_EQ(c.expiration, 1796119200);
  const std::string e = error_of([] { (void)parse_credentials_json(R"({"AccessKeyId": "AK", "Secret": "hunter2"})", "the endpoint"); });
  EXPECT_NE(e.find("without 'SecretAccessKey'"), std::string::npos) << e;
  EXPECT_EQ(error_of([] { (void)parse_credentials_json("not json hunter2", "x"); }).find("hunter2"), std::string::npos);
}

TEST(Credentials, ChainEnvironmentThenSharedFile) {
  EnvGuard g({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
              "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
              "AWS_EC2_METADATA_DISABLED", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3"});
  const std::string dir = temp_dir("creds");
  std::ofstream(dir + "/credentials") << "[default]\naws_access_key_id = DEF\naws_secret_access_key = DS\n\n"
                                         "[work]\naws_access_key_id=WORK\naws_secret_access_key=WS\naws_session_token=WT\n";
  std::ofstream(dir + "/config") << "[default]\nregion = eu-west-1\n[profile work]\nregion=ap-south-1\n";
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir + "/credentials").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (dir + "/config").c_str(), 1);
  ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  // Shared file, profile from AWS_PROFILE (default otherwise); the environment wins over the file.
  ::setenv("AWS_PROFILE", "work", 1);
  Credentials c = CredentialsProvider::new_standard_chain()->get();
  EXPECT_EQ(c.access_key_id, "WORK");
  EXPECT_EQ(c.session_token, "WT");
  EXPECT_EQ(c.source, dir + "/credentials [work]");
  ::unsetenv("AWS_PROFILE");
  EXPECT_EQ(CredentialsProvider::new_standard_chain()->get().access_key_id, "DEF");
  ::setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-env", 1);
  ::setenv("AWS_SESSION_TOKEN", "ET", 1);
  c = CredentialsProvider::new_standard_chain()->get();
  EXPECT_EQ(c.access_key_id, "ENV");
  EXPECT_EQ(c.session_token, "ET");
  EXPECT_EQ(c.source, "environment");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir + "/none").c_str(), 1);
  const std::string e = error_of([] { (void)CredentialsProvider::new_standard_chain()->get(); });
  EXPECT_NE(e.find("no AWS credentials found"), std::string::npos) << e;
  EXPECT_EQ(e.find("s3cr3t"), std::string::npos) << e;  // no secret in the message
  ::setenv("AWS_PROFILE", "work", 1);
  EXPECT_EQ(aws_region(), "ap-south-1");
  ::unsetenv("AWS_PROFILE");
  EXPECT_EQ(aws_region(), "eu-west-1");
  ::setenv("AWS_DEFAULT_REGION", "us-west-2", 1);
  EXPECT_EQ(aws_region(), "us-west-2");
  ::setenv("AWS_REGION", "ca-central-1", 1);
  EXPECT_EQ(aws_region(), "ca-central-1");
  EXPECT_EQ(s3_endpoint_override(), "");
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9/", 1);
  EXPECT_EQ(s3_endpoint_override(), "http://127.0.0.1:9");
  ::setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:8", 1);
  EXPECT_EQ(s3_endpoint_override(), "http://127.0.0.1:8");
}

TEST(Storage, TarGzRoundTripAndRefusals) {
  const std::string dir = temp_dir("tar");
  stdfs::create_directories(dir + "/in");
  std::ofstream(dir + "/in/config.json") << "{}";
  std::ofstream(dir + "/in/model.safetensors") << std::string(100000, 'x');
  write_tar_gz(dir + "/in", dir + "/model.tar.gz");
  extract_tar_gz(dir + "/model.tar.gz", dir + "/out");
  EXPECT_EQ(fs::read_text(dir + "/out/config.json"), "{}");
  EXPECT_EQ(fs::read_text(dir + "/out/model.safetensors"), std::string(100000, 'x'));
  // An archive with an entry that climbs out of the directory is refused and writes nothing outside.
  {
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, (dir + "/evil.tar.gz").c_str());
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "../escaped.txt");
    archive_entry_set_size(e, 2);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, "hi", 2);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
  }
  const std::string err = error_of([&] { extract_tar_gz(dir + "/evil.tar.gz", dir + "/x/y"); });
  EXPECT_NE(err.find("outside its directory"), std::string::npos) << err;
  EXPECT_FALSE(stdfs::exists(dir + "/x/escaped.txt"));
  std::ofstream(dir + "/bad.tar.gz") << "not an archive";
  EXPECT_NE(error_of([&] { extract_tar_gz(dir + "/bad.tar.gz", dir + "/z"); }), "");
}

TEST(Storage, LocalAddressesNeedNoCopies) {
  const std::string dir = temp_dir("local-storage");
  std::ofstream(dir + "/a.bin") << "abc";
  EXPECT_EQ(localize_file(dir + "/a.bin"), dir + "/a.bin");
  EXPECT_EQ(localize_file("file://" + dir + "/a.bin"), dir + "/a.bin");
  EXPECT_EQ(localize_dir(dir), dir);
  EXPECT_FALSE(is_remote(dir));
  EXPECT_TRUE(is_remote("s3://bucket/x"));
  // publish_dir writes the named files last, in order, and a local Output is written in place.
  stdfs::create_directories(dir + "/src");
  for (const char* f : {"z.txt", "config.json", "m.bin"}) std::ofstream(dir + "/src/" + f) << f;
  publish_dir(dir + "/src", dir + "/dst", {"m.bin", "config.json"});
  const auto listed = storage_for(dir + "/dst").list(dir + "/dst");
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(fs::read_text(dir + "/dst/config.json"), "config.json");
  Output out(dir + "/report", true);
  EXPECT_EQ(out.path(), dir + "/report");
  EXPECT_EQ(storage_for(dir + "/nothing").stat(dir + "/nothing").name, "");
  EXPECT_EQ(join("s3://b/p/", "x"), "s3://b/p/x");
  EXPECT_EQ(join("s3://b/p", "x"), "s3://b/p/x");
}
