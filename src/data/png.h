// PNG files through libpng: writing 8-bit RGB images (previews, plots), atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cifar::data {

// `rgb` holds height rows of width RGB triplets.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

}  // namespace cifar::data
