// Unit tests for reading user images: format sniffing, PNG/JPEG decoding, every bad-file case with its
// message, and the PIL-compatible bilinear resize against hand-computed values. (Bit-exact parity with PIL
// on many files is tests/parity/test_images.py.)
#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "common/fsutil.h"
#include "data/image_io.h"
#include "data/png.h"
#include "support/testutil.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;

namespace {
data::Image gradient(int w, int h) {
  data::Image img;
  img.width = w;
  img.height = h;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      img.rgb.push_back(static_cast<uint8_t>(x * 255 / std::max(w - 1, 1)));
      img.rgb.push_back(static_cast<uint8_t>(y * 255 / std::max(h - 1, 1)));
      img.rgb.push_back(static_cast<uint8_t>((x * 3 + y * 5) % 256));
    }
  return img;
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
}  // namespace

TEST(Images, FormatsAreRecognisedByTheirBytes) {
  auto sniff = [](const std::string& s) {
    return data::sniff_format(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  EXPECT_EQ(sniff(std::string("\x89PNG\r\n\x1a\n....", 12)), data::ImageFormat::Png);
  EXPECT_EQ(sniff("\xff\xd8\xff\xe0"), data::ImageFormat::Jpeg);
  EXPECT_EQ(sniff("GIF89a..."), data::ImageFormat::Gif);
  EXPECT_EQ(sniff("BM......"), data::ImageFormat::Bmp);
  EXPECT_EQ(sniff("RIFF....WEBPVP8 "), data::ImageFormat::Webp);
  EXPECT_EQ(sniff("hello world"), data::ImageFormat::Unknown);
  EXPECT_EQ(sniff(""), data::ImageFormat::Unknown);
}

TEST(Images, PngRoundTripIsExact) {
  const std::string dir = temp_dir("png");
  const data::Image img = gradient(37, 23);
  data::write_png(dir + "/a.png", img.width, img.height, img.rgb);
  const data::Image back = data::read_image(dir + "/a.png");
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 23);
  EXPECT_EQ(back.format, data::ImageFormat::Png);
  EXPECT_EQ(back.rgb, img.rgb);
}

TEST(Images, JpegRoundTripIsClose) {
  const data::Image img = gradient(64, 48);
  const std::vector<uint8_t> jpg = data::encode_jpeg(img, 95);
  const data::Image back = data::decode_image(jpg.data(), jpg.size(), "x.jpg");
  ASSERT_EQ(back.width, 64);
  ASSERT_EQ(back.height, 48);
  EXPECT_EQ(back.format, data::ImageFormat::Jpeg);
  double err = 0;
  for (size_t i = 0; i < img.rgb.size(); ++i) err += std::abs(int(img.rgb[i]) - int(back.rgb[i]));
  EXPECT_LT(err / static_cast<double>(img.rgb.size()), 3.0);  // lossy, but close at quality 95
}

TEST(Images, BadFilesAreRejectedWithTheReason) {
  const std::string dir = temp_dir("badimg");
  const data::Image img = gradient(40, 30);
  data::write_png(dir + "/ok.png", img.width, img.height, img.rgb);
  const std::vector<uint8_t> png = fs::read_bytes(dir + "/ok.png");
  const std::vector<uint8_t> jpg = data::encode_jpeg(img, 90);
  auto decode = [](const std::vector<uint8_t>& b) {
    return error_of([&] { data::decode_image(b.data(), b.size(), "in.img"); });
  };
  // Truncated files.
  EXPECT_NE(decode(std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2)).find("truncated"), std::string::npos);
  EXPECT_NE(decode(std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() / 2)).find("truncated"), std::string::npos);
  // Right signature, garbage after it.
  std::vector<uint8_t> garbage(png.begin(), png.begin() + 8);
  garbage.resize(200, 0x5a);
  EXPECT_NE(decode(garbage).find("corrupt PNG"), std::string::npos) << decode(garbage);
  std::vector<uint8_t> jgarbage(jpg.begin(), jpg.begin() + 3);
  jgarbage.resize(200, 0x11);
  EXPECT_NE(decode(jgarbage).find("corrupt JPEG"), std::string::npos) << decode(jgarbage);
  // Other formats and non-images.
  const std::string gif = "GIF89a\x01\x00\x01\x00";
  EXPECT_NE(decode({gif.begin(), gif.end()}).find("GIF images are not supported"), std::string::npos);
  const std::string text = "this is a text file";
  EXPECT_NE(decode({text.begin(), text.end()}).find("not a PNG or JPEG"), std::string::npos);
  EXPECT_NE(decode({}).find("empty"), std::string::npos);
  // A header claiming 100000 x 100000 pixels is refused before any pixel is decoded.
  std::vector<uint8_t> huge = png;
  put_be32(huge.data() + 16, 100000);
  put_be32(huge.data() + 20, 100000);
  put_be32(huge.data() + 29, crc32(huge.data() + 12, 17));
  const std::string e = decode(huge);
  EXPECT_NE(e.find("100000x100000"), std::string::npos) << e;
  EXPECT_NE(e.find("megapixels"), std::string::npos) << e;
  // Files: missing, and the name in the message.
  EXPECT_NE(error_of([&] { data::read_image(dir + "/missing.png"); }).find("missing.png: no such file"), std::string::npos);
  EXPECT_EQ(error_of([&] { data::read_image(dir + "/ok.png"); }), "");
}

TEST(Images, BilinearResizeMatchesHandComputedValues) {
  // A 4 x 1 row [0, 0, 70, 70] halved: PIL's triangle filter stretched to support 2 gives weights
  // (0.75, 0.75, 0.25) / 1.75 around each output centre -> [10, 60].
  data::Image row;
  row.width = 4;
  row.height = 1;
  for (int v : {0, 0, 70, 70})
    for (int c = 0; c < 3; ++c) row.rgb.push_back(static_cast<uint8_t>(v + c));
  const data::Image half = data::resize_bilinear(row, 2, 1, 0, 0, 4, 1);
  ASSERT_EQ(half.width, 2);
  EXPECT_EQ(half.rgb[0], 10);
  EXPECT_EQ(half.rgb[3], 60);
  EXPECT_EQ(half.rgb[4], 61);  // channel 1: [1, 1, 71, 71] -> 11 and 61
  // Same size, whole box: unchanged. Constant image: constant at any size.
  const data::Image g = gradient(9, 7);
  EXPECT_EQ(data::resize_bilinear(g, 9, 7, 0, 0, 9, 7).rgb, g.rgb);
  data::Image flat;
  flat.width = 50;
  flat.height = 20;
  flat.rgb.assign(50 * 20 * 3, 123);
  for (uint8_t v : data::to_square(flat, 32)) ASSERT_EQ(v, 123);
  // The centre square of a wide image: a 96 x 32 image whose middle third is white becomes all white.
  data::Image wide;
  wide.width = 96;
  wide.height = 32;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 96; ++x)
      for (int c = 0; c < 3; ++c) wide.rgb.push_back(x >= 32 && x < 64 ? 255 : 0);
  const auto sq = data::to_square(wide, 32);
  ASSERT_EQ(sq.size(), 32u * 32 * 3);
  for (uint8_t v : sq) ASSERT_EQ(v, 255);
}
