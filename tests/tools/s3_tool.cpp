// Test helper over src/cloud (the S3 client, the signer, the storage interface), for tests/integration/test_s3.py
// and tests/parity/test_sigv4.py:
//   s3_tool sign                     read JSON requests (one per line) on stdin, print each one's signature JSON
//   s3_tool put FILE ADDRESS         store a file (multipart above the threshold)
//   s3_tool get ADDRESS FILE         fetch into a file (ranged parallel reads above the threshold)
//   s3_tool range ADDRESS OFF LEN    print LEN bytes from OFF
//   s3_tool ls PREFIX                print "size name" per object (all pages)
//   s3_tool rm ADDRESS
//   s3_tool put-many PREFIX N        store N tiny objects PREFIX/k00000 ... (listing tests)
//   s3_tool creds                    print where the credentials came from and a SHA-256 of the token
//   s3_tool watch ADDRESS N MS       N reads of ADDRESS, MS apart, each printing the SHA-256 of the token used
// Thresholds: CIFAR100_S3_PART_MB, CIFAR100_S3_MULTIPART_MB. Exit 1 with the error on failure.
#include <chrono>
#include <cstdio>
#include <thread>
#include <cstdlib>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "cloud/s3.h"
#include "cloud/storage.h"
#include "common/log.h"

using namespace cifar::cloud;

namespace {
S3Options options() {
  S3Options o;
  if (const char* v = std::getenv("CIFAR100_S3_PART_MB")) o.part_size = std::atoll(v) << 20;
  if (const char* v = std::getenv("CIFAR100_S3_MULTIPART_MB")) o.multipart_threshold = std::atoll(v) << 20;
  return o;
}

int sign_lines() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    HttpRequest r;
    r.method = j.at("method");
    r.host = j.at("host");
    // "raw_path": an unencoded path, encoded as the S3 client encodes keys; "path": used as given.
    r.path = j.contains("raw_path") ? uri_encode(j.at("raw_path").get<std::string>(), true) : j.at("path").get<std::string>();
    for (const auto& q : j.at("query")) r.query.emplace_back(q.at(0), q.at(1));
    for (const auto& [k, v] : j.at("headers").items()) r.headers[k] = v.get<std::string>();
    r.payload_sha256 = j.at("payload_sha256");
    Credentials c{j.at("key"), j.at("secret"), j.value("token", std::string()), 0, "test"};
    const Signature s = sign_v4(r, c, j.at("region"), j.at("service"), j.at("time").get<std::time_t>());
    std::cout << nlohmann::json{{"canonical_request", s.canonical_request}, {"string_to_sign", s.string_to_sign},
                                {"signature", s.signature}, {"authorization", s.authorization}, {"headers", s.headers},
                                {"query", canonical_query(r.query)}}
                     .dump()
              << "\n";
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  cifar::log::init(cifar::log::Level::Warn);  // stdout carries the results
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "sign") return sign_lines();
    S3Client s3(options());
    if (cmd == "put" && argc == 4) {
      if (is_s3_uri(argv[3])) s3.put_file(parse_s3_uri(argv[3]), argv[2]);
      else publish_file(argv[2], argv[3]);
    } else if (cmd == "get" && argc == 4) {
      if (is_s3_uri(argv[2])) s3.get_file(parse_s3_uri(argv[2]), argv[3]);
      else storage_for(argv[2]).get(argv[2], argv[3]);
    } else if (cmd == "range" && argc == 5) {
      std::cout << s3.get_range(parse_s3_uri(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]));
    } else if (cmd == "ls" && argc == 3) {
      for (const auto& e : storage_for(argv[2]).list(argv[2])) std::printf("%lld %s\n", static_cast<long long>(e.size), e.name.c_str());
    } else if (cmd == "rm" && argc == 3) {
      storage_for(argv[2]).remove(argv[2]);
    } else if (cmd == "put-many" && argc == 4) {
      const S3Uri p = parse_s3_uri(argv[2]);
      for (int i = 0; i < std::atoi(argv[3]); ++i) {
        char key[32];
        std::snprintf(key, sizeof key, "k%05d", i);
        s3.put_string({p.bucket, join(p.key, key)}, std::to_string(i));
      }
    } else if (cmd == "watch" && argc == 5) {
      for (int i = 0; i < std::atoi(argv[3]); ++i) {
        if (i) std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[4])));
        (void)s3.get_string(parse_s3_uri(argv[2]));
        std::printf("%s\n", sha256_hex(CredentialsProvider::standard_chain()->get().session_token).c_str());
        std::fflush(stdout);
      }
    } else if (cmd == "creds") {
      const Credentials c = CredentialsProvider::standard_chain()->get();
      std::printf("%s %s\n", c.source.c_str(), c.session_token.empty() ? "-" : sha256_hex(c.session_token).c_str());
    } else {
      std::fprintf(stderr, "usage: s3_tool sign | put FILE ADDR | get ADDR FILE | range ADDR OFF LEN | ls PREFIX | rm ADDR "
                           "| put-many PREFIX N | creds\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "s3_tool: %s\n", e.what());
    return 1;
  }
  return 0;
}
