#include "data/image_io.h"

#include <png.h>
// jpeglib.h needs size_t and FILE declared first.
#include <cstdio>
#include <jerror.h>
#include <jpeglib.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "common/fsutil.h"

namespace cifar::data {

const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Webp: return "WebP";
    case ImageFormat::Tiff: return "TIFF";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

ImageFormat sniff_format(const uint8_t* d, size_t n) {
  auto starts = [&](const char* magic, size_t len, size_t at = 0) {
    return n >= at + len && std::memcmp(d + at, magic, len) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::Png;
  if (starts("\xff\xd8\xff", 3)) return ImageFormat::Jpeg;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::Gif;
  if (starts("BM", 2)) return ImageFormat::Bmp;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::Webp;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return ImageFormat::Tiff;
  return ImageFormat::Unknown;
}

namespace {

void check_size(int64_t w, int64_t h, const std::string& name, const DecodeLimits& limits) {
  if (w <= 0 || h <= 0) fail("{}: the image has no pixels ({}x{})", name, w, h);
  if (w > limits.max_side || h > limits.max_side || w * h > limits.max_pixels)
    fail("{}: the image is {}x{} pixels ({:.1f} megapixels); the limit is {} pixels a side and {:.0f} megapixels",
         name, w, h, static_cast<double>(w * h) / 1e6, limits.max_side, static_cast<double>(limits.max_pixels) / 1e6);
}

// ---- PNG --------------------------------------------------------------------------------------------
struct PngSource {
  const uint8_t* data;
  size_t size, pos;
  char message[200];
};

void png_read(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}
void png_on_error(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(s->message, sizeof s->message, "%s", msg);
  png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

// Decodes into `img` and `rows`, allocated by the caller: nothing with a destructor lives in this frame
// across setjmp, so a longjmp from libpng leaks nothing.
bool decode_png(PngSource* src, Image* img, std::vector<png_bytep>* rows, const DecodeLimits* limits, std::string* err) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, src, png_on_error, png_on_warning);
  if (!png) {
    *err = "libpng could not be initialised";
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    *err = src->message[0] ? src->message : "libpng could not be initialised";
    return false;
  }
  png_set_read_fn(png, src, png_read);
  png_set_user_limits(png, 1000000, 1000000);
  png_read_info(png, info);
  const int64_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w > limits->max_side || h > limits->max_side || w * h > limits->max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    img->width = static_cast<int>(std::min<int64_t>(w, INT32_MAX));
    img->height = static_cast<int>(std::min<int64_t>(h, INT32_MAX));
    return true;  // the caller reports the size
  }
  png_set_expand(png);  // palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3) png_error(png, "unexpected pixel layout after conversion");
  img->width = static_cast<int>(w);
  img->height = static_cast<int>(h);
  img->rgb.resize(static_cast<size_t>(w * h * 3));
  rows->resize(static_cast<size_t>(h));
  for (int64_t y = 0; y < h; ++y) (*rows)[static_cast<size_t>(y)] = img->rgb.data() + y * w * 3;
  png_read_image(png, rows->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// ---- JPEG -------------------------------------------------------------------------------------------
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};
void jpeg_on_error(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  (*c->err->format_message)(c, e->message);
  // An error after the whole input was read (libjpeg pads a short input with an end marker): truncation.
  if (c->is_decompressor) {
    auto* d = reinterpret_cast<j_decompress_ptr>(c);
    if (e->truncated || (d->src && d->src->bytes_in_buffer == 0)) {
      const std::string msg = std::string("the file ends early (truncated): ") + e->message;  // freed before longjmp
      std::memcpy(e->message, msg.c_str(), std::min(msg.size() + 1, sizeof e->message));
      e->message[sizeof e->message - 1] = '\0';
    }
  }
  std::longjmp(e->jump, 1);
}
void jpeg_on_message(j_common_ptr c, int level) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
  if (level < 0) c->err->num_warnings++;
}

// The number of scans (SOS markers) of a JPEG, walking the marker segments and skipping entropy-coded data.
int count_jpeg_scans(const uint8_t* d, size_t n) {
  size_t i = 2;
  int scans = 0;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) {
      ++i;
      continue;
    }
    const uint8_t m = d[i + 1];
    if (m == 0xFF) {
      ++i;
      continue;
    }
    if (m == 0xD9) break;  // EOI
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0xD8) {
      i += 2;
      continue;
    }
    const size_t len = (static_cast<size_t>(d[i + 2]) << 8) | d[i + 3];
    i += 2 + len;
    if (m == 0xDA) {
      ++scans;
      while (i + 1 < n && !(d[i] == 0xFF && d[i + 1] != 0x00 && !(d[i + 1] >= 0xD0 && d[i + 1] <= 0xD7))) ++i;
    }
  }
  return scans;
}

