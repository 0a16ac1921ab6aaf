#include "serve/codec.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "data/image_io.h"

namespace cifar::serve {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "image/png; q=1" -> "image/png"
std::string media_type(const std::string& content_type) {
  std::string t = lower(content_type.substr(0, content_type.find(';')));
  t.erase(0, t.find_first_not_of(" \t"));
  t.erase(t.find_last_not_of(" \t") + 1);
  return t;
}

void append_image(Images& out, const uint8_t* data, size_t size, const std::string& what, const DecodeOptions& o) {
  int64_t w = 0, h = 0;
  const bool known = data::peek_size(data, size, &w, &h) && w > 0 && h > 0;
  if (known && w * h > o.max_image_pixels)
    throw RequestError(413, "image_too_large",
                       what + ": the image is " + std::to_string(w) + "x" + std::to_string(h) + " pixels; the server " +
                           "decodes at most " + std::to_string(o.max_image_pixels) + " pixels per image (resize it first)");
  // A header this walk cannot read (libjpeg tolerates bytes between markers) counts as the largest image.
  const int64_t cost = known ? w * h : o.max_image_pixels;
  if (out.pixels_decoded + cost > o.max_request_pixels)
    throw RequestError(413, "too_many_pixels",
                       what + ": the request's images hold more than " + std::to_string(o.max_request_pixels) +
                           " pixels together; send fewer or smaller images per request");
  out.pixels_decoded += cost;
  data::DecodeLimits limits;
  limits.max_pixels = o.max_image_pixels;
  limits.jpeg_min_side = o.image_size;
  data::Image img;
  try {
    img = data::decode_image(data, size, what, limits);
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    const bool unsupported = msg.find("not supported") != std::string::npos;
    throw RequestError(unsupported ? 415 : 400, unsupported ? "unsupported_image_format" : "bad_image", msg);
  }
  const std::vector<uint8_t> sq = data::to_square(img, o.image_size);
  out.pixels.insert(out.pixels.end(), sq.begin(), sq.end());
  ++out.count;
}

void check_count(int64_t n, const DecodeOptions& o) {
  if (n > o.max_images)
    throw RequestError(413, "too_many_images",
                       "the request holds " + std::to_string(n) + " images; at most " + std::to_string(o.max_images) +
                           " per request");
}

// One JSON instance: a base64 string, {"b64": "..."}, or a nested S x S x 3 array of integers 0..255.
void append_instance(Images& out, const nlohmann::json& inst, size_t index, const DecodeOptions& o) {
  const std::string what = "instance " + std::to_string(index);
  if (inst.is_string() || (inst.is_object() && inst.contains("b64") && inst["b64"].is_string())) {
    const std::vector<uint8_t> bytes = base64_decode(inst.is_string() ? inst.get<std::string>() : inst["b64"].get<std::string>());
    append_image(out, bytes.data(), bytes.size(), what, o);
    return;
  }
  const int s = o.image_size;
  auto bad = [&](const std::string& why) {
    throw RequestError(400, "bad_instance",
                       what + ": " + why + " (an instance is a base64 PNG/JPEG string, {\"b64\": ...}, or a " +
                           std::to_string(s) + "x" + std::to_string(s) + "x3 array of integers 0-255)");
  };
  if (!inst.is_array() || static_cast<int>(inst.size()) != s) bad("not an image");
  const size_t base = out.pixels.size();
  out.pixels.resize(base + static_cast<size_t>(s) * s * 3);
  for (int y = 0; y < s; ++y) {
    const auto& row = inst[static_cast<size_t>(y)];
    if (!row.is_array() || static_cast<int>(row.size()) != s) bad("row " + std::to_string(y) + " is not " + std::to_string(s) + " pixels");
    for (int x = 0; x < s; ++x) {
      const auto& px = row[static_cast<size_t>(x)];
      if (!px.is_array() || px.size() != 3) bad("pixel (" + std::to_string(y) + ", " + std::to_string(x) + ") is not 3 values");
      for (int c = 0; c < 3; ++c) {
        const auto& v = px[static_cast<size_t>(c)];
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 255)
          bad("value at (" + std::to_string(y) + ", " + std::to_string(x) + ", " + std::to_string(c) +
              ") is not an integer 0-255");
        out.pixels[base + (static_cast<size_t>(y) * s + x) * 3 + c] = static_cast<uint8_t>(v.get<int64_t>());
      }
    }
  }
  ++out.count;
}

