#include "data/preview.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/rng.h"
#include "data/augment.h"
#include "data/png.h"

namespace cifar::data {

namespace {
// 5x7 glyphs, one byte per row (low 5 bits, leftmost pixel = bit 4).
struct Glyph {
  char c;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {'A', {14, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}}, {'C', {14, 17, 16, 16, 16, 17, 14}},
    {'D', {30, 17, 17, 17, 17, 17, 30}}, {'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
    {'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}}, {'I', {14, 4, 4, 4, 4, 4, 14}},
    {'J', {7, 2, 2, 2, 2, 18, 12}},      {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 17, 25, 21, 19, 17, 17}}, {'O', {14, 17, 17, 17, 17, 17, 14}},
    {'P', {30, 17, 17, 30, 16, 16, 16}}, {'Q', {14, 17, 17, 17, 21, 18, 13}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
    {'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},       {'U', {17, 17, 17, 17, 17, 17, 14}},
    {'V', {17, 17, 17, 17, 17, 10, 4}},  {'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 17, 10, 4, 10, 17, 17}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'Z', {31, 1, 2, 4, 8, 16, 31}},     {'0', {14, 17, 19, 21, 25, 17, 14}},
    {'1', {4, 12, 4, 4, 4, 4, 14}},      {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},   {'6', {6, 8, 16, 30, 17, 17, 14}},
    {'7', {31, 1, 2, 4, 8, 8, 8}},       {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'_', {0, 0, 0, 0, 0, 0, 31}},       {'-', {0, 0, 0, 31, 0, 0, 0}},       {'.', {0, 0, 0, 0, 0, 12, 12}},
    {':', {0, 12, 12, 0, 12, 12, 0}},    {' ', {0, 0, 0, 0, 0, 0, 0}},        {',', {0, 0, 0, 0, 12, 4, 8}},
    {'%', {24, 25, 2, 4, 8, 19, 3}},     {'=', {0, 0, 31, 0, 31, 0, 0}},      {'/', {1, 1, 2, 4, 8, 16, 16}},
    {'(', {2, 4, 8, 8, 8, 4, 2}},        {')', {8, 4, 2, 2, 2, 4, 8}},
};
const uint8_t* glyph(char c) {
  c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& g : kFont)
    if (g.c == c) return g.rows;
  static const uint8_t box[7] = {31, 17, 17, 17, 17, 17, 31};
  return box;
}
}  // namespace

void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text, int scale,
               uint8_t r, uint8_t g, uint8_t b) {
  for (size_t i = 0; i < text.size(); ++i) {
    const uint8_t* rows = glyph(text[i]);
    const int gx = x + static_cast<int>(i) * 6 * scale;
    for (int ry = 0; ry < 7; ++ry)
      for (int rx = 0; rx < 5; ++rx) {
        if (!((rows[ry] >> (4 - rx)) & 1)) continue;
        for (int sy = 0; sy < scale; ++sy)
          for (int sx = 0; sx < scale; ++sx) {
            const int px = gx + rx * scale + sx, py = y + ry * scale + sy;
            if (px < 0 || py < 0 || px >= width || py >= height) continue;
            uint8_t* o = rgb.data() + (static_cast<size_t>(py) * width + px) * 3;
            o[0] = r, o[1] = g, o[2] = b;
          }
      }
  }
}

std::pair<int, int> write_preview(const std::string& path, const Split& split, const std::vector<int64_t>& indices,
                                  const std::vector<std::string>& class_names, const Pipeline& pipeline,
                                  const PreviewOptions& opts) {
  constexpr int S = ops::S;
  const int cols = std::max(1, std::min<int>(opts.columns, static_cast<int>(indices.size())));
  const int rows = (static_cast<int>(indices.size()) + cols - 1) / cols;
  const int cell = S * opts.scale, label_h = 10, pad = 4;
  const int width = cols * (cell + pad) + pad, height = rows * (cell + label_h + pad) + pad;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 40);
  const int chars = (cell + 1) / 6;  // text at scale 1: 6 pixels per character
  for (size_t n = 0; n < indices.size(); ++n) {
    const int64_t idx = indices[n];
    Rng rng(opts.seed, Stream::Augment, {static_cast<uint64_t>(opts.epoch), static_cast<uint64_t>(idx)});
    float norm[kPixels];
    augment_normalize(split.image(idx), norm, false, &pipeline, rng);
    const int ox = pad + static_cast<int>(n % cols) * (cell + pad), oy = pad + static_cast<int>(n / cols) * (cell + label_h + pad);
    for (int y = 0; y < cell; ++y)
      for (int x = 0; x < cell; ++x)
        for (int c = 0; c < 3; ++c) {
          const float v = (norm[(c * S + y / opts.scale) * S + x / opts.scale] * kStd[c] + kMean[c]) * 255.0f;
          rgb[(static_cast<size_t>(oy + y) * width + ox + x) * 3 + c] =
              static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
        }
    std::string name = class_names.at(split.fine[static_cast<size_t>(idx)]);
    std::replace(name.begin(), name.end(), '_', ' ');
    if (static_cast<int>(name.size()) > chars) name.resize(static_cast<size_t>(chars));
    draw_text(rgb, width, height, ox, oy + cell + 2, name, 1, 235, 235, 235);
  }
  write_png(path, width, height, rgb);
  return {width, height};
}

}  // namespace cifar::data