bool decode_jpeg(const uint8_t* data, size_t size, Image* img, const DecodeLimits* limits, std::string* err) {
  if (limits->max_jpeg_scans > 0) {
    const int scans = count_jpeg_scans(data, size);
    if (scans > limits->max_jpeg_scans) {
      *err = "it has " + std::to_string(scans) + " scans; at most " + std::to_string(limits->max_jpeg_scans) +
             " are accepted (a progressive JPEG has about 10)";
      return false;
    }
  }
  jpeg_decompress_struct cinfo;
  JpegError jerr;
  std::memset(&jerr, 0, sizeof jerr);
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_on_error;
  jerr.mgr.emit_message = jpeg_on_message;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    *err = jerr.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const int64_t w = cinfo.image_width, h = cinfo.image_height;
  if (w > limits->max_side || h > limits->max_side || w * h > limits->max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    img->width = static_cast<int>(w);
    img->height = static_cast<int>(h);
    return true;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    *err = "CMYK JPEG images are not supported (convert to RGB)";
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  if (limits->jpeg_min_side > 0) {
    // PIL's draft(): the largest of 1/8, 1/4, 1/2 that keeps both sides >= jpeg_min_side.
    const int64_t scale = std::min(w / limits->jpeg_min_side, h / limits->jpeg_min_side);
    cinfo.scale_num = 1;
    cinfo.scale_denom = scale >= 8 ? 8 : scale >= 4 ? 4 : scale >= 2 ? 2 : 1;
  }
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3) {
    jpeg_destroy_decompress(&cinfo);
    *err = "unexpected number of colour components";
    return false;
  }
  img->width = static_cast<int>(cinfo.output_width);
  img->height = static_cast<int>(cinfo.output_height);
  img->rgb.resize(static_cast<size_t>(img->width) * img->height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img->rgb.data() + static_cast<size_t>(cinfo.output_scanline) * img->width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (jerr.truncated) {
    *err = "the file ends early (truncated)";
    return false;
  }
  return true;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  if (size == 0) fail("{}: empty (0 bytes), not an image", name);
  if (size > limits.max_bytes)
    fail("{}: {} bytes is larger than the {} MiB limit for an encoded image", name, size, limits.max_bytes >> 20);
  const ImageFormat f = sniff_format(data, size);
  auto img = std::make_unique<Image>();
  img->format = f;
  std::string err;
  bool ok = false;
  switch (f) {
    case ImageFormat::Png: {
      auto src = std::make_unique<PngSource>(PngSource{data, size, 0, {0}});
      std::vector<png_bytep> rows;
      ok = decode_png(src.get(), img.get(), &rows, &limits, &err);
      break;
    }
    case ImageFormat::Jpeg: ok = decode_jpeg(data, size, img.get(), &limits, &err); break;
    case ImageFormat::Unknown:
      fail("{}: not a PNG or JPEG image (unrecognised content; the format is detected from the bytes, not the name)",
           name);
    default:
      fail("{}: {} images are not supported; use PNG or JPEG", name, format_name(f));
  }
  if (!ok) fail("{}: corrupt {} image: {}", name, format_name(f), err);
  check_size(img->width, img->height, name, limits);
  return std::move(*img);
}

bool peek_size(const uint8_t* d, size_t n, int64_t* width, int64_t* height) {
  switch (sniff_format(d, n)) {
    case ImageFormat::Png:  // IHDR is the first chunk: width and height at bytes 16 and 20
      if (n < 24) return false;
      *width = (int64_t{d[16]} << 24) | (d[17] << 16) | (d[18] << 8) | d[19];
      *height = (int64_t{d[20]} << 24) | (d[21] << 16) | (d[22] << 8) | d[23];
      return true;
    case ImageFormat::Jpeg: {
      size_t i = 2;
      while (i + 9 <= n) {
        if (d[i] != 0xFF) return false;
        const uint8_t m = d[i + 1];
        if (m == 0xFF) {
          ++i;
          continue;
        }
        // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
          *height = (d[i + 5] << 8) | d[i + 6];
          *width = (d[i + 7] << 8) | d[i + 8];
          return true;
        }
        if (m == 0xDA || m == 0xD9) return false;
        i += 2 + ((static_cast<size_t>(d[i + 2]) << 8) | d[i + 3]);
      }
      return false;
    }
    default: return false;
  }
}

