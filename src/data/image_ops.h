// Functional image operations on one 32x32 RGB uint8 image (planar CHW, as stored in the data set), with
// the semantics of torchvision's tensor functional API (torchvision.transforms.functional on uint8
// tensors): the same formulas, float32 arithmetic, and the same rounding or truncation back to uint8.
// Every random choice is made by the caller (transforms.h); these functions are deterministic.
#pragma once
#include <array>
#include <cstdint>

namespace cifar::data::ops {

constexpr int S = 32;  // image side
struct Image {
  uint8_t p[3][S][S];
};

enum class Interp { Nearest, Bilinear };
enum class PadMode { Constant, Reflect, Edge, Symmetric };

// Crop of the image padded by `pad` on every side: output (y, x) = padded(top + y, left + x).
void pad_crop(const Image& src, Image& dst, int pad, PadMode mode, uint8_t fill, int top, int left);
void hflip(Image& img);

// torchvision's _get_inverse_affine_matrix: the matrix mapping output to input coordinates, both centred
// on the image centre (the tensor path's convention). Angles and shears in degrees.
std::array<float, 6> inverse_affine_matrix(float center_x, float center_y, float angle, float translate_x,
                                           float translate_y, float scale, float shear_x, float shear_y);
// Samples `src` through the inverse matrix (grid_sample, align_corners=False, zeros outside, then the
// fill value blended by the sampled mask), rounding to nearest as torchvision does for uint8.
void affine(const Image& src, Image& dst, const std::array<float, 6>& inverse, Interp interp, uint8_t fill);
// F.affine(img, angle, translate, scale, shear, interpolation, fill, center=None).
void affine(const Image& src, Image& dst, float angle, float tx, float ty, float scale, float shear_x, float shear_y,
            Interp interp, uint8_t fill);
// F.rotate(img, angle) (counter-clockwise degrees, about the centre, no expansion).
void rotate(const Image& src, Image& dst, float angle, Interp interp, uint8_t fill);
// The policies' ShearX/ShearY: F.affine with shear in degrees about the top-left corner (center=[0, 0]).
void shear_x(const Image& src, Image& dst, float degrees, Interp interp, uint8_t fill);
void shear_y(const Image& src, Image& dst, float degrees, Interp interp, uint8_t fill);

// Colour operations, in place. Blend factors are doubles, as torchvision's Python floats: `1 - factor` is
// formed in double precision before both weights become float32.
void adjust_brightness(Image& img, double factor);
void adjust_contrast(Image& img, double factor);
void adjust_saturation(Image& img, double factor);
void adjust_hue(Image& img, float hue_factor);  // in [-0.5, 0.5]
void adjust_sharpness(Image& img, double factor);
void posterize(Image& img, int bits);
void solarize(Image& img, float threshold);
void autocontrast(Image& img);
void equalize(Image& img);
void invert(Image& img);
// Sets rows [top, top+h) and columns [left, left+w) (clipped) to `value` in every channel (F.erase).
void erase(Image& img, int top, int left, int h, int w, uint8_t value);

}  // namespace cifar::data::ops
