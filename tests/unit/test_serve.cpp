// Unit tests for the server's codecs (base64, .npy, JSON instances, content types, every rejection with
// its status) and the dynamic batcher (each request gets exactly its own rows of the batched forward pass).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "model/artifact.h"
#include "model/inference.h"
#include "serve/batcher.h"
#include "serve/codec.h"
#include "support/testutil.h"

using namespace cifar;

namespace {
int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const serve::RequestError& e) {
    return e.status();
  }
  return 0;
}

std::string npy(const std::string& descr, const std::string& shape, size_t bytes) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + std::string(bytes, '\x07');
}
}  // namespace

TEST(ServeCodec, Base64RoundTripAndErrors) {
  std::mt19937 rng(1);
  for (size_t n = 0; n < 20; ++n) {
    std::vector<uint8_t> data(n);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    EXPECT_EQ(serve::base64_decode(serve::base64_encode(data.data(), data.size())), data) << n;
  }
  EXPECT_EQ(serve::base64_encode(reinterpret_cast<const uint8_t*>("Man"), 3), "TWFu");
  EXPECT_EQ(serve::base64_encode(reinterpret_cast<const uint8_t*>("Ma"), 2), "TWE=");
  EXPECT_EQ(status_of([] { serve::base64_decode("TW!u"); }), 400);
  EXPECT_EQ(status_of([] { serve::base64_decode("TWE=x"); }), 400);
  EXPECT_EQ(status_of([] { serve::base64_decode("T"); }), 400);
}

TEST(ServeCodec, NpyArraysAndRejections) {
  serve::DecodeOptions o;
  const auto one = serve::decode_npy(npy("|u1", "(32, 32, 3)", 3072), o);
  EXPECT_EQ(one.count, 1);
  EXPECT_EQ(one.pixels.size(), 3072u);
  EXPECT_EQ(one.pixels[5], 7);
  EXPECT_EQ(serve::decode_npy(npy("|u1", "(3, 32, 32, 3)", 3 * 3072), o).count, 3);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("<f4", "(32, 32, 3)", 4 * 3072), o); }), 415);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("|u1", "(16, 16, 3)", 768), o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("|u1", "(32, 32, 3)", 3000), o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("|u1", "(0, 32, 32, 3)", 0), o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("|u1", "(300, 32, 32, 3)", 300 * 3072), o); }), 413);
  EXPECT_EQ(status_of([&] { serve::decode_npy("not numpy at all", o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_npy(npy("|u1", "(32, 32, 3)", 3072).substr(0, 20), o); }), 400);
  // The answer format: a float32 .npy whose header NumPy accepts (64-byte aligned, shape as written).
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const std::string out = serve::encode_npy_f32(v, 2, 3);
  const size_t hlen = static_cast<uint8_t>(out[8]) | (static_cast<uint8_t>(out[9]) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_NE(out.find("'shape': (2, 3)"), std::string::npos);
  EXPECT_EQ(out.size(), 10 + hlen + 24);
}

TEST(ServeCodec, JsonInstancesAndContentTypes) {
  serve::DecodeOptions o;
  nlohmann::json img = nlohmann::json::array();
  for (int y = 0; y < 32; ++y) {
    nlohmann::json row = nlohmann::json::array();
    for (int x = 0; x < 32; ++x) row.push_back({x, y, 255});
    img.push_back(row);
  }
  const auto got = serve::decode_request("application/json; charset=utf-8",
                                         nlohmann::json{{"instances", {img, img}}, {"top_k", 3}}.dump(), o);
  EXPECT_EQ(got.count, 2);
  EXPECT_EQ(got.top_k, 3);
  EXPECT_EQ(got.pixels[(5 * 32 + 7) * 3 + 0], 7);
  EXPECT_EQ(got.pixels[(5 * 32 + 7) * 3 + 1], 5);
  img[0][0][2] = 256;
  EXPECT_EQ(status_of([&] { serve::decode_request("application/json", nlohmann::json{{"instances", {img}}}.dump(), o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_request("application/json", R"({"instances": []})", o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_request("application/json", R"({"instances": [1], "top_k": "x"})", o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_request("text/csv", "1,2,3", o); }), 415);
  EXPECT_EQ(status_of([&] { serve::decode_request("IMAGE/PNG", "not a png", o); }), 400);
  EXPECT_EQ(status_of([&] { serve::decode_request("image/png", "", o); }), 400);
}

TEST(ServeBatcher, EveryRequestGetsItsOwnRows) {
  torch::manual_seed(3);
  model::WideResNet net(model::WrnConfig{10, 1, 0.0, 100});
  const std::string dir = synth::temp_dir("batcher") + "/m";
  model::write_artifact(dir, *net, model::default_info(net->config()));
  const model::Artifact art = model::load_artifact(dir);
  const model::InferenceModel engine(art, {});
  serve::BatcherOptions bo;
  bo.max_batch = 8;
  bo.max_wait = std::chrono::microseconds(20000);
  std::vector<int64_t> batches;
  std::mutex mu;
  serve::Batcher b(engine, bo, [&](int64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    batches.push_back(n);
  });
  const int n = 12;
  std::vector<at::Tensor> inputs;
  for (int i = 0; i < n; ++i) inputs.push_back(torch::randint(0, 256, {1 + i % 3, 32, 32, 3}, torch::kUInt8));
  std::vector<serve::Probabilities> out(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      const at::Tensor& x = inputs[static_cast<size_t>(i)];
      std::vector<uint8_t> px(x.data_ptr<uint8_t>(), x.data_ptr<uint8_t>() + x.numel());
      auto f = b.submit(std::move(px), x.size(0));
      ASSERT_TRUE(f.has_value());
      out[static_cast<size_t>(i)] = f->get();
    });
  for (auto& t : threads) t.join();
  int64_t total = 0;
  for (int64_t s : batches) {
    EXPECT_LE(s, 8);
    total += s;
  }
  EXPECT_EQ(total, 1 * 4 + 2 * 4 + 3 * 4);
  EXPECT_LT(batches.size(), static_cast<size_t>(n));  // requests were gathered
  for (int i = 0; i < n; ++i) {
    const at::Tensor want = torch::softmax(engine.logits_u8(inputs[static_cast<size_t>(i)]), 1);
    const auto& p = out[static_cast<size_t>(i)];
    ASSERT_EQ(p.rows, inputs[static_cast<size_t>(i)].size(0));
    const at::Tensor got = torch::from_blob(const_cast<float*>(p.values.data()), {p.rows, p.classes}).clone();
    EXPECT_LE((got - want).abs().max().item<float>(), 1e-5f) << i;
  }
  b.stop();
  EXPECT_FALSE(b.submit(std::vector<uint8_t>(3072), 1).has_value());  // stopped: refused
}
