// Request and response codecs of the inference server: request bodies (PNG/JPEG/sniffed images, NumPy .npy
// uint8 arrays, JSON {"instances": [...]} with base64 images or nested uint8 arrays) become size x size x 3
// uint8 images; probabilities become JSON top-k answers or a float32 .npy matrix. Every malformed input
// throws RequestError with the HTTP status (400, 413, 415). Costs are bounded before any work: image sizes
// come from the headers (JPEGs are decoded with DCT scaling to the smallest size >= the model's input), and a
// JSON body is first scanned by a SAX pass that counts values, objects and depth, before any tree is built.
// Messages throw RequestError with the HTTP status (400, 413, 415) and a message saying what is wrong.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cifar::serve {

class RequestError : public std::runtime_error {
 public:
  RequestError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string code_;
};

struct Images {
  int64_t count = 0;
  std::vector<uint8_t> pixels;   // count x size x size x 3 (HWC, RGB)
  std::optional<int> top_k;      // from a JSON body
  int64_t pixels_decoded = 0;    // source pixels of the encoded images (the request's decoding budget)
};

struct DecodeOptions {
  int image_size = 32;
  int64_t max_images = 256;               // per request
  int64_t max_image_pixels = 4'000'000;   // per image, from its header, before decoding
  int64_t max_request_pixels = 32'000'000;  // all images of the request together
  int64_t max_json_elements = 0;          // JSON values per body; 0 = what max_images nested arrays need
};

// `content_type` may carry parameters ("application/json; charset=utf-8"); matching ignores case.
Images decode_request(const std::string& content_type, const std::string& body, const DecodeOptions& opts);

std::vector<uint8_t> base64_decode(const std::string& text);  // throws RequestError(400) on bad input
std::string base64_encode(const uint8_t* data, size_t size);

// NumPy .npy (format 1.0/2.0/3.0): a uint8 array (|u1) of shape (S, S, 3) or (N, S, S, 3), C order.
Images decode_npy(const std::string& body, const DecodeOptions& opts);
// A float32 little-endian .npy of shape (rows, cols).
std::string encode_npy_f32(const float* data, int64_t rows, int64_t cols);

}  // namespace cifar::serve