Image read_image(const std::string& path, const DecodeLimits& limits) {
  if (!fs::exists(path)) fail("{}: no such file", path);
  const std::vector<uint8_t> bytes = fs::read_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

// ---- Resize (PIL's ImagingResample with the bilinear filter, 8-bit path) --------------------------------
namespace {
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output: first input index, count
  std::vector<int32_t> k;   // per output: ksize fixed-point weights
};

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

Coeffs precompute(int in_size, double in0, double in1, int out_size) {
  const double scale = (in1 - in0) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> kk(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      kk[static_cast<size_t>(x)] = triangle((x + xmin - center + 0.5) * ss);
      ww += kk[static_cast<size_t>(x)];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? kk[static_cast<size_t>(x)] / ww : kk[static_cast<size_t>(x)];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[static_cast<size_t>(xx) * 2] = xmin;
    c.bounds[static_cast<size_t>(xx) * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}
}  // namespace

Image resize_bilinear(const Image& src, int out_w, int out_h, double x0, double y0, double x1, double y1) {
  if (out_w <= 0 || out_h <= 0) fail("resize to {}x{}: the size must be positive", out_w, out_h);
  if (x0 < 0 || y0 < 0 || x1 > src.width || y1 > src.height || x1 <= x0 || y1 <= y0)
    fail("resize: box ({}, {}, {}, {}) is outside the {}x{} image", x0, y0, x1, y1, src.width, src.height);
  const bool need_h = out_w != src.width || x0 != 0 || x1 != src.width;
  const bool need_v = out_h != src.height || y0 != 0 || y1 != src.height;
  const Coeffs ch = precompute(src.width, x0, x1, out_w);
  Coeffs cv = precompute(src.height, y0, y1, out_h);
  // Rows the vertical pass reads; the horizontal pass only makes those.
  const int ybox_first = cv.bounds[0];
  const int ybox_last = cv.bounds[static_cast<size_t>(out_h) * 2 - 2] + cv.bounds[static_cast<size_t>(out_h) * 2 - 1];

  // `cur` is the image the next pass reads: the source itself until a pass has made a new one (no copy).
  const Image* cur = &src;
  Image h_out, v_out;
  int row0 = 0;
  if (need_h) {
    const int rows = need_v ? ybox_last - ybox_first : src.height;
    row0 = need_v ? ybox_first : 0;
    Image tmp;
    tmp.width = out_w;
    tmp.height = rows;
    tmp.rgb.resize(static_cast<size_t>(out_w) * rows * 3);
    for (int y = 0; y < rows; ++y) {
      const uint8_t* in = src.rgb.data() + static_cast<size_t>(y + row0) * src.width * 3;
      uint8_t* out = tmp.rgb.data() + static_cast<size_t>(y) * out_w * 3;
      for (int xx = 0; xx < out_w; ++xx) {
        const int xmin = ch.bounds[static_cast<size_t>(xx) * 2], xmax = ch.bounds[static_cast<size_t>(xx) * 2 + 1];
        const int32_t* k = ch.k.data() + static_cast<size_t>(xx) * ch.ksize;
        for (int c = 0; c < 3; ++c) {
          int32_t ss = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < xmax; ++x) ss += in[(x + xmin) * 3 + c] * k[x];
          out[xx * 3 + c] = clip8(ss);
        }
      }
    }
    h_out = std::move(tmp);
    cur = &h_out;
  }
  if (need_v) {
    if (need_h)
      for (int yy = 0; yy < out_h; ++yy) cv.bounds[static_cast<size_t>(yy) * 2] -= ybox_first;
    Image& out = v_out;
    out.width = cur->width;
    out.height = out_h;
    out.rgb.resize(static_cast<size_t>(cur->width) * out_h * 3);
    for (int yy = 0; yy < out_h; ++yy) {
      const int ymin = cv.bounds[static_cast<size_t>(yy) * 2], ymax = cv.bounds[static_cast<size_t>(yy) * 2 + 1];
      const int32_t* k = cv.k.data() + static_cast<size_t>(yy) * cv.ksize;
      uint8_t* o = out.rgb.data() + static_cast<size_t>(yy) * cur->width * 3;
      for (int xc = 0; xc < cur->width * 3; ++xc) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y) ss += cur->rgb[static_cast<size_t>(y + ymin) * cur->width * 3 + xc] * k[y];
        o[xc] = clip8(ss);
      }
    }
    cur = &v_out;
  }
  Image result = cur == &src ? src : std::move(cur == &v_out ? v_out : h_out);
  result.format = src.format;
  return result;
}

std::vector<uint8_t> to_square(const Image& src, int size) {
  const int side = std::min(src.width, src.height);
  const int left = (src.width - side) / 2, top = (src.height - side) / 2;
  return resize_bilinear(src, size, size, left, top, left + side, top + side).rgb;
}

// ---- JPEG encoding (tests, tools) -------------------------------------------------------------------
std::vector<uint8_t> encode_jpeg(const Image& img, int quality) {
  if (img.width <= 0 || img.height <= 0 || img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3)
    fail("encode_jpeg: {} bytes do not make a {}x{} RGB image", img.rgb.size(), img.width, img.height);
  jpeg_compress_struct cinfo;
  JpegError jerr;
  std::memset(&jerr, 0, sizeof jerr);
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_on_error;
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buf);
    fail("libjpeg failed to encode: {}", jerr.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buf, &len);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.rgb.data()) + static_cast<size_t>(cinfo.next_scanline) * img.width * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out(buf, buf + len);
  std::free(buf);
  return out;
}

}  // namespace cifar::data
