#include "tenpak/format.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <string_view>

#include <zstd.h>

namespace tenpak {

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::store: return "store";
    case Codec::zstd: return "zstd";
    case Codec::copy_base: return "copy_base";
    case Codec::xor_planes: return "xor_planes";
    case Codec::sub_planes: return "sub_planes";
    case Codec::planes: return "planes";
    case Codec::sub_split: return "sub_split";
    case Codec::sub_ctx: return "sub_ctx";
    case Codec::sub_rans: return "sub_rans";
    case Codec::sub_lanes: return "sub_lanes";
    case Codec::patch: return "patch";
    case Codec::approx: return "approx";
    case Codec::lowrank_lanes: return "lowrank_lanes";
  }
  return "?";
}

bool codec_needs_base(Codec c) {
  return c == Codec::copy_base || c == Codec::xor_planes || c == Codec::sub_planes || c == Codec::sub_split ||
         c == Codec::sub_ctx || c == Codec::sub_rans ||
         c == Codec::sub_lanes || c == Codec::approx || c == Codec::lowrank_lanes;
}

bool is_safe_relative_path(const std::string& s) {
  if (s.empty() || s.size() > kMaxNameLen || s[0] == '/') return false;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    std::string comp = s.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (comp.empty() || comp == "." || comp == "..") return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return s.find('\0') == std::string::npos && s.find('\\') == std::string::npos;
}