// Counts what a JSON body holds without building it, and stops at the first value over a budget.
struct JsonBudget : nlohmann::json::json_sax_t {
  int64_t max_values, max_objects, max_depth;
  int64_t values = 0, objects = 0, depth = 0;
  std::string over;  // what went over, if anything
  bool too_many = false;  // over the value budget (413), not a malformed structure (400)
  JsonBudget(int64_t v, int64_t o, int64_t d) : max_values(v), max_objects(o), max_depth(d) {}
  bool value() {
    if (++values > max_values) {
      over = "more than " + std::to_string(max_values) + " JSON values";
      too_many = true;
    }
    return over.empty();
  }
  bool open(bool object) {
    if (object && ++objects > max_objects) over = "more than " + std::to_string(max_objects) + " JSON objects";
    if (++depth > max_depth) over = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    return value();
  }
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(true); }
  bool key(string_t&) override { return true; }
  bool end_object() override {
    --depth;
    return true;
  }
  bool start_array(std::size_t) override { return open(false); }
  bool end_array() override {
    --depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    throw RequestError(400, "bad_json", std::string("the body is not valid JSON: ") + e.what());
  }
};

Images decode_json(const std::string& body, const DecodeOptions& o) {
  {
    // What the largest valid body needs: per image one value for the instance, S rows, S*S pixels and
    // 3*S*S numbers (or a string, or an object and a string), plus the top-level object and "top_k".
    const int64_t s = o.image_size;
    const int64_t need = o.max_images * (1 + s + s * s + 3 * s * s) + 8;
    JsonBudget budget(o.max_json_elements > 0 ? o.max_json_elements : need, o.max_images + 1, 5);
    nlohmann::json::sax_parse(body, &budget);
    if (budget.too_many)
      throw RequestError(413, "json_too_large",
                         "the JSON body holds " + budget.over + "; a request is {\"instances\": [...]} with at most " +
                             std::to_string(o.max_images) + " images");
    if (!budget.over.empty())
      throw RequestError(400, "bad_json", "the body holds " + budget.over + "; expected {\"instances\": [...]} " +
                                              "with images as base64 strings, {\"b64\": ...} or SxSx3 arrays");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw RequestError(400, "bad_json", std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("instances") || !j["instances"].is_array())
    throw RequestError(400, "bad_json", "expected a JSON object {\"instances\": [...]} (optional \"top_k\")");
  const auto& inst = j["instances"];
  if (inst.empty()) throw RequestError(400, "no_images", "\"instances\" is empty");
  check_count(static_cast<int64_t>(inst.size()), o);
  Images out;
  if (j.contains("top_k")) {
    if (!j["top_k"].is_number_integer()) throw RequestError(400, "bad_top_k", "\"top_k\" must be an integer");
    const int64_t k = j["top_k"].get<int64_t>();
    if (k < 1 || k > 1000) throw RequestError(400, "bad_top_k", "\"top_k\" must be between 1 and the number of classes");
    out.top_k = static_cast<int>(k);
  }
  for (size_t i = 0; i < inst.size(); ++i) append_instance(out, inst[i], i, o);
  return out;
}

}  // namespace

std::vector<uint8_t> base64_decode(const std::string& text) {
  static const auto table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(a[i])] = static_cast<int8_t>(i);
    t['-'] = 62;  // URL-safe alphabet too
    t['_'] = 63;
    return t;
  }();
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char ch : text) {
    if (ch == '=') {
      ++pad;
      continue;
    }
    if (ch == '\n' || ch == '\r' || ch == ' ') continue;
    if (pad) throw RequestError(400, "bad_base64", "base64: data after '=' padding");
    const int8_t v = table[static_cast<uint8_t>(ch)];
    if (v < 0) throw RequestError(400, "bad_base64", std::string("base64: invalid character '") + ch + "'");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  if (bits >= 6 || pad > 2) throw RequestError(400, "bad_base64", "base64: truncated input");
  return out;
}

std::string base64_encode(const uint8_t* data, size_t size) { return hash::base64(data, size); }

