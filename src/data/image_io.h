// Reading user images for predict and serve: PNG (libpng) and JPEG (libjpeg-turbo), recognised by their
// first bytes rather than their names, decoded to 8-bit RGB (grey replicated, alpha dropped, palettes
// expanded, 16-bit reduced to its high byte: what PIL's convert("RGB") gives), with limits checked from
// the header before any pixel is decoded. Every failure throws cifar::Error naming the input and the cause.
// Then one fixed way to make 32x32: the centred square of the image (side = the shorter side), resized
// with PIL's antialiased bilinear filter (Image.resize((32, 32), BILINEAR, box=square)), bit-exactly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cifar::data {

enum class ImageFormat { Unknown, Png, Jpeg, Gif, Bmp, Webp, Tiff };
const char* format_name(ImageFormat f);
ImageFormat sniff_format(const uint8_t* data, size_t size);

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height rows of width RGB triplets
  ImageFormat format = ImageFormat::Unknown;
};

struct DecodeLimits {
  int64_t max_pixels = 40'000'000;  // 40 megapixels (PIL warns at 89)
  int max_side = 30'000;
  size_t max_bytes = 64u << 20;  // encoded size
  int max_jpeg_scans = 100;      // progressive JPEGs have about 10; thousands are a decoding-cost attack
  // When > 0, a JPEG is decoded with libjpeg's DCT scaling (1/2, 1/4 or 1/8) to the smallest size whose
  // sides stay at least this: what PIL's Image.draft("RGB", (n, n)) does. The server uses it (n = 32).
  int jpeg_min_side = 0;
};

// The width and height declared by a PNG or JPEG header, without decoding; false when not found.
bool peek_size(const uint8_t* data, size_t size, int64_t* width, int64_t* height);

// `name` names the input in messages (a file path, "request body", "instance 3").
Image decode_image(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits = {});
Image read_image(const std::string& path, const DecodeLimits& limits = {});

// Antialiased bilinear resize of the box [x0, x1) x [y0, y1) of `src` to out_w x out_h, as PIL does it
// (8-bit fixed-point coefficients, horizontal pass first).
Image resize_bilinear(const Image& src, int out_w, int out_h, double x0, double y0, double x1, double y1);
// The centred square crop resized to size x size (HWC RGB bytes).
std::vector<uint8_t> to_square(const Image& src, int size);

// Encodes RGB as JPEG (tests and tools).
std::vector<uint8_t> encode_jpeg(const Image& img, int quality);

}  // namespace cifar::data