namespace {

constexpr char kMagic[8] = {'T', 'P', 'K', 'I', 'D', 'X', '\r', '\n'};

class Writer {
 public:
  void u8(uint8_t v) { s_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void u64(uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void bytes(const void* p, size_t n) { s_.append(static_cast<const char*>(p), n); }
  void str(const std::string& v) { u32(static_cast<uint32_t>(v.size())); bytes(v.data(), v.size()); }
  std::string& out() { return s_; }
 private:
  std::string s_;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool u8(uint8_t& v) { if (pos_ + 1 > n_) return false; v = p_[pos_++]; return true; }
  bool u32(uint32_t& v) {
    if (pos_ + 4 > n_) return false;
    v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p_[pos_ + i];
    pos_ += 4;
    return true;
  }
  bool u64(uint64_t& v) {
    if (pos_ + 8 > n_) return false;
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p_[pos_ + i];
    pos_ += 8;
    return true;
  }
  bool bytes(void* d, size_t k) { if (pos_ + k > n_) return false; std::memcpy(d, p_ + pos_, k); pos_ += k; return true; }
  bool str(std::string& s) {
    uint32_t len;
    if (!u32(len) || len > kMaxNameLen || pos_ + len > n_) return false;
    s.assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return true;
  }
  size_t pos() const { return pos_; }
 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

static uint64_t compact_body_bound(uint64_t nb, uint64_t nf, uint64_t nfr, uint32_t flags);

std::string serialize_manifest(const Manifest& m) {
  Writer w;
  w.bytes(kMagic, 8);
  w.u32(kFormatVersion);
  w.u32(0);  // flags
  w.u32(static_cast<uint32_t>(m.base_files.size()));
  w.u32(static_cast<uint32_t>(m.out_files.size()));
  w.u32(static_cast<uint32_t>(m.frames.size()));
  w.u32(0);  // reserved
  w.u32(static_cast<uint32_t>(m.base_locations.size()));
  for (auto& l : m.base_locations) w.str(l);
  for (auto& b : m.base_files) { w.str(b.name); w.u64(b.size); w.bytes(b.sha256.data(), 32); }
  for (auto& f : m.out_files) {
    w.str(f.name); w.u64(f.size); w.bytes(f.sha256.data(), 32);
    w.u32(f.mode); w.u32(f.first_frame); w.u32(f.frame_count);
  }
  for (auto& f : m.frames) {
    w.u32(f.file); w.u64(f.out_offset); w.u32(f.out_len);
    w.u64(f.data_offset); w.u32(f.data_len);
    w.u8(static_cast<uint8_t>(f.codec)); w.u8(static_cast<uint8_t>(f.dtype));
    w.u8(static_cast<uint8_t>(f.base_dtype)); w.u8(0);
    w.u32(f.base_file); w.u64(f.base_offset); w.u32(f.base_len);
    w.bytes(f.hash.data(), 16);
  }
  uint64_t check = xxh64(w.out().data(), w.out().size());
  w.u64(check);
  return std::move(w.out());
}

Status check_index_head(const uint8_t* p, size_t n, uint64_t size, const std::string& what) {
  if (n < kIndexHeadSize || std::memcmp(p, kMagic, 8) != 0) return {Errc::corrupt, what + ": not a TenPak index (bad magic)"};
  uint32_t v[6];  // version, flags, base files, output files, frames, reserved
  std::memcpy(v, p + 8, sizeof v);
  if (v[0] != kFormatVersion)
    return {Errc::unsupported, what + ": index format version " + std::to_string(v[0]) +
                                   " is not supported (this build reads version " + std::to_string(kFormatVersion) + ")"};
  if (v[2] > kMaxFiles || v[3] > kMaxFiles || v[4] > kMaxFrames) return {Errc::corrupt, what + ": count over the format's limits"};
  // Records at their largest: a location or name of kMaxNameLen bytes.
  const uint64_t str = 4 + uint64_t{kMaxNameLen};
  uint64_t bound = kIndexHeadSize + 4 + kMaxBaseLocations * str + v[2] * (str + 40) + v[3] * (str + 52) +
                   uint64_t{v[4]} * 64 + 8;
  if (v[1] & kIndexCompact) {
    const uint64_t body = compact_body_bound(v[2], v[3], v[4], v[1]);
    bound = kIndexHeadSize + std::max<uint64_t>(body, ZSTD_COMPRESSBOUND(body)) + 8;
  }
  if (size > bound)
    return {Errc::corrupt, what + ": " + std::to_string(size) + " bytes, more than its counts allow (" + std::to_string(bound) + ")"};
  return Status::Ok();
}

namespace {

// Checks every rule of docs/FORMAT.md that both layouts share, on records
// already read (codec and dtype bytes range-checked by the reader).
Status validate_manifest(const Manifest& m, const std::function<Status(const std::string&)>& bad) {
  const size_t nb = m.base_files.size(), nf = m.out_files.size(), nfr = m.frames.size();
  for (auto& l : m.base_locations)
    if (l.empty() || l.find('\0') != std::string::npos) return bad("invalid base location");
  for (auto& b : m.base_files)
    if (!is_safe_relative_path(b.name)) return bad("unsafe base file name '" + b.name + "'");
  for (auto& f : m.out_files) {
    if (!is_safe_relative_path(f.name)) return bad("unsafe file name '" + f.name + "'");
    if (f.mode & ~0777u) return bad("file '" + f.name + "' has an invalid mode");
  }
  {
    // One output per name, and no name is a directory of another: two files
    // of one name would be written over each other (apply) or be ambiguous.
    std::set<std::string_view> names;
    for (auto& f : m.out_files)
      if (!names.insert(f.name).second) return bad("two files named '" + f.name + "'");
    for (auto& f : m.out_files)
      for (size_t s = f.name.find('/'); s != std::string::npos; s = f.name.find('/', s + 1))
        if (names.count(std::string_view(f.name).substr(0, s)))
          return bad("'" + f.name.substr(0, s) + "' is both a file and the directory of '" + f.name + "'");
  }
  for (size_t i = 0; i < nfr; ++i) {
    const auto& f = m.frames[i];
    std::string fr = "frame " + std::to_string(i) + ": ";
    if (f.file >= nf) return bad(fr + "file index out of range");
    if (f.out_len == 0 || f.out_len > kMaxFrameOut) return bad(fr + "output length out of range");
    if (f.data_len > kMaxFramePayload) return bad(fr + "payload length out of range");
    if (f.out_len % dtype_size(f.dtype) != 0) return bad(fr + "length not a multiple of the element size");
    if (f.codec == Codec::patch) {
      // The base range spans every extent the payload lists; only those are read.
      if (f.dtype != DType::U8 || f.base_dtype != DType::U8) return bad(fr + "patch frames hold bytes (U8)");
      if (f.base_file == kNoBase) {
        if (f.base_offset != 0 || f.base_len != 0) return bad(fr + "base range without a base file");
      } else {
        if (f.base_file >= nb) return bad(fr + "base file index out of range");
        const auto& bf = m.base_files[f.base_file];
        if (f.base_offset > bf.size || f.base_len > bf.size - f.base_offset) return bad(fr + "base range out of range");
      }
    } else if (codec_needs_base(f.codec)) {
      if (f.base_file >= nb) return bad(fr + "base file index out of range");
      const auto& bf = m.base_files[f.base_file];
      if (f.base_offset > bf.size || f.base_len > bf.size - f.base_offset) return bad(fr + "base range out of range");
      if (static_cast<uint64_t>(f.base_len) * dtype_size(f.dtype) !=
          static_cast<uint64_t>(f.out_len) * dtype_size(f.base_dtype))
        return bad(fr + "base range length does not match the output length");
    } else if (f.base_file != kNoBase) {
      return bad(fr + "codec takes no base but one is given");
    }
  }
  // Frames must tile each file exactly, in order.
  for (size_t fi = 0; fi < nf; ++fi) {
    const auto& of = m.out_files[fi];
    if (static_cast<uint64_t>(of.first_frame) + of.frame_count > nfr) return bad("file '" + of.name + "': frame range out of range");
    uint64_t pos = 0;
    for (uint32_t k = 0; k < of.frame_count; ++k) {
      const auto& f = m.frames[of.first_frame + k];
      if (f.file != fi || f.out_offset != pos) return bad("file '" + of.name + "': frames do not tile the file");
      pos += f.out_len;
    }
    if (pos != of.size) return bad("file '" + of.name + "': frames cover " + std::to_string(pos) + " of " + std::to_string(of.size) + " bytes");
  }
  return Status::Ok();
}

// LEB128 (7 bits per byte, low first, bit 7 = more), at most 10 bytes, value < 2^64.
void put_uvar(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
}
void put_svar(std::string& s, int64_t v) {
  put_uvar(s, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
void put_var_str(std::string& s, const std::string& v) {
  put_uvar(s, v.size());
  s += v;
}

class VarReader {
 public:
  VarReader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool uvar(uint64_t& v) {
    v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= n_) return false;
      const uint8_t b = p_[pos_++];
      if (i == 9 && b > 1) return false;  // past 2^64
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool u32var(uint32_t& v) {
    uint64_t x;
    if (!uvar(x) || x > 0xffffffffull) return false;
    v = static_cast<uint32_t>(x);
    return true;
  }
  bool svar(int64_t& v) {
    uint64_t z;
    if (!uvar(z)) return false;
    v = static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1));
    return true;
  }
  bool u8(uint8_t& v) { if (pos_ >= n_) return false; v = p_[pos_++]; return true; }
  bool bytes(void* d, size_t k) { if (k > n_ - pos_) return false; std::memcpy(d, p_ + pos_, k); pos_ += k; return true; }
  bool str(std::string& s) {
    uint64_t len;
    if (!uvar(len) || len > kMaxNameLen || len > n_ - pos_) return false;
    s.assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return true;
  }
  size_t left() const { return n_ - pos_; }
 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

// Largest compact body the counts allow (every name and varint at its longest).
static uint64_t compact_body_bound(uint64_t nb, uint64_t nf, uint64_t nfr, uint32_t flags) {
  const uint64_t str = 10 + uint64_t{kMaxNameLen};
  return 10 + kMaxBaseLocations * str + nb * (str + 10 + 32) + nf * (str + 10 + 32 + 10 + 10) + nfr * (10 + 10 + 10 + 3 + 10 + 10 + 10 + 16) +
         ((flags & kIndexRecord) ? 10 + uint64_t{kMaxLossyRecord} : 0);
}

Result<std::string> serialize_manifest_compact(const Manifest& m, bool zstd) {
  std::string body, hashes;
  put_uvar(body, m.base_locations.size());
  for (auto& l : m.base_locations) put_var_str(body, l);
  for (auto& b : m.base_files) {
    put_var_str(body, b.name);
    put_uvar(body, b.size);
    body.append(reinterpret_cast<const char*>(b.sha256.data()), 32);
  }
  uint64_t next_first = 0;
  for (auto& f : m.out_files) {
    if (f.first_frame != next_first)
      return Status{Errc::invalid, "compact index: frames of '" + f.name + "' do not follow the previous file's"};
    next_first += f.frame_count;
    put_var_str(body, f.name);
    put_uvar(body, f.size);
    body.append(reinterpret_cast<const char*>(f.sha256.data()), 32);
    put_uvar(body, f.mode);
    put_uvar(body, f.frame_count);
  }
  if (next_first != m.frames.size()) return Status{Errc::invalid, "compact index: frames outside every file"};
  uint64_t data_next = 0;
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi) {
    const OutFile& of = m.out_files[fi];
    uint64_t pos = 0;
    for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
      const Frame& f = m.frames[k];
      if (f.file != fi || f.out_offset != pos)
        return Status{Errc::invalid, "compact index: frame " + std::to_string(k) + " out of file order"};
      pos += f.out_len;
      put_uvar(body, f.out_len);
      put_svar(body, static_cast<int64_t>(f.data_offset - data_next));
      data_next = f.data_offset + f.data_len;
      put_uvar(body, f.data_len);
      body.push_back(static_cast<char>(f.codec));
      body.push_back(static_cast<char>(f.dtype));
      body.push_back(static_cast<char>(f.base_dtype));
      if (f.base_file == kNoBase) {
        if (f.base_offset != 0 || f.base_len != 0)
          return Status{Errc::invalid, "compact index: frame " + std::to_string(k) + " has a base range without a base file"};
        put_uvar(body, 0);
      } else {
        put_uvar(body, uint64_t{f.base_file} + 1);
        put_svar(body, static_cast<int64_t>(f.base_offset - f.out_offset));
        if (f.codec == Codec::patch) put_uvar(body, f.base_len);
        else if (static_cast<uint64_t>(f.base_len) * dtype_size(f.dtype) !=
                 static_cast<uint64_t>(f.out_len) * dtype_size(f.base_dtype))
          return Status{Errc::invalid, "compact index: frame " + std::to_string(k) + ": base range length does not match"};
      }
      hashes.append(reinterpret_cast<const char*>(f.hash.data()), 16);
    }
  }
  body += hashes;
  if (!m.lossy_record.empty()) {
    if (m.lossy_record.size() > kMaxLossyRecord)
      return Status{Errc::invalid, "compact index: lossy record of " + std::to_string(m.lossy_record.size()) +
                                       " bytes, more than " + std::to_string(kMaxLossyRecord)};
    put_uvar(body, m.lossy_record.size());
    body += m.lossy_record;
  }
  if (body.size() > 0xffffffffull) return Status{Errc::invalid, "compact index: body over 4 GiB"};
  Writer w;
  w.bytes(kMagic, 8);
  w.u32(kFormatVersion);
  std::string stored;
  if (zstd) {
    stored.resize(ZSTD_compressBound(body.size()));
    const size_t z = ZSTD_compress(stored.data(), stored.size(), body.data(), body.size(), 19);
    if (ZSTD_isError(z)) return Status{Errc::invalid, std::string("compact index: zstd: ") + ZSTD_getErrorName(z)};
    stored.resize(z);
  }
  const bool use_zstd = zstd && stored.size() < body.size();
  w.u32(kIndexCompact | (use_zstd ? kIndexBodyZstd : 0) | (m.lossy_record.empty() ? 0 : kIndexRecord));
  w.u32(static_cast<uint32_t>(m.base_files.size()));
  w.u32(static_cast<uint32_t>(m.out_files.size()));
  w.u32(static_cast<uint32_t>(m.frames.size()));
  w.u32(static_cast<uint32_t>(body.size()));
  if (use_zstd) w.bytes(stored.data(), stored.size());
  else w.bytes(body.data(), body.size());
  uint64_t check = xxh64(w.out().data(), w.out().size());
  w.u64(check);
  return std::move(w.out());
}

namespace {

// The records of a compact index's body (docs/FORMAT.md, "Compact index").
Status parse_compact_body(const uint8_t* p, size_t n, uint32_t nb, uint32_t nf, uint32_t nfr, uint32_t flags, Manifest& m,
                          const std::function<Status(const std::string&)>& bad) {
  VarReader r(p, n);
  uint64_t nloc;
  if (!r.uvar(nloc)) return bad("truncated base location list");
  if (nloc > kMaxBaseLocations) return bad("more than " + std::to_string(kMaxBaseLocations) + " base locations");
  m.base_locations.resize(nloc);
  for (auto& l : m.base_locations)
    if (!r.str(l)) return bad("truncated base location list");
  m.base_files.resize(nb);
  for (auto& b : m.base_files)
    if (!r.str(b.name) || !r.uvar(b.size) || !r.bytes(b.sha256.data(), 32)) return bad("truncated base file table");
  m.out_files.resize(nf);
  uint64_t first = 0;
  for (auto& f : m.out_files) {
    if (!r.str(f.name) || !r.uvar(f.size) || !r.bytes(f.sha256.data(), 32) || !r.u32var(f.mode) ||
        !r.u32var(f.frame_count))
      return bad("truncated file table");
    f.first_frame = static_cast<uint32_t>(first);
    first += f.frame_count;
    if (first > nfr) return bad("file '" + f.name + "': frame range out of range");
  }
  if (first != nfr) return bad("frames outside every file");
  // Smallest frame record: 8 bytes and its hash; checked before allocating.
  if (uint64_t{nfr} * 24 > r.left()) return bad("truncated frame table");
  m.frames.resize(nfr);
  uint64_t data_next = 0;
  for (uint32_t fi = 0; fi < nf; ++fi) {
    const OutFile& of = m.out_files[fi];
    uint64_t pos = 0;
    for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
      Frame& f = m.frames[k];
      const std::string fr = "frame " + std::to_string(k) + ": ";
      uint8_t codec, dt, bdt;
      int64_t ddata;
      uint64_t bf1;
      if (!r.u32var(f.out_len) || !r.svar(ddata) || !r.u32var(f.data_len) || !r.u8(codec) || !r.u8(dt) || !r.u8(bdt) ||
          !r.uvar(bf1))
        return bad("truncated frame table");
      if (codec > kMaxCodec) return bad(fr + "unknown codec " + std::to_string(codec));
      if (dt == 0 || dt > kMaxDType || bdt == 0 || bdt > kMaxDType) return bad(fr + "bad dtype");
      f.file = fi;
      f.out_offset = pos;
      pos += f.out_len;
      f.data_offset = data_next + static_cast<uint64_t>(ddata);
      if (f.data_offset + f.data_len < f.data_offset) return bad(fr + "payload offset out of range");
      data_next = f.data_offset + f.data_len;
      f.codec = static_cast<Codec>(codec);
      f.dtype = static_cast<DType>(dt);
      f.base_dtype = static_cast<DType>(bdt);
      if (bf1 == 0) {
        f.base_file = kNoBase;
      } else {
        if (bf1 > nb) return bad(fr + "base file index out of range");
        f.base_file = static_cast<uint32_t>(bf1 - 1);
        int64_t dbase;
        if (!r.svar(dbase)) return bad("truncated frame table");
        f.base_offset = f.out_offset + static_cast<uint64_t>(dbase);
        if (f.codec == Codec::patch) {
          if (!r.u32var(f.base_len)) return bad("truncated frame table");
        } else {
          if (f.out_len % dtype_size(f.dtype) != 0) return bad(fr + "length not a multiple of the element size");
          const uint64_t bl = uint64_t{f.out_len} / dtype_size(f.dtype) * dtype_size(f.base_dtype);
          if (bl > 0xffffffffull) return bad(fr + "base range length out of range");
          f.base_len = static_cast<uint32_t>(bl);
        }
      }
    }
  }
  for (auto& f : m.frames)
    if (!r.bytes(f.hash.data(), 16)) return bad("truncated frame hashes");
  if (flags & kIndexRecord) {
    uint64_t len;
    if (!r.uvar(len)) return bad("truncated lossy record length");
    if (len == 0 || len > kMaxLossyRecord)
      return bad("lossy record length " + std::to_string(len) + " (1.." + std::to_string(kMaxLossyRecord) + ")");
    if (len > r.left()) return bad("truncated lossy record");
    m.lossy_record.resize(len);
    r.bytes(m.lossy_record.data(), len);
    if (r.left() != 0) return bad("trailing bytes after the lossy record");
  }
  if (r.left() != 0) return bad("trailing bytes after the frame hashes");
  return Status::Ok();
}

}  // namespace

Result<Manifest> parse_manifest(const uint8_t* p, size_t n, const std::string& what) {
  auto bad = [&](const std::string& why) { return Status{Errc::corrupt, what + ": " + why}; };
  if (n < 44 || std::memcmp(p, kMagic, 8) != 0) return bad("not a TenPak index (bad magic)");
  Reader r(p, n);
  char magic[8];
  r.bytes(magic, 8);
  uint32_t version, flags, nb, nf, nfr, reserved;
  r.u32(version);
  if (version != kFormatVersion)
    return Status{Errc::unsupported, what + ": index format version " + std::to_string(version) +
                                         " is not supported (this build reads version " +
                                         std::to_string(kFormatVersion) + ")"};
  uint64_t stored;
  std::memcpy(&stored, p + n - 8, 8);  // little-endian hosts only (checked at build time)
  if (xxh64(p, n - 8) != stored) return bad("index checksum mismatch (file damaged)");
  r.u32(flags); r.u32(nb); r.u32(nf); r.u32(nfr); r.u32(reserved);
  // 0, or the compact layout with its optional zstd body and lossy record.
  if (flags != 0 && (!(flags & kIndexCompact) || (flags & ~(kIndexCompact | kIndexBodyZstd | kIndexRecord))))
    return bad("unknown flags " + std::to_string(flags));
  if (nb > kMaxFiles || nf > kMaxFiles || nfr > kMaxFrames) return bad("count over the format's limits");
  Manifest m;
  if (flags & kIndexCompact) {
    // reserved = the body's length as decoded.
    const uint64_t body_len = reserved;
    if (body_len > compact_body_bound(nb, nf, nfr, flags)) return bad("compact body longer than its counts allow");
    const uint8_t* sp = p + kIndexHeadSize;
    const size_t sn = n - kIndexHeadSize - 8;
    std::vector<uint8_t> body;
    if (flags & kIndexBodyZstd) {
      const unsigned long long fcs = ZSTD_getFrameContentSize(sp, sn);
      if (fcs != body_len) return bad("compact body: zstd frame does not state " + std::to_string(body_len) + " bytes");
      if (ZSTD_findFrameCompressedSize(sp, sn) != sn) return bad("compact body: not exactly one zstd frame");
      body.resize(body_len);
      const size_t z = ZSTD_decompress(body.data(), body.size(), sp, sn);
      if (ZSTD_isError(z) || z != body_len) return bad("compact body: zstd frame does not decode to its length");
    } else {
      if (sn != body_len) return bad("compact body: " + std::to_string(sn) + " bytes stored, " + std::to_string(body_len) + " stated");
      body.assign(sp, sp + sn);
    }
    TP_RETURN_IF_ERROR(parse_compact_body(body.data(), body.size(), nb, nf, nfr, flags, m, bad));
    TP_RETURN_IF_ERROR(validate_manifest(m, bad));
    return m;
  }
  // Smallest possible encodings: enough bytes must remain for the counts given.
  // Minimum record sizes: base file 45, output file 57, frame 64 bytes.
  if (static_cast<uint64_t>(nb) * 44 + static_cast<uint64_t>(nf) * 56 + static_cast<uint64_t>(nfr) * 64 > n)
    return bad("counts larger than the index");
  uint32_t nloc;
  if (!r.u32(nloc)) return bad("truncated base location list");
  if (nloc > kMaxBaseLocations) return bad("more than " + std::to_string(kMaxBaseLocations) + " base locations");
  m.base_locations.resize(nloc);
  for (auto& l : m.base_locations) {
    if (!r.str(l)) return bad("truncated base location list");
    if (l.empty() || l.find('\0') != std::string::npos) return bad("invalid base location");
  }
  m.base_files.resize(nb);
  for (auto& b : m.base_files) {
    if (!r.str(b.name) || !r.u64(b.size) || !r.bytes(b.sha256.data(), 32)) return bad("truncated base file table");
    if (!is_safe_relative_path(b.name)) return bad("unsafe base file name '" + b.name + "'");
  }
  m.out_files.resize(nf);
  for (auto& f : m.out_files) {
    if (!r.str(f.name) || !r.u64(f.size) || !r.bytes(f.sha256.data(), 32) || !r.u32(f.mode) ||
        !r.u32(f.first_frame) || !r.u32(f.frame_count))
      return bad("truncated file table");
    if (!is_safe_relative_path(f.name)) return bad("unsafe file name '" + f.name + "'");
    if (f.mode & ~0777u) return bad("file '" + f.name + "' has an invalid mode");
  }
  m.frames.resize(nfr);
  for (size_t i = 0; i < nfr; ++i) {
    auto& f = m.frames[i];
    uint8_t codec, dt, bdt, pad;
    if (!r.u32(f.file) || !r.u64(f.out_offset) || !r.u32(f.out_len) || !r.u64(f.data_offset) || !r.u32(f.data_len) ||
        !r.u8(codec) || !r.u8(dt) || !r.u8(bdt) || !r.u8(pad) || !r.u32(f.base_file) || !r.u64(f.base_offset) ||
        !r.u32(f.base_len) || !r.bytes(f.hash.data(), 16))
      return bad("truncated frame table");
    std::string fr = "frame " + std::to_string(i) + ": ";
    if (codec > kMaxCodec) return bad(fr + "unknown codec " + std::to_string(codec));
    if (dt == 0 || dt > kMaxDType || bdt == 0 || bdt > kMaxDType || pad != 0) return bad(fr + "bad dtype");
    f.codec = static_cast<Codec>(codec);
    f.dtype = static_cast<DType>(dt);
    f.base_dtype = static_cast<DType>(bdt);
  }
  TP_RETURN_IF_ERROR(validate_manifest(m, bad));
  if (r.pos() + 8 != n) return bad("trailing bytes after the frame table");
  return m;
}

}  // namespace tenpak
