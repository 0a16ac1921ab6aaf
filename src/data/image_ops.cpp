#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace cifar::data::ops {

namespace {
inline uint8_t trunc_u8(float v) { return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v))); }
// torch.round: half to even.
inline uint8_t round_u8(float v) { return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, std::nearbyint(v)))); }

int pad_index(int i, PadMode mode) {
  switch (mode) {
    case PadMode::Constant: return (i < 0 || i >= S) ? -1 : i;
    case PadMode::Edge: return std::clamp(i, 0, S - 1);
    case PadMode::Reflect: return i < 0 ? -i : (i >= S ? 2 * (S - 1) - i : i);
    case PadMode::Symmetric: return i < 0 ? -i - 1 : (i >= S ? 2 * S - 1 - i : i);
  }
  return -1;
}

// (ratio * a + (1 - ratio) * b).clamp(0, 255) truncated, as torchvision's _blend on uint8 images.
inline uint8_t blend(float ratio, float one_minus, float a, float b) { return trunc_u8(ratio * a + one_minus * b); }

// rgb_to_grayscale for uint8: (0.2989 r + 0.587 g + 0.114 b) truncated.
inline uint8_t gray(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>(0.2989f * static_cast<float>(r) + 0.587f * static_cast<float>(g) +
                              0.114f * static_cast<float>(b));
}
}  // namespace

void pad_crop(const Image& src, Image& dst, int pad, PadMode mode, uint8_t fill, int top, int left) {
  int rows[S], cols[S];
  for (int k = 0; k < S; ++k) {
    rows[k] = pad_index(top + k - pad, mode);
    cols[k] = pad_index(left + k - pad, mode);
  }
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < S; ++y) {
      uint8_t* out = dst.p[c][y];
      if (rows[y] < 0) {
        std::memset(out, fill, S);
        continue;
      }
      const uint8_t* in = src.p[c][rows[y]];
      for (int x = 0; x < S; ++x) out[x] = cols[x] < 0 ? fill : in[cols[x]];
    }
}

void hflip(Image& img) {
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < S; ++y) std::reverse(img.p[c][y], img.p[c][y] + S);
}

std::array<float, 6> inverse_affine_matrix(float cx, float cy, float angle, float tx, float ty, float scale,
                                           float shear_x, float shear_y) {
  // Computed in double, as torchvision does in Python, then used in float32.
  const double rot = angle * M_PI / 180.0, sx = shear_x * M_PI / 180.0, sy = shear_y * M_PI / 180.0;
  const double a = std::cos(rot - sy) / std::cos(sy);
  const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
  const double c = std::sin(rot - sy) / std::cos(sy);
  const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
  double m[6] = {d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0};
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return {static_cast<float>(m[0]), static_cast<float>(m[1]), static_cast<float>(m[2]),
          static_cast<float>(m[3]), static_cast<float>(m[4]), static_cast<float>(m[5])};
}

void affine(const Image& src, Image& dst, const std::array<float, 6>& m, Interp interp, uint8_t fill) {
  // Output pixel (x, y) has centred coordinates (x - S/2 + 0.5, y - S/2 + 0.5); the matrix maps them to
  // centred input coordinates; grid_sample (align_corners=False) reads input pixel (u + S/2 - 0.5, ...).
  constexpr float half = S * 0.5f;
  const float f = static_cast<float>(fill);
  for (int y = 0; y < S; ++y) {
    const float yc = static_cast<float>(y) - half + 0.5f;
    for (int x = 0; x < S; ++x) {
      const float xc = static_cast<float>(x) - half + 0.5f;
      // Normalised grid coordinates, as torchvision computes them (theta rescaled by the half sizes).
      const float gx = xc * (m[0] / half) + yc * (m[1] / half) + m[2] / half;
      const float gy = xc * (m[3] / half) + yc * (m[4] / half) + m[5] / half;
      const float px = ((gx + 1.0f) * S - 1.0f) * 0.5f;
      const float py = ((gy + 1.0f) * S - 1.0f) * 0.5f;
      if (interp == Interp::Nearest) {
        const int ix = static_cast<int>(std::nearbyint(px)), iy = static_cast<int>(std::nearbyint(py));
        const bool in = ix >= 0 && ix < S && iy >= 0 && iy < S;
        for (int c = 0; c < 3; ++c) dst.p[c][y][x] = in ? src.p[c][iy][ix] : fill;
        continue;
      }
      const float fx0 = std::floor(px), fy0 = std::floor(py);
      const int x0 = static_cast<int>(fx0), y0 = static_cast<int>(fy0);
      const float wx1 = px - fx0, wy1 = py - fy0, wx0 = 1.0f - wx1, wy0 = 1.0f - wy1;
      const bool vx0 = x0 >= 0 && x0 < S, vx1 = x0 + 1 >= 0 && x0 + 1 < S;
      const bool vy0 = y0 >= 0 && y0 < S, vy1 = y0 + 1 >= 0 && y0 + 1 < S;
      const float w00 = (vx0 && vy0) ? wx0 * wy0 : 0.0f, w01 = (vx1 && vy0) ? wx1 * wy0 : 0.0f;
      const float w10 = (vx0 && vy1) ? wx0 * wy1 : 0.0f, w11 = (vx1 && vy1) ? wx1 * wy1 : 0.0f;
      const float mask = w00 + w01 + w10 + w11;  // grid_sample of the all-ones mask channel
      for (int c = 0; c < 3; ++c) {
        float v = 0.0f;
        if (w00 != 0.0f) v += w00 * src.p[c][y0][x0];
        if (w01 != 0.0f) v += w01 * src.p[c][y0][x0 + 1];
        if (w10 != 0.0f) v += w10 * src.p[c][y0 + 1][x0];
        if (w11 != 0.0f) v += w11 * src.p[c][y0 + 1][x0 + 1];
        dst.p[c][y][x] = round_u8(v * mask + (1.0f - mask) * f);
      }
    }
  }
}

