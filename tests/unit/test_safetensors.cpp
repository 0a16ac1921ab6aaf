// Unit tests for the safetensors writer and reader, against the format's specification: byte layout,
// alignment, round trip of every dtype used, and rejection of malformed files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "model/safetensors.h"
#include "support/testutil.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace st = model::safetensors;

namespace {
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
}  // namespace

TEST(Safetensors, LayoutFollowsTheSpecification) {
  const std::string dir = temp_dir("st-layout");
  auto a = torch::arange(6, torch::kFloat32).view({2, 3});
  auto b = torch::tensor({7, 8}, torch::kInt64);
  const std::string sha = st::write(dir + "/x.safetensors", {{"a", a}, {"b", b}}, {{"k", "v"}});
  const auto bytes = fs::read_bytes(dir + "/x.safetensors");
  EXPECT_EQ(sha, hash::sha256(bytes.data(), bytes.size()));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);  // data section aligned
  auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(header["b"]["dtype"], "I64");
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json({24, 40}));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(bytes.size(), 8 + n + 40);
  float third;
  std::memcpy(&third, bytes.data() + 8 + n + 2 * 4, 4);  // little-endian float 2.0 at element 2
  EXPECT_EQ(third, 2.0f);
}

TEST(Safetensors, RoundTripKeepsOrderValuesAndDtypes) {
  const std::string dir = temp_dir("st-roundtrip");
  st::Tensors in = {{"z.weight", torch::randn({4, 3, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast)},
                    {"a.count", torch::tensor(12, torch::kInt64)},
                    {"m.bytes", torch::randint(0, 255, {17}, torch::kUInt8)},
                    {"h.half", torch::randn({5}).to(torch::kBFloat16)},
                    {"empty", torch::empty({0, 4})}};
  st::write(dir + "/r.safetensors", in, {{"format", "test"}});
  auto f = st::read(dir + "/r.safetensors");
  ASSERT_EQ(f.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(f.tensors[i].first, in[i].first);  // file order = write order
    EXPECT_EQ(f.tensors[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(f.tensors[i].second, in[i].second.contiguous())) << in[i].first;
  }
  EXPECT_EQ(f.metadata.at("format"), "test");
}

TEST(Safetensors, MalformedFilesAreRejectedWithTheReason) {
  auto bad = [](const std::vector<uint8_t>& bytes) { return error_of([&] { st::parse(bytes.data(), bytes.size(), "f"); }); };
  EXPECT_NE(bad({1, 2, 3}).find("shorter than the 8-byte header"), std::string::npos);
  EXPECT_NE(bad(make_file("{\"a\":{", {})).find("not valid JSON"), std::string::npos);
  auto huge = make_file("{}", {});
  huge[5] = 1;  // header length far beyond the file
  EXPECT_NE(bad(huge).find("exceeds the file"), std::string::npos);
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)))
                .find("unsupported dtype 'X9'"),
            std::string::npos);
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)))
                .find("needs 8 bytes"),
            std::string::npos);
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::vector<uint8_t>(4)))
                .find("truncated"),
            std::string::npos);
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                          std::vector<uint8_t>(3)))
                .find("hole or overlap"),
            std::string::npos);
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", std::vector<uint8_t>(5)))
                .find("3 bytes after the last tensor"),
            std::string::npos);
}

TEST(Safetensors, ShapesThatOverflowOrHaveTooManyDimensionsAreRejected) {
  auto bad = [](const std::vector<uint8_t>& bytes) { return error_of([&] { st::parse(bytes.data(), bytes.size(), "f"); }); };
  // 2^32 x 2^32 x 1 byte wraps a 64-bit product to 0, which would match empty offsets.
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", {}))
                .find("larger than the file"),
            std::string::npos);
  // 2^62 F32 elements: the element size overflows the byte count.
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", {}))
                .find("larger than the file"),
            std::string::npos);
  // A dimension of 0 makes any other size empty: valid, no bytes.
  const auto empty = make_file(R"({"a":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[0,0]}})", {});
  EXPECT_NO_THROW(st::parse(empty.data(), empty.size(), "f"));
  const auto empty2 = make_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904,0],"data_offsets":[0,0]}})", {});
  EXPECT_NO_THROW(st::parse(empty2.data(), empty2.size(), "f"));
  EXPECT_NE(bad(make_file(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", {0}))
                .find("9 dimensions; at most 8"),
            std::string::npos);
}
