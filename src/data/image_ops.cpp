#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace cifar::data::ops {

namespace {
inline uint8_t trunc_u8(float v) { return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v))); }
// torch.round (half to even) for 0 <= v < 2^23 without a libm call: adding 2^23 rounds to an integer in
// the default rounding mode (to nearest, ties to even).
// (Without -ffast-math, which this project never uses, the compiler may not fold (v + 2^23) - 2^23 into v.)
inline float round_even(float v) { return (v + 8388608.0f) - 8388608.0f; }
inline uint8_t round_u8(float v) { return static_cast<uint8_t>(round_even(std::min(255.0f, std::max(0.0f, v)))); }
// floor for v >= -2.
inline int floor_small(float v) { return static_cast<int>(v + 2.0f) - 2; }

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
  const int shift = left - pad;  // output column x reads input column x + shift
  if (mode == PadMode::Constant) {
    // Rows: a copy of the valid span and the fill around it.
    const int x0 = std::clamp(-shift, 0, S), x1 = std::clamp(S - shift, 0, S);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < S; ++y) {
        uint8_t* out = dst.p[c][y];
        const int sy = top + y - pad;
        if (sy < 0 || sy >= S || x1 <= x0) {
          std::memset(out, fill, S);
          continue;
        }
        std::memset(out, fill, static_cast<size_t>(x0));
        std::memcpy(out + x0, src.p[c][sy] + x0 + shift, static_cast<size_t>(x1 - x0));
        std::memset(out + x1, fill, static_cast<size_t>(S - x1));
      }
    return;
  }
  int rows[S], cols[S];
  for (int k = 0; k < S; ++k) {
    rows[k] = pad_index(top + k - pad, mode);
    cols[k] = pad_index(left + k - pad, mode);
  }
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < S; ++y) {
      uint8_t* out = dst.p[c][y];
      const uint8_t* in = src.p[c][rows[y]];
      for (int x = 0; x < S; ++x) out[x] = in[cols[x]];
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
  // Normalised grid coordinates, as torchvision computes them (theta rescaled by the half sizes).
  const float ax = m[0] / half, bx = m[1] / half, cx = m[2] / half;
  const float ay = m[3] / half, by = m[4] / half, cy = m[5] / half;
  const float f = static_cast<float>(fill);
  if (interp == Interp::Nearest) {
    for (int y = 0; y < S; ++y) {
      const float yc = static_cast<float>(y) - half + 0.5f;
      for (int x = 0; x < S; ++x) {
        const float xc = static_cast<float>(x) - half + 0.5f;
        const float px = ((xc * ax + yc * bx + cx + 1.0f) * S - 1.0f) * 0.5f;
        const float py = ((xc * ay + yc * by + cy + 1.0f) * S - 1.0f) * 0.5f;
        const bool in = px > -0.5f && px < S - 0.5f && py > -0.5f && py < S - 0.5f;
        // Ties to even, as grid_sample's nearbyint; for px in (-0.5, 0) the result truncates to 0.
        const int ix = in ? static_cast<int>(round_even(px)) : 0;
        const int iy = in ? static_cast<int>(round_even(py)) : 0;
        const bool ok = in && ix >= 0 && ix < S && iy >= 0 && iy < S;
        for (int c = 0; c < 3; ++c) dst.p[c][y][x] = ok ? src.p[c][iy][ix] : fill;
      }
    }
    return;
  }
  // Bilinear: the input as RGBM pixels (M = the all-ones mask channel torchvision appends) with a one-pixel
  // zero border, so every tap is one 4-float vector read; coordinates are clamped into the border, where
  // all four taps read zero, as out-of-range taps do in grid_sample.
  constexpr int P = S + 2;
  typedef float v4 __attribute__((vector_size(16)));
  alignas(16) v4 px4[P][P];
  std::memset(px4, 0, sizeof px4);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x)
      px4[y + 1][x + 1] = v4{static_cast<float>(src.p[0][y][x]), static_cast<float>(src.p[1][y][x]),
                             static_cast<float>(src.p[2][y][x]), 1.0f};
  // Three passes, the first and last vectorised: coordinates and weights, the gathers, the rounding.
  constexpr int N = S * S;
  alignas(16) float wx[N], wy[N], out[4][N];
  alignas(16) int offset[N];
  for (int y = 0; y < S; ++y) {
    const float yc = static_cast<float>(y) - half + 0.5f;
    for (int x = 0; x < S; ++x) {
      const float xc = static_cast<float>(x) - half + 0.5f;
      // Clamped without branches into the border ring, where all taps read zero.
      const float px = std::min(std::max(((xc * ax + yc * bx + cx + 1.0f) * S - 1.0f) * 0.5f, -1.0f), static_cast<float>(S));
      const float py = std::min(std::max(((xc * ay + yc * by + cy + 1.0f) * S - 1.0f) * 0.5f, -1.0f), static_cast<float>(S));
      const int fx = floor_small(px), fy = floor_small(py);
      const int x0 = fx < S - 1 ? fx : S - 1, y0 = fy < S - 1 ? fy : S - 1;
      wx[y * S + x] = px - static_cast<float>(x0);
      wy[y * S + x] = py - static_cast<float>(y0);
      offset[y * S + x] = (y0 + 1) * P + x0 + 1;
    }
  }
  const v4* base = &px4[0][0];
  for (int k = 0; k < N; ++k) {
    const float wx1 = wx[k], wy1 = wy[k], wx0 = 1.0f - wx1, wy0 = 1.0f - wy1;
    const v4* r0 = base + offset[k];
    const v4* r1 = r0 + P;
    // The same products and sum order as per channel: w00*a + w01*b + w10*c + w11*d.
    const v4 v = (wx0 * wy0) * r0[0] + (wx1 * wy0) * r0[1] + (wx0 * wy1) * r1[0] + (wx1 * wy1) * r1[1];
    out[0][k] = v[0], out[1][k] = v[1], out[2][k] = v[2], out[3][k] = v[3];
  }
  for (int c = 0; c < 3; ++c) {
    uint8_t* o = &dst.p[c][0][0];
    for (int k = 0; k < N; ++k) {
      const float mask = out[3][k];
      const float v = std::min(std::max(out[c][k] * mask + (1.0f - mask) * f, 0.0f), 255.0f);
      o[k] = static_cast<uint8_t>(static_cast<int>(round_even(v)));
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
  // Four pixels at a time with GCC/Clang vector types (SSE-sized, no branches); the arithmetic is torchvision's
  // (_rgb2hsv, the hue shift, _hsv2rgb) operation by operation, so results are identical.
  typedef float vf __attribute__((vector_size(16)));
  typedef int vi __attribute__((vector_size(16)));
  constexpr int N = S * S, L = 4;
  static const auto unit = [] {
    std::array<float, 256> u{};
    for (int k = 0; k < 256; ++k) u[static_cast<size_t>(k)] = static_cast<float>(k) / 255.0f;
    return u;
  }();
  uint8_t* R = &img.p[0][0][0];
  uint8_t* G = &img.p[1][0][0];
  uint8_t* B = &img.p[2][0][0];
  const vf zero = vf{} + 0.0f, one = zero + 1.0f;
  for (int k = 0; k < N; k += L) {
    vf r, g, b;
    for (int j = 0; j < L; ++j) r[j] = unit[R[k + j]], g[j] = unit[G[k + j]], b[j] = unit[B[k + j]];
    const vf maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    const vf minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    const vi eqc = maxc == minc;
    const vf cr = maxc - minc;
    const vf s = cr / (eqc ? one : maxc);
    const vf div = eqc ? one : cr;
    const vi is_r = maxc == r;
    const vi is_g = ~is_r & (maxc == g);
    // torchvision: bc - gc, (2 + rc) - bc or (4 + gc) - rc, with xc = (maxc - x) / div.
    const vf a = is_r ? b : (is_g ? r : g);
    const vf c = is_r ? g : (is_g ? b : r);
    const vf base = is_r ? zero : (is_g ? zero + 2.0f : zero + 4.0f);
    vf h = (base + (maxc - a) / div) - (maxc - c) / div;
    h = h / 6.0f + 1.0f;  // in (0.83, 1.84): fmod(., 1) is one subtraction
    h = h >= 1.0f ? h - 1.0f : h;
    h = h + hue_factor;  // then % 1.0 with Python's sign convention
    h = h < 0.0f ? h + 1.0f : (h >= 1.0f ? h - 1.0f : h);
    h = h >= 1.0f ? h - 1.0f : h;
    const vf v = maxc;
    const vf h6 = h * 6.0f;
    const vf fi = __builtin_convertvector(__builtin_convertvector(h6, vi), vf);  // h6 >= 0: floor
    const vf f = h6 - fi;
    const vf i = fi >= 6.0f ? fi - 6.0f : fi;  // i % 6
    auto clamp01 = [&](vf x) { return x < 0.0f ? zero : (x > 1.0f ? one : x); };
    const vf p = clamp01(v * (1.0f - s));
    const vf q = clamp01(v * (1.0f - s * f));
    const vf t = clamp01(v * (1.0f - s * (1.0f - f)));
    const vf o0 = ((i == 0.0f) | (i == 5.0f)) ? v : (i == 1.0f ? q : (i == 4.0f ? t : p));
    const vf o1 = ((i == 1.0f) | (i == 2.0f)) ? v : (i == 0.0f ? t : (i == 3.0f ? q : p));
    const vf o2 = ((i == 3.0f) | (i == 4.0f)) ? v : (i == 2.0f ? t : (i == 5.0f ? q : p));
    const vi q0 = __builtin_convertvector(o0 * 255.0f, vi), q1 = __builtin_convertvector(o1 * 255.0f, vi),
             q2 = __builtin_convertvector(o2 * 255.0f, vi);
    for (int j = 0; j < L; ++j)
      R[k + j] = static_cast<uint8_t>(q0[j]), G[k + j] = static_cast<uint8_t>(q1[j]), B[k + j] = static_cast<uint8_t>(q2[j]);
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