void affine(const Image& src, Image& dst, float angle, float tx, float ty, float scale, float shear_x, float shear_y,
            Interp interp, uint8_t fill) {
  affine(src, dst, inverse_affine_matrix(0.0f, 0.0f, angle, tx, ty, scale, shear_x, shear_y), interp, fill);
}

void rotate(const Image& src, Image& dst, float angle, Interp interp, uint8_t fill) {
  affine(src, dst, inverse_affine_matrix(0.0f, 0.0f, -angle, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f), interp, fill);
}

void shear_x(const Image& src, Image& dst, float degrees, Interp interp, uint8_t fill) {
  affine(src, dst, inverse_affine_matrix(-S * 0.5f, -S * 0.5f, 0.0f, 0.0f, 0.0f, 1.0f, degrees, 0.0f), interp, fill);
}

void shear_y(const Image& src, Image& dst, float degrees, Interp interp, uint8_t fill) {
  affine(src, dst, inverse_affine_matrix(-S * 0.5f, -S * 0.5f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f, degrees), interp, fill);
}

void adjust_brightness(Image& img, double factor) {
  const float ratio = static_cast<float>(factor), one_minus = static_cast<float>(1.0 - factor);
  for (auto& plane : img.p)
    for (auto& row : plane)
      for (auto& v : row) v = blend(ratio, one_minus, v, 0.0f);
}

void adjust_contrast(Image& img, double factor) {
  double sum = 0;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) sum += gray(img.p[0][y][x], img.p[1][y][x], img.p[2][y][x]);
  const float mean = static_cast<float>(sum / (S * S));
  const float ratio = static_cast<float>(factor), one_minus = static_cast<float>(1.0 - factor);
  for (auto& plane : img.p)
    for (auto& row : plane)
      for (auto& v : row) v = blend(ratio, one_minus, v, mean);
}

void adjust_saturation(Image& img, double factor) {
  const float ratio = static_cast<float>(factor), one_minus = static_cast<float>(1.0 - factor);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const float g = gray(img.p[0][y][x], img.p[1][y][x], img.p[2][y][x]);
      for (int c = 0; c < 3; ++c) img.p[c][y][x] = blend(ratio, one_minus, img.p[c][y][x], g);
    }
}