Images decode_npy(const std::string& body, const DecodeOptions& o) {
  auto bad = [](const std::string& why) { throw RequestError(400, "bad_npy", "application/x-npy: " + why); };
  if (body.size() < 10 || body.compare(0, 6, "\x93NUMPY") != 0) bad("missing the \\x93NUMPY magic");
  const int major = static_cast<uint8_t>(body[6]);
  size_t hlen = 0, start = 0;
  if (major == 1) {
    hlen = static_cast<uint8_t>(body[8]) | (static_cast<size_t>(static_cast<uint8_t>(body[9])) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (body.size() < 12) bad("truncated header");
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<uint8_t>(body[8 + i])) << (8 * i);
    start = 12;
  } else {
    bad("unsupported format version " + std::to_string(major));
  }
  if (hlen > 65536 || start + hlen > body.size()) bad("truncated header");
  const std::string header = body.substr(start, hlen);
  // The header is a Python dict literal: {'descr': '|u1', 'fortran_order': False, 'shape': (32, 32, 3), }
  auto value_of = [&](const std::string& key) -> std::string {
    const size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) bad("header has no '" + key + "'");
    size_t v = header.find(':', k);
    if (v == std::string::npos) bad("malformed header");
    ++v;
    while (v < header.size() && header[v] == ' ') ++v;
    if (v < header.size() && header[v] == '(') return header.substr(v, header.find(')', v) - v + 1);
    if (v < header.size() && header[v] == '\'') return header.substr(v + 1, header.find('\'', v + 1) - v - 1);
    return header.substr(v, header.find_first_of(",}", v) - v);
  };
  const std::string descr = value_of("descr");
  if (descr != "|u1" && descr != "<u1" && descr != "u1")
    throw RequestError(415, "unsupported_dtype", "application/x-npy: dtype '" + descr + "' is not supported; send uint8 (|u1)");
  if (value_of("fortran_order").find("True") != std::string::npos) bad("Fortran order is not supported; send C order");
  std::string shape = value_of("shape");
  std::vector<int64_t> dims;
  for (size_t i = 0; i < shape.size();) {
    if (std::isdigit(static_cast<unsigned char>(shape[i]))) {
      size_t j = i;
      int64_t v = 0;
      while (j < shape.size() && std::isdigit(static_cast<unsigned char>(shape[j]))) {
        v = v * 10 + (shape[j] - '0');
        if (v > (int64_t{1} << 40)) bad("dimension too large");
        ++j;
      }
      dims.push_back(v);
      i = j;
    } else {
      ++i;
    }
  }
  const int64_t s = o.image_size;
  int64_t n = 0;
  if (dims.size() == 3 && dims[0] == s && dims[1] == s && dims[2] == 3) n = 1;
  else if (dims.size() == 4 && dims[1] == s && dims[2] == s && dims[3] == 3) n = dims[0];
  else bad("shape " + shape + " is not (" + std::to_string(s) + ", " + std::to_string(s) + ", 3) or (N, " +
           std::to_string(s) + ", " + std::to_string(s) + ", 3)");
  if (n == 0) throw RequestError(400, "no_images", "application/x-npy: the array holds no images");
  check_count(n, o);
  const size_t need = static_cast<size_t>(n * s * s * 3);
  const size_t data = start + hlen;
  if (body.size() - data != need)
    bad("the data holds " + std::to_string(body.size() - data) + " bytes, the shape needs " + std::to_string(need));
  Images out;
  out.count = n;
  out.pixels.assign(body.begin() + static_cast<std::ptrdiff_t>(data), body.end());
  return out;
}

std::string encode_npy_f32(const float* data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(rows * cols) * sizeof(float));
  return out;
}

Images decode_request(const std::string& content_type, const std::string& body, const DecodeOptions& o) {
  if (body.empty()) throw RequestError(400, "empty_body", "the request body is empty; send an image, .npy or JSON");
  const std::string t = media_type(content_type);
  if (t == "image/png" || t == "image/jpeg" || t == "image/jpg" || t == "application/x-image" ||
      t == "application/octet-stream") {
    Images out;
    append_image(out, reinterpret_cast<const uint8_t*>(body.data()), body.size(), "request body", o);
    return out;
  }
  if (t == "application/x-npy") return decode_npy(body, o);
  if (t == "application/json") return decode_json(body, o);
  throw RequestError(415, "unsupported_content_type",
                     "Content-Type '" + content_type +
                         "' is not supported; use image/png, image/jpeg, application/x-image, application/x-npy or "
                         "application/json");
}

}  // namespace cifar::serve
