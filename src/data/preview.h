// `data preview`: a grid of training images as the augmentation pipeline makes them for a given epoch
// (the same per-sample draws the loader uses), each labelled with its class name, as a PNG.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/cifar.h"
#include "data/transforms.h"

namespace cifar::data {

struct PreviewOptions {
  int columns = 8;
  int scale = 3;  // pixels per image pixel
  uint64_t seed = 0;
  int64_t epoch = 0;
};

// Renders `indices` of `split` augmented by `pipeline` (random erasing included, shown in image space)
// and writes the PNG. Returns the image size.
std::pair<int, int> write_preview(const std::string& path, const Split& split, const std::vector<int64_t>& indices,
                                  const std::vector<std::string>& class_names, const Pipeline& pipeline,
                                  const PreviewOptions& opts);

// Draws `text` (5x7 pixel glyphs, letters shown in capitals) into an RGB canvas at (x, y), scaled.
void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text, int scale,
               uint8_t r, uint8_t g, uint8_t b);

}  // namespace cifar::data
