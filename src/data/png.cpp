#include "data/png.h"

#include <png.h>

#include "common/error.h"
#include "common/fsutil.h"

namespace cifar::data {

namespace {
void append(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), n);
}
void no_flush(png_structp) {}
}  // namespace

std::string encode_png(int width, int height, const std::vector<uint8_t>& rgb, const std::string& what) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<size_t>(width) * height * 3)
    fail("PNG '{}': {} bytes do not make a {}x{} RGB image", what, rgb.size(), width, height);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) fail("libpng could not be initialised");
  std::string bytes;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail("libpng failed to encode '{}'", what);
  }
  png_set_write_fn(png, &bytes, append, no_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(rgb.data() + static_cast<size_t>(y) * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return bytes;
}

std::pair<int, int> png_size(const std::string& png) {
  static const char sig[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  if (png.size() < 24 || png.compare(0, 8, std::string(sig, 8)) != 0 || png.compare(12, 4, "IHDR") != 0)
    fail("not a PNG image ({} bytes without the PNG signature and IHDR chunk)", png.size());
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(png[at + i]);
    return static_cast<int>(v);
  };
  return {be32(16), be32(20)};
}

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  fs::write_atomic(path, encode_png(width, height, rgb, path));
}

}  // namespace cifar::data
