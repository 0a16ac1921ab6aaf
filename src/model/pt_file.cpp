#include "model/pt_file.h"

#include <torch/torch.h>
#include <zlib.h>


#include "common/error.h"
#include "common/fsutil.h"

namespace cifar::model {

namespace {

// ---- pickle, protocol 2 ------------------------------------------------------------------------------
class Pickle {
 public:
  std::string out;
  void op(char c) { out.push_back(c); }
  void global(const char* module, const char* name) {
    op('c');
    out += module;
    out += '\n';
    out += name;
    out += '\n';
  }
  void str(const std::string& s) {  // BINUNICODE
    op('X');
    le32(static_cast<uint32_t>(s.size()));
    out += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out.push_back(static_cast<char>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {  // LONG1: 8 bytes, little-endian two's complement
      op('\x8a');
      out.push_back(8);
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(static_cast<uint64_t>(v) >> (8 * i)));
    }
  }
  void int_tuple(c10::IntArrayRef v) {
    if (v.empty()) return op(')');
    op('(');
    for (int64_t x : v) integer(x);
    op('t');
  }

 private:
  void le32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
};

const char* storage_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "FloatStorage";
    case at::kDouble: return "DoubleStorage";
    case at::kHalf: return "HalfStorage";
    case at::kBFloat16: return "BFloat16Storage";
    case at::kLong: return "LongStorage";
    case at::kInt: return "IntStorage";
    case at::kShort: return "ShortStorage";
    case at::kChar: return "CharStorage";
    case at::kByte: return "ByteStorage";
    case at::kBool: return "BoolStorage";
    default: fail("cannot write a {} tensor to a PyTorch file", c10::toString(t));
  }
}

// ---- zip (STORED entries, no compression) ------------------------------------------------------------
struct Entry {
  std::string name;
  uint32_t crc = 0, size = 0, offset = 0;
};

class ZipWriter {
 public:
  explicit ZipWriter(fs::AtomicWriter& out) : out_(out) {}
  void add(const std::string& name, const void* data, size_t size) {
    if (size > 0xffffffffu || pos_ > 0xffffffffu) fail("PyTorch file: entry '{}' is too large for a plain zip", name);
    Entry e{name, static_cast<uint32_t>(crc32(0L, static_cast<const Bytef*>(data), static_cast<uInt>(size))),
            static_cast<uint32_t>(size), static_cast<uint32_t>(pos_)};
    // Pad through an extra field so the data starts on a 64-byte boundary, as torch.save does (mmap loading).
    const size_t header = 30 + name.size();
    size_t pad = (64 - (pos_ + header + 4) % 64) % 64;
    std::string h;
    u32(h, 0x04034b50);
    u16(h, 20);
    u16(h, 0);
    u16(h, 0);  // stored
    u16(h, 0);
    u16(h, 0x21);  // 1980-01-01
    u32(h, e.crc);
    u32(h, e.size);
    u32(h, e.size);
    u16(h, static_cast<uint16_t>(name.size()));
    u16(h, static_cast<uint16_t>(4 + pad));
    h += name;
    u16(h, 0x4246);  // "FB": padding
    u16(h, static_cast<uint16_t>(pad));
    h.append(pad, 'Z');
    write(h.data(), h.size());
    write(data, size);
    entries_.push_back(e);
  }
  void finish() {
    const size_t cd_start = pos_;
    std::string cd;
    for (const Entry& e : entries_) {
      u32(cd, 0x02014b50);
      u16(cd, 20);
      u16(cd, 20);
      u16(cd, 0);
      u16(cd, 0);
      u16(cd, 0);
      u16(cd, 0x21);
      u32(cd, e.crc);
      u32(cd, e.size);
      u32(cd, e.size);
      u16(cd, static_cast<uint16_t>(e.name.size()));
      u16(cd, 0);
      u16(cd, 0);
      u16(cd, 0);
      u16(cd, 0);
      u32(cd, 0);
      u32(cd, e.offset);
      cd += e.name;
    }
    const auto cd_size = static_cast<uint32_t>(cd.size());
    u32(cd, 0x06054b50);  // end of central directory
    u16(cd, 0);
    u16(cd, 0);
    u16(cd, static_cast<uint16_t>(entries_.size()));
    u16(cd, static_cast<uint16_t>(entries_.size()));
    u32(cd, cd_size);
    u32(cd, static_cast<uint32_t>(cd_start));
    u16(cd, 0);
    write(cd.data(), cd.size());
  }

 private:
  static void u16(std::string& s, uint16_t v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>(v >> 8));
  }
  static void u32(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  }
  void write(const void* p, size_t n) {
    out_.write(p, n);
    pos_ += n;
  }
  fs::AtomicWriter& out_;
  size_t pos_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace

void write_pt_state_dict(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<at::Tensor> cpu;
  Pickle p;
  p.op('\x80');
  p.op('\x02');
  p.op('}');  // a plain dict: LibTorch's unpickler reads collections.OrderedDict as None
  p.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor c = tensors[i].second.detach().to(torch::kCPU).contiguous();
    p.str(tensors[i].first);
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');  // persistent id: ('storage', <storage type>, key, location, numel)
    p.str("storage");
    p.global("torch", storage_name(c.scalar_type()));
    p.str(std::to_string(i));
    p.str("cpu");
    p.integer(c.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.int_tuple(c.sizes());
    p.int_tuple(c.strides());
    p.op('\x89');  // False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.op('t');
    p.op('R');
    cpu.push_back(c);
  }
  p.op('u');
  p.op('.');

  fs::AtomicWriter out(path);
  ZipWriter zip(out);
  zip.add("archive/data.pkl", p.out.data(), p.out.size());
  zip.add("archive/byteorder", "little", 6);
  for (size_t i = 0; i < cpu.size(); ++i)
    zip.add("archive/data/" + std::to_string(i), cpu[i].data_ptr(),
            static_cast<size_t>(cpu[i].numel()) * cpu[i].element_size());
  zip.add("archive/version", "3\n", 2);
  zip.finish();
  out.commit();
}

}  // namespace cifar::model
