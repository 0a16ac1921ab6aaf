#include "model/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"

namespace cifar::model::safetensors {

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

struct DType {
  const char* name;
  at::ScalarType type;
};
constexpr DType kTypes[] = {{"F32", at::kFloat}, {"F64", at::kDouble}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
                            {"I64", at::kLong},  {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},
                            {"U8", at::kByte},   {"BOOL", at::kBool}};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kTypes)
    if (d.type == t) return d.name;
  fail("safetensors: unsupported tensor type {}", c10::toString(t));
}
}  // namespace

std::string write(const std::string& path, const Tensors& tensors, const Metadata& metadata) {
  std::vector<at::Tensor> cpu;
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("safetensors: a tensor may not be called __metadata__");
    at::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section 8-byte aligned, as the reference writer does
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  hash::Sha256 sha;
  fs::AtomicWriter out(path);
  auto put = [&](const void* p, size_t n) {
    out.write(p, n);
    sha.update(p, n);
  };
  put(len, 8);
  put(text.data(), text.size());
  for (const auto& c : cpu) put(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  out.commit();
  return sha.hex();
}

constexpr size_t kMaxDims = 8;

File parse(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 8) fail("'{}' is not a safetensors file: {} bytes, shorter than the 8-byte header length", name, size);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(data[i]) << (8 * i);
  if (n > kMaxHeader || n > size - 8)
    fail("'{}' is not a valid safetensors file: header length {} exceeds the file ({} bytes; truncated?)", name, n, size);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': the safetensors header is not valid JSON: {}", name, e.what());
  }
  if (!header.is_object()) fail("'{}': the safetensors header is not a JSON object", name);
  const uint8_t* base = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  File f;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  std::vector<uint64_t> starts;  // per tensor, in header (name) order
  try {
    for (const auto& [key, v] : header.items()) {
      if (key == "__metadata__") {
        for (const auto& [mk, mv] : v.items()) f.metadata[mk] = mv.get<std::string>();
        continue;
      }
      const std::string dt = v.at("dtype").get<std::string>();
      const DType* type = nullptr;
      for (const auto& d : kTypes)
        if (dt == d.name) type = &d;
      if (!type) fail("'{}': tensor '{}' has unsupported dtype '{}'", name, key, dt);
      std::vector<int64_t> shape = v.at("shape").get<std::vector<int64_t>>();
      const auto off = v.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size)
        fail("'{}': tensor '{}' has data offsets outside the file's {} data bytes (truncated?)", name, key, data_size);
      if (shape.size() > kMaxDims)
        fail("'{}': tensor '{}' has {} dimensions; at most {} are accepted", name, key, shape.size(), kMaxDims);
      // The byte count of the shape, refused on overflow: a product that wraps could match tiny offsets.
      const bool empty = std::find(shape.begin(), shape.end(), int64_t{0}) != shape.end();
      uint64_t want = empty ? 0 : c10::elementSize(type->type);
      for (int64_t d : shape) {
        if (d < 0) fail("'{}': tensor '{}' has a negative dimension", name, key);
        if (__builtin_mul_overflow(want, static_cast<uint64_t>(d), &want))
          fail("'{}': tensor '{}' of shape [{}] is larger than the file's {} data bytes (its size overflows)", name, key,
               fmt::format("{}", fmt::join(shape, ", ")), data_size);
      }
      if (off[1] - off[0] != want)
        fail("'{}': tensor '{}' of shape [{}] and dtype {} needs {} bytes, its offsets span {}", name, key,
             fmt::format("{}", fmt::join(shape, ", ")), dt, want, off[1] - off[0]);
      at::Tensor t = torch::empty(shape, torch::dtype(type->type));
      if (want) std::memcpy(t.data_ptr(), base + off[0], want);
      spans.push_back({off[0], off[1]});
      starts.push_back(off[0]);
      f.tensors.emplace_back(key, t);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': malformed safetensors header entry: {}", name, e.what());
  }
  // The data section must be covered exactly: no holes, no overlaps.
  std::sort(spans.begin(), spans.end());
  uint64_t pos = 0;
  for (const auto& [b, e] : spans) {
    if (b != pos) fail("'{}': the safetensors data section has a hole or overlap at byte {}", name, b);
    pos = e;
  }
  if (pos != data_size) fail("'{}': {} bytes after the last tensor (corrupt file)", name, data_size - pos);
  // JSON objects come back sorted by name; put the tensors in file order.
  std::vector<size_t> order(f.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return starts[a] < starts[b]; });
  Tensors sorted;
  for (size_t i : order) sorted.push_back(std::move(f.tensors[i]));
  f.tensors = std::move(sorted);
  return f;
}

File read(const std::string& path) {
  if (!fs::exists(path)) fail("'{}' does not exist", path);
  const std::vector<uint8_t> bytes = fs::read_bytes(path);
  return parse(bytes.data(), bytes.size(), path);
}

}  // namespace cifar::model::safetensors
