// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}),
// then the raw little-endian tensor bytes, contiguous and in header order. Fast to write and read (no
// pickling), safe to parse (no code), and read by Hugging Face tools. Used for checkpoints and artifacts.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace cifar::model::safetensors {

using Tensors = std::vector<std::pair<std::string, at::Tensor>>;
using Metadata = std::map<std::string, std::string>;

// Writes atomically (temporary file, fsync, rename). Tensors may live on any device and in any memory
// format; they are written contiguous. Returns the SHA-256 of the file's bytes.
std::string write(const std::string& path, const Tensors& tensors, const Metadata& metadata = {});

struct File {
  Tensors tensors;  // CPU tensors in file order
  Metadata metadata;
};
// Parses a whole file held in memory; `name` is used in messages. Throws Error on anything malformed:
// short file, header size out of range, bad JSON, unknown dtype, shape/offset mismatch, holes or overlaps.
File parse(const uint8_t* data, size_t size, const std::string& name);
File read(const std::string& path);

}  // namespace cifar::model::safetensors
