// PNG files through libpng: writing 8-bit RGB images (previews, plots), atomically.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cifar::data {

// `rgb` holds height rows of width RGB triplets.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);
// Width and height from a PNG file's IHDR chunk; throws Error when `png` is not a PNG.
std::pair<int, int> png_size(const std::string& png);
// The PNG file's bytes; `what` names the image in errors.
std::string encode_png(int width, int height, const std::vector<uint8_t>& rgb, const std::string& what = "image");

}  // namespace cifar::data