void adjust_hue(Image& img, float hue_factor) {
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const float r = img.p[0][y][x] / 255.0f, g = img.p[1][y][x] / 255.0f, b = img.p[2][y][x] / 255.0f;
      // _rgb2hsv
      const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
      const bool eqc = maxc == minc;
      const float cr = maxc - minc;
      const float s = cr / (eqc ? 1.0f : maxc);
      const float div = eqc ? 1.0f : cr;
      const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
      float h;
      if (maxc == r) h = bc - gc;
      else if (maxc == g) h = 2.0f + rc - bc;
      else h = 4.0f + gc - rc;
      h = std::fmod(h / 6.0f + 1.0f, 1.0f);
      // (h + hue_factor) % 1.0 with Python's sign convention
      h = h + hue_factor;
      h = h - std::floor(h);
      if (h >= 1.0f) h -= 1.0f;
      // _hsv2rgb
      const float v = maxc;
      const float fi = std::floor(h * 6.0f);
      const float f = h * 6.0f - fi;
      int i = static_cast<int>(fi) % 6;
      if (i < 0) i += 6;
      const float p = std::clamp(v * (1.0f - s), 0.0f, 1.0f);
      const float q = std::clamp(v * (1.0f - s * f), 0.0f, 1.0f);
      const float t = std::clamp(v * (1.0f - s * (1.0f - f)), 0.0f, 1.0f);
      float o[3];
      switch (i) {
        case 0: o[0] = v, o[1] = t, o[2] = p; break;
        case 1: o[0] = q, o[1] = v, o[2] = p; break;
        case 2: o[0] = p, o[1] = v, o[2] = t; break;
        case 3: o[0] = p, o[1] = q, o[2] = v; break;
        case 4: o[0] = t, o[1] = p, o[2] = v; break;
        default: o[0] = v, o[1] = p, o[2] = q; break;
      }
      for (int c = 0; c < 3; ++c) img.p[c][y][x] = static_cast<uint8_t>(o[c] * 255.0f);
    }
}

void adjust_sharpness(Image& img, double factor) {
  // Blurred "degenerate" image: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 on the interior, rounded; the
  // border keeps the original pixels. Then blended with the original.
  const float w = 1.0f / 13.0f, wc = 5.0f / 13.0f;
  Image deg = img;
  for (int c = 0; c < 3; ++c)
    for (int y = 1; y < S - 1; ++y)
      for (int x = 1; x < S - 1; ++x) {
        float acc = 0.0f;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx)
            acc += (dy == 0 && dx == 0 ? wc : w) * static_cast<float>(img.p[c][y + dy][x + dx]);
        deg.p[c][y][x] = round_u8(acc);
      }
  const float ratio = static_cast<float>(factor), one_minus = static_cast<float>(1.0 - factor);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) img.p[c][y][x] = blend(ratio, one_minus, img.p[c][y][x], deg.p[c][y][x]);
}

void posterize(Image& img, int bits) {
  const uint8_t mask = static_cast<uint8_t>(~((1u << (8 - bits)) - 1u));
  for (auto& plane : img.p)
    for (auto& row : plane)
      for (auto& v : row) v &= mask;
}

void solarize(Image& img, float threshold) {
  for (auto& plane : img.p)
    for (auto& row : plane)
      for (auto& v : row)
        if (static_cast<float>(v) >= threshold) v = static_cast<uint8_t>(255 - v);
}

void autocontrast(Image& img) {
  for (auto& plane : img.p) {
    uint8_t lo = 255, hi = 0;
    for (auto& row : plane)
      for (auto v : row) lo = std::min(lo, v), hi = std::max(hi, v);
    if (lo == hi) continue;  // scale would be infinite: torchvision leaves the channel unchanged
    const float scale = 255.0f / static_cast<float>(hi - lo), minimum = lo;
    for (auto& row : plane)
      for (auto& v : row) v = trunc_u8((static_cast<float>(v) - minimum) * scale);
  }
}

void equalize(Image& img) {
  for (auto& plane : img.p) {
    int64_t hist[256] = {0};
    for (auto& row : plane)
      for (auto v : row) ++hist[v];
    // step = (sum of the non-zero bins but the last) // 255
    int last = 255;
    while (last > 0 && hist[last] == 0) --last;
    int64_t total = 0;
    for (int k = 0; k < last; ++k) total += hist[k];
    const int64_t step = total / 255;
    if (step == 0) continue;
    uint8_t lut[256];
    int64_t cum = 0;
    for (int k = 0; k < 256; ++k) {
      lut[k] = static_cast<uint8_t>(std::min<int64_t>(255, (cum + step / 2) / step));  // shifted by one bin
      cum += hist[k];
    }
    for (auto& row : plane)
      for (auto& v : row) v = lut[v];
  }
}

void invert(Image& img) {
  for (auto& plane : img.p)
    for (auto& row : plane)
      for (auto& v : row) v = static_cast<uint8_t>(255 - v);
}

void erase(Image& img, int top, int left, int h, int w, uint8_t value) {
  const int y0 = std::clamp(top, 0, S), y1 = std::clamp(top + h, 0, S);
  const int x0 = std::clamp(left, 0, S), x1 = std::clamp(left + w, 0, S);
  for (auto& plane : img.p)
    for (int y = y0; y < y1; ++y) std::memset(plane[y] + x0, value, static_cast<size_t>(std::max(0, x1 - x0)));
}

}  // namespace cifar::data::ops
