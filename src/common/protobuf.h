// A minimal protocol-buffers wire-format writer for the two formats we emit by hand (ONNX models and
// TensorBoard event files): varints, 64-bit and 32-bit fixed fields, and length-delimited fields (strings,
// bytes, nested messages). Repeated scalar fields are written unpacked, which every parser accepts for both
// proto2 and proto3 schemas.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cifar::pb {

class Writer {
 public:
  // Field writers; `field` is the field number of the schema.
  Writer& varint(int field, uint64_t v) {
    tag(field, 0);
    raw_varint(v);
    return *this;
  }
  Writer& int64(int field, int64_t v) { return varint(field, static_cast<uint64_t>(v)); }  // int32/int64/enum
  Writer& f64(int field, double v) {
    tag(field, 1);
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    return *this;
  }
  Writer& f32(int field, float v) {
    tag(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    return *this;
  }
  Writer& bytes(int field, std::string_view v) {  // string, bytes or an encoded message
    tag(field, 2);
    raw_varint(v.size());
    out_.append(v.data(), v.size());
    return *this;
  }
  Writer& message(int field, const Writer& m) { return bytes(field, m.str()); }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void tag(int field, int wire) { raw_varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire)); }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

}  // namespace cifar::pb
