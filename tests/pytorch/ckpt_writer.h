// Writes torch.save-style zip checkpoints without torch: pickle opcodes by
// hand (protocol 2, as torch.save emits them) and a STORED zip with 64-byte
// aligned data like PyTorch's writer. Used by the pytorch tests and as fuzz
// seeds.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "zip_reader.h"  // crc32

namespace ckpt {

class Pickle {
 public:
  std::string b;
  Pickle() { b += "\x80\x02"; }
  Pickle& op(char c) { b += c; return *this; }
  Pickle& op(uint8_t c) { b += static_cast<char>(c); return *this; }
  Pickle& mark() { return op('('); }
  Pickle& tuple() { return op('t'); }
  Pickle& empty_tuple() { return op(')'); }
  Pickle& empty_dict() { return op('}'); }
  Pickle& empty_list() { return op(']'); }
  Pickle& setitems() { return op('u'); }
  Pickle& appends() { return op('e'); }
  Pickle& reduce() { return op('R'); }
  Pickle& build() { return op('b'); }
  Pickle& none() { return op('N'); }
  Pickle& boolean(bool v) { return op(static_cast<uint8_t>(v ? 0x88 : 0x89)); }
  Pickle& newobj() { return op(static_cast<uint8_t>(0x81)); }
  Pickle& stop() { return op('.'); }
  Pickle& global(const std::string& mod, const std::string& name) {
    b += 'c' + mod + '\n' + name + '\n';
    return *this;
  }
  Pickle& str(const std::string& s) {
    op('X');
    le(s.size(), 4);
    b += s;
    return *this;
  }
  Pickle& integer(int64_t v) {
    if (v >= 0 && v < 256) { op('K'); le(static_cast<uint64_t>(v), 1); }
    else if (v >= INT32_MIN && v <= INT32_MAX) { op('J'); le(static_cast<uint32_t>(v), 4); }
    else { op(static_cast<uint8_t>(0x8a)); le(8, 1); le(static_cast<uint64_t>(v), 8); }
    return *this;
  }
  Pickle& floating(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    op('G');
    for (int k = 7; k >= 0; --k) b += static_cast<char>((bits >> (8 * k)) & 0xff);
    return *this;
  }
  Pickle& put(uint32_t i) { op('r'); le(i, 4); return *this; }
  Pickle& get(uint32_t i) { op('j'); le(i, 4); return *this; }
  Pickle& int_tuple(const std::vector<int64_t>& v) {
    mark();
    for (auto x : v) integer(x);
    return tuple();
  }
  Pickle& ordered_dict() { return global("collections", "OrderedDict").empty_tuple().reduce(); }
  // torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())
  Pickle& tensor(const std::string& storage_type, const std::string& key, int64_t numel, int64_t offset,
                 const std::vector<int64_t>& shape, const std::vector<int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2");
    mark();
    mark().str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel).tuple();
    op('Q');
    integer(offset).int_tuple(shape).int_tuple(stride).boolean(false).ordered_dict();
    tuple();
    return reduce();
  }
  // Wraps the tensor pushed by `push` into torch._utils._rebuild_parameter(t, True, OrderedDict()).
  template <class F>
  Pickle& parameter(F&& push) {
    global("torch._utils", "_rebuild_parameter").mark();
    push(*this);
    boolean(true).ordered_dict().tuple();
    return reduce();
  }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) b += static_cast<char>((v >> (8 * k)) & 0xff);
  }
};

// A STORED zip archive, data aligned to 64 bytes with a padding extra field.
class Zip {
 public:
  void add(const std::string& name, const std::string& data) {
    Rec r{name, out_.size(), static_cast<uint32_t>(tenpak::zip::crc32(reinterpret_cast<const uint8_t*>(data.data()), data.size())),
          data.size()};
    size_t hdr = 30 + name.size() + 4;
    size_t pad = (64 - (out_.size() + hdr) % 64) % 64;
    u32(0x04034b50); u16(20); u16(0); u16(0); u16(0); u16(0); u32(r.crc); u32(static_cast<uint32_t>(data.size()));
    u32(static_cast<uint32_t>(data.size())); u16(static_cast<uint16_t>(name.size())); u16(static_cast<uint16_t>(4 + pad));
    out_ += name;
    u16(0x4b46); u16(static_cast<uint16_t>(pad)); out_.append(pad, 'Z');
    out_ += data;
    recs_.push_back(r);
  }
  // zip64: sizes and offsets in zip64 extra fields, zip64 end records
  // (what writers emit past 4 GiB; here forced on a small archive).
  std::string finish(bool zip64 = false) {
    size_t cd = out_.size();
    const uint32_t sat = 0xffffffffu;
    for (auto& r : recs_) {
      u32(0x02014b50); u16(45); u16(zip64 ? 45 : 20); u16(0); u16(0); u16(0); u16(0); u32(r.crc);
      u32(zip64 ? sat : static_cast<uint32_t>(r.size)); u32(zip64 ? sat : static_cast<uint32_t>(r.size));
      u16(static_cast<uint16_t>(r.name.size())); u16(zip64 ? 28 : 0); u16(0); u16(0); u16(0);
      u32(0); u32(zip64 ? sat : static_cast<uint32_t>(r.local));
      out_ += r.name;
      if (zip64) { u16(1); u16(24); u64(r.size); u64(r.size); u64(r.local); }
    }
    size_t cd_size = out_.size() - cd;
    if (zip64) {
      size_t z = out_.size();
      u32(0x06064b50); u64(44); u16(45); u16(45); u32(0); u32(0); u64(recs_.size()); u64(recs_.size()); u64(cd_size); u64(cd);
      u32(0x07064b50); u32(0); u64(z); u32(1);
      u32(0x06054b50); u16(0); u16(0); u16(0xffff); u16(0xffff); u32(sat); u32(sat); u16(0);
      return out_;
    }
    u32(0x06054b50); u16(0); u16(0); u16(static_cast<uint16_t>(recs_.size())); u16(static_cast<uint16_t>(recs_.size()));
    u32(static_cast<uint32_t>(cd_size)); u32(static_cast<uint32_t>(cd)); u16(0);
    return out_;
  }

 private:
  struct Rec { std::string name; size_t local; uint32_t crc; size_t size; };
  void u16(uint16_t v) { for (int k = 0; k < 2; ++k) out_ += static_cast<char>((v >> (8 * k)) & 0xff); }
  void u32(uint32_t v) { for (int k = 0; k < 4; ++k) out_ += static_cast<char>((v >> (8 * k)) & 0xff); }
  void u64(uint64_t v) { for (int k = 0; k < 8; ++k) out_ += static_cast<char>((v >> (8 * k)) & 0xff); }
  std::string out_;
  std::vector<Rec> recs_;
};

// A torch.save-style archive: <root>/data.pkl, <root>/data/<key>..., byteorder, version.
inline std::string make_pt(const std::string& pkl, const std::map<std::string, std::string>& storages,
                           const std::string& root = "archive", bool zip64 = false) {
  Zip z;
  z.add(root + "/data.pkl", pkl);
  z.add(root + "/byteorder", "little");
  for (auto& [k, v] : storages) z.add(root + "/data/" + k, v);
  z.add(root + "/version", "3\n");
  return z.finish(zip64);
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace ckpt
