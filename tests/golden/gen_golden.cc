// Writes the golden deltas of tests/golden (see README.md there).
//
//   cmake --build build --target tenpak_golden_gen
//   build/tests/golden/tenpak_golden_gen tests/golden
//
// --rans-only and --lanes-only add valid-rans/ (codec 8) and valid-lanes/ plus
// invalid/sub_lanes-* (codec 9) against the existing base; --fix-unknown-codec
// patches invalid/unknown-codec in place (see fix_unknown_codec).
//
// Regenerate ONLY for a deliberate format change (with a new format version):
// the point of these files is that today's reader must keep decoding
// yesterday's bytes. Inputs are deterministic (own generator, fixed seeds).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tenpak/approx_codec.h"
#include "tenpak/format.h"
#include "tenpak/frame_codec.h"
#include "tenpak/hash.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/patch_codec.h"

#include "golden_files.h"
#include "splitmix64.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

using golden::write;
using golden::write_delta;

std::string bytes_of(const std::vector<float>& v, DType dt) {
  std::string out(v.size() * dtype_size(dt), '\0');
  convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, v.size(), dt, reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

struct Case {
  std::string name;
  Codec codec;
  DType dt, bdt;
  std::string out;         // output bytes
  std::string base;        // base bytes in bdt (empty: no base)
  FrameLayout layout;
  uint32_t frame_elems = 0;  // 0: one frame
};

// Weights w ~ U(-s, s); fine-tune w + kernel-coherent update + noise.
void weights(Rng& g, size_t n, unsigned area, std::vector<float>& base, std::vector<float>& ft) {
  base.resize(n);
  ft.resize(n);
  float shift = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i % area == 0) shift = static_cast<float>(0.004 * g.sym());
    base[i] = static_cast<float>(0.1 * g.sym());
    ft[i] = base[i] + shift + static_cast<float>(0.0015 * g.sym());
  }
}

std::vector<Case> cases() {
  Rng g{42};
  std::vector<Case> cs;
  std::vector<float> b, f;
  auto add = [&](std::string name, Codec c, DType dt, DType bdt, std::string out, std::string base, FrameLayout l = {},
                 uint32_t frame_elems = 0) {
    cs.push_back({std::move(name), c, dt, bdt, std::move(out), std::move(base), l, frame_elems});
  };
  std::string text = "{\"architectures\": [\"Golden\"], \"hidden_size\": 64, \"hidden_size_2\": 64}\n";
  add("store-U8", Codec::store, DType::U8, DType::U8, text.substr(0, 40), "");
  add("zstd-U8", Codec::zstd, DType::U8, DType::U8, text + text + text, "");
  weights(g, 32, 1, b, f);
  add("copy_base-BF16", Codec::copy_base, DType::BF16, DType::BF16, bytes_of(b, DType::BF16), bytes_of(b, DType::BF16));
  weights(g, 40, 1, b, f);
  add("xor_planes-F32", Codec::xor_planes, DType::F32, DType::F32, bytes_of(f, DType::F32), bytes_of(b, DType::F32));
  weights(g, 48, 1, b, f);
  add("sub_planes-BF16", Codec::sub_planes, DType::BF16, DType::BF16, bytes_of(f, DType::BF16), bytes_of(b, DType::BF16));
  weights(g, 32, 1, b, f);
  add("planes-F32", Codec::planes, DType::F32, DType::F32, bytes_of(f, DType::F32), "");
  weights(g, 48, 1, b, f);
  add("sub_split-F16", Codec::sub_split, DType::F16, DType::F16, bytes_of(f, DType::F16), bytes_of(b, DType::F16));
  weights(g, 32, 1, b, f);
  add("sub_planes-BF16-from-F32", Codec::sub_planes, DType::BF16, DType::F32, bytes_of(f, DType::BF16),
      bytes_of(b, DType::F32));
  // sub_ctx: every element width, with and without the kernel predictor,
  // and a tensor cut into two frames (the second starts mid-kernel).
  weights(g, 90, 9, b, f);
  add("sub_ctx-F16-kernel3x3", Codec::sub_ctx, DType::F16, DType::F16, bytes_of(f, DType::F16), bytes_of(b, DType::F16),
      FrameLayout{3, 9, 0}, 49);
  weights(g, 48, 1, b, f);
  add("sub_ctx-BF16", Codec::sub_ctx, DType::BF16, DType::BF16, bytes_of(f, DType::BF16), bytes_of(b, DType::BF16));
  weights(g, 50, 25, b, f);
  add("sub_ctx-F32-kernel5x5", Codec::sub_ctx, DType::F32, DType::F32, bytes_of(f, DType::F32), bytes_of(b, DType::F32),
      FrameLayout{5, 25, 0});
  {
    std::string ob(16 * 8, '\0'), bb(16 * 8, '\0');
    for (int i = 0; i < 16; ++i) {
      int64_t v = static_cast<int64_t>(g.next() % 100000) - 50000, d = static_cast<int64_t>(g.next() % 7) - 3;
      int64_t o = v + d;
      std::memcpy(&bb[8 * i], &v, 8);
      std::memcpy(&ob[8 * i], &o, 8);
    }
    add("sub_ctx-I64", Codec::sub_ctx, DType::I64, DType::I64, ob, bb);
  }
  {
    std::string ob(32, '\0'), bb(32, '\0');
    for (int i = 0; i < 32; ++i) {
      bb[i] = static_cast<char>(g.next());
      ob[i] = static_cast<char>(bb[i] + static_cast<char>(g.next() % 5) - 2);
    }
    add("sub_ctx-I8", Codec::sub_ctx, DType::I8, DType::I8, ob, bb);
  }
  return cs;
}

// Builds the valid delta: one output file per case, all against one base file.
struct Built {
  Manifest m;
  std::string data, base;
  std::vector<std::pair<std::string, std::string>> outputs;  // name, bytes
};

// Elements [e0, e0 + ne) of the next output file of `b` (w bytes each), as
// a frame whose payload of `len` bytes is about to be appended to b.data;
// with a base range, elements of bw bytes from base offset base_at.
Frame element_frame(const Built& b, Codec codec, DType dt, size_t w, uint64_t e0, size_t ne, size_t len) {
  Frame fr;
  fr.file = static_cast<uint32_t>(b.m.out_files.size());
  fr.out_offset = e0 * w;
  fr.out_len = static_cast<uint32_t>(ne * w);
  fr.data_offset = b.data.size();
  fr.data_len = static_cast<uint32_t>(len);
  fr.codec = codec;
  fr.dtype = fr.base_dtype = dt;
  return fr;
}
void set_base_range(Frame& fr, DType bdt, size_t bw, uint64_t base_at, uint64_t e0, size_t ne) {
  fr.base_dtype = bdt;
  fr.base_file = 0;
  fr.base_offset = base_at + e0 * bw;
  fr.base_len = static_cast<uint32_t>(ne * bw);
}

// Closes output file `of` (its frames the last ones added to b.m), whose
// bytes are `out`, and lists it in `expected`.
void add_out_file(Built& b, OutFile of, const std::string& out, std::string& expected) {
  of.size = out.size();
  of.sha256 = sha256(out.data(), out.size());
  of.frame_count = static_cast<uint32_t>(b.m.frames.size()) - of.first_frame;
  b.m.out_files.push_back(of);
  expected += hex(of.sha256) + " " + of.name + "\n";
}

Built build(const std::vector<Case>& cs) {
  Built r;
  for (auto& c : cs) {
    while (r.base.size() % 8) r.base.push_back('\0');  // keep every base range aligned
    uint64_t base_at = r.base.size();
    r.base += c.base;
    OutFile of;
    of.name = c.name + ".bin";
    of.size = c.out.size();
    of.sha256 = sha256(c.out.data(), c.out.size());
    of.first_frame = static_cast<uint32_t>(r.m.frames.size());
    const size_t w = dtype_size(c.dt), bw = dtype_size(c.bdt);
    const size_t count = c.out.size() / w;
    const size_t per = c.frame_elems ? c.frame_elems : count;
    for (size_t e0 = 0; e0 < count; e0 += per) {
      size_t ne = std::min(per, count - e0);
      const uint8_t* out = reinterpret_cast<const uint8_t*>(c.out.data()) + e0 * w;
      std::vector<uint8_t> conv;
      const uint8_t* base = nullptr;
      if (!c.base.empty()) {
        base = reinterpret_cast<const uint8_t*>(c.base.data()) + e0 * bw;
        if (c.bdt != c.dt) {
          conv.resize(ne * w);
          convert_dtype(base, c.bdt, ne, c.dt, conv.data());
          base = conv.data();
        }
      }
      FrameLayout l = c.layout;
      l.phase = static_cast<uint32_t>(e0 % l.area);
      EncodedFrame e = encode_frame_with(c.codec, out, ne * w, c.dt, base, 19, l);
      if (c.codec == Codec::sub_ctx && c.layout.area > 1 && static_cast<uint8_t>(e.payload[0]) == 0) {
        std::fprintf(stderr, "%s: the predictor was not used; change the inputs\n", c.name.c_str());
        std::exit(1);
      }
      Frame fr = element_frame(r, c.codec, c.dt, w, e0, ne, e.payload.size());
      if (!c.base.empty()) fr.base_dtype = c.bdt;
      if (codec_needs_base(c.codec)) set_base_range(fr, fr.base_dtype, bw, base_at, e0, ne);
      fr.hash = xxh128(out, ne * w);
      r.data += e.payload;
      r.m.frames.push_back(fr);
    }
    of.frame_count = static_cast<uint32_t>(r.m.frames.size()) - of.first_frame;
    r.m.out_files.push_back(of);
    r.outputs.emplace_back(of.name, c.out);
  }
  BaseFile bf;
  bf.name = "base.bin";
  bf.size = r.base.size();
  bf.sha256 = sha256(r.base.data(), r.base.size());
  r.m.base_files.push_back(bf);
  return r;
}

// Re-seals an index whose bytes were edited (the last 8 bytes are xxh3-64 of the rest).
std::string reseal(std::string idx) {
  uint64_t h = xxh64(idx.data(), idx.size() - 8);
  std::memcpy(&idx[idx.size() - 8], &h, 8);
  return idx;
}

// The delta restricted to the named output files (frames renumbered, payloads
// repacked), so that each invalid case stays a few hundred bytes.
std::pair<Manifest, std::string> subset(const Built& b, const std::vector<std::string>& names) {
  Manifest m;
  m.base_files = b.m.base_files;
  std::string dat;
  for (auto& n : names) {
    for (auto& of : b.m.out_files) {
      if (of.name != n) continue;
      OutFile o = of;
      o.first_frame = static_cast<uint32_t>(m.frames.size());
      for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
        Frame f = b.m.frames[k];
        f.file = static_cast<uint32_t>(m.out_files.size());
        dat += b.data.substr(f.data_offset, f.data_len);
        f.data_offset = dat.size() - f.data_len;
        m.frames.push_back(f);
      }
      m.out_files.push_back(o);
    }
  }
  return {m, dat};
}

}  // namespace

// Adds valid-rans/: codec 8 (sub_rans) frames against the EXISTING base/base.bin
// (read, not rewritten), so the older golden files stay byte for byte.
int write_rans_golden(const std::string& root) {
  std::ifstream in(root + "/base/base.bin", std::ios::binary);
  std::string base((std::istreambuf_iterator<char>(in)), {});
  if (base.size() < 256) { std::fprintf(stderr, "no base/base.bin under %s\n", root.c_str()); return 1; }
  Rng g{8};
  Manifest m;
  std::string data, expected = "ok\n";
  BaseFile bf;
  bf.name = "base.bin";
  bf.size = base.size();
  bf.sha256 = sha256(base.data(), base.size());
  m.base_files.push_back(bf);
  const DType dts[] = {DType::BF16, DType::F32, DType::F16, DType::I8, DType::F64};
  for (DType dt : dts) {
    const size_t w = dtype_size(dt), n = (std::min<size_t>(base.size(), 256) / w) * w;
    std::string out = base.substr(0, n);
    for (size_t i = 0; i < n; i += w) out[i] = static_cast<char>(out[i] + static_cast<int>(g.next() % 9) - 4);
    EncodedFrame e = encode_frame_with(Codec::sub_rans, reinterpret_cast<const uint8_t*>(out.data()), n, dt,
                                       reinterpret_cast<const uint8_t*>(base.data()), 0);
    OutFile of;
    of.name = std::string("sub_rans-") + dtype_name(dt) + ".bin";
    of.size = n;
    of.sha256 = sha256(out.data(), n);
    of.first_frame = static_cast<uint32_t>(m.frames.size());
    of.frame_count = 1;
    Frame fr;
    fr.file = static_cast<uint32_t>(m.out_files.size());
    fr.out_len = static_cast<uint32_t>(n);
    fr.data_offset = data.size();
    fr.data_len = static_cast<uint32_t>(e.payload.size());
    fr.codec = Codec::sub_rans;
    fr.dtype = fr.base_dtype = dt;
    fr.base_file = 0;
    fr.base_len = static_cast<uint32_t>(n);
    fr.hash = xxh128(out.data(), n);
    data += e.payload;
    m.frames.push_back(fr);
    m.out_files.push_back(of);
    expected += hex(of.sha256) + " " + of.name + "\n";
  }
  write_delta(root + "/valid-rans", serialize_manifest(m), data, expected);
  std::printf("wrote %s/valid-rans\n", root.c_str());
  return 0;
}

namespace {

// A codec byte no version-1 reader knows (kMaxCodec grows as codecs are added;
// the unknown-codec case once stored kMaxCodec + 1 = 8, which became sub_rans).
constexpr uint8_t kUnknownCodec = 255;

// Byte offset of frame k's record in a serialized index: the frame table is
// the last nfr * 64 bytes before the 8-byte checksum (docs/FORMAT.md).
size_t frame_record_at(const std::string& idx, uint32_t k) {
  uint32_t nfr;
  std::memcpy(&nfr, &idx[24], 4);
  return idx.size() - 8 - static_cast<size_t>(nfr) * 64 + static_cast<size_t>(k) * 64;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Adds valid-lanes/ (codec 9, sub_lanes) against the EXISTING base/base.bin and
// the invalid/sub_lanes-* cases, leaving every older golden file as it is.
int write_lanes_golden(const std::string& root) {
  Built b;
  b.base = read_file(root + "/base/base.bin");
  if (b.base.size() < 1024) { std::fprintf(stderr, "no base/base.bin under %s\n", root.c_str()); return 1; }
  Rng g{9};
  BaseFile bf;
  bf.name = "base.bin";
  bf.size = b.base.size();
  bf.sha256 = sha256(b.base.data(), b.base.size());
  b.m.base_files.push_back(bf);
  std::string expected = "ok\n";
  struct LanesCase {
    const char* name;
    DType dt;
    size_t base_at, elems;   // base range: elems elements of dt at byte base_at
    std::vector<size_t> frames;  // elements per frame (sum = elems)
    int max_bits;             // differences up to about 2^max_bits (as w-byte integers)
  };
  // Element counts: multiples of 32, not, under 32 (idle lanes), one element;
  // max_bits so that some raw values fill most of a raw word (U = 16 or 32).
  const LanesCase lcs[] = {
      {"sub_lanes-BF16", DType::BF16, 0, 256, {256}, 10},
      {"sub_lanes-F32", DType::F32, 0, 200, {200}, 30},
      {"sub_lanes-F16", DType::F16, 8, 300, {300}, 15},
      {"sub_lanes-I8", DType::I8, 0, 1000, {1000}, 7},
      {"sub_lanes-U8", DType::U8, 100, 20, {20}, 8},
      {"sub_lanes-I16", DType::I16, 64, 77, {77}, 16},
      {"sub_lanes-BF16-frames-45-7-1", DType::BF16, 640, 53, {45, 7, 1}, 6},
  };
  for (const LanesCase& c : lcs) {
    const size_t w = dtype_size(c.dt), n = c.elems * w;
    if (c.base_at + n > b.base.size()) { std::fprintf(stderr, "%s: base too small\n", c.name); return 1; }
    std::string out = b.base.substr(c.base_at, n);
    for (size_t i = 0; i < n; i += w) {
      // A difference of random bit length 0..max_bits, either sign, added to
      // the element as a w-byte integer (any bytes are valid output).
      const int bits = static_cast<int>(g.next() % (c.max_bits + 1));
      const uint64_t mag = bits ? (g.next() & ((uint64_t{1} << bits) - 1)) | (uint64_t{1} << (bits - 1)) : 0;
      uint64_t v = 0;
      std::memcpy(&v, &out[i], w);
      v = (g.next() & 1) ? v - mag : v + mag;
      std::memcpy(&out[i], &v, w);
    }
    OutFile of;
    of.name = std::string(c.name) + ".bin";
    of.first_frame = static_cast<uint32_t>(b.m.frames.size());
    size_t e0 = 0;
    for (size_t ne : c.frames) {
      const uint8_t* o = reinterpret_cast<const uint8_t*>(out.data()) + e0 * w;
      const uint8_t* bs = reinterpret_cast<const uint8_t*>(b.base.data()) + c.base_at + e0 * w;
      EncodedFrame e = encode_frame_with(Codec::sub_lanes, o, ne * w, c.dt, bs, 0);
      if (e.codec != Codec::sub_lanes) { std::fprintf(stderr, "%s: not encoded as sub_lanes\n", c.name); return 1; }
      Frame fr = element_frame(b, Codec::sub_lanes, c.dt, w, e0, ne, e.payload.size());
      set_base_range(fr, c.dt, w, c.base_at, e0, ne);
      fr.hash = xxh128(o, ne * w);
      b.data += e.payload;
      b.m.frames.push_back(fr);
      e0 += ne;
    }
    add_out_file(b, of, out, expected);
  }
  write_delta(root + "/valid-lanes", serialize_manifest(b.m), b.data, expected);
  std::printf("wrote %s/valid-lanes\n", root.c_str());

  // Invalid sub_lanes payloads, each a one-file delta that must fail in
  // read_frame as corrupt. Offsets come from the payload layout of
  // docs/FORMAT.md: u32 A, u32 B, u32 M, tables, 32 states, A + B bytes.
  struct Payload {
    std::string dat;
    Frame f;
    uint32_t A, B;
    size_t states() const { return f.data_len - 128 - A - B; }  // t
  };
  auto one = [&](const std::string& file) {
    auto [m, dat] = subset(b, {file});
    Payload p{dat, m.frames[0], 0, 0};
    std::memcpy(&p.A, &dat[p.f.data_offset], 4);
    std::memcpy(&p.B, &dat[p.f.data_offset + 4], 4);
    return std::make_pair(m, p);
  };
  const std::string corrupt = "error corrupt read\n";
  {
    // One byte short: the payload length no longer equals t + 128 + A + B.
    auto [m, p] = one("sub_lanes-F32.bin");
    m.frames[0].data_len -= 1;
    write_delta(root + "/invalid/sub_lanes-truncated", serialize_manifest(m), p.dat.substr(0, p.dat.size() - 1), corrupt);
  }
  {
    // State X_0 = 0xFFFF, under 2^16.
    auto [m, p] = one("sub_lanes-BF16.bin");
    const uint32_t x = 0xFFFF;
    std::memcpy(&p.dat[p.f.data_offset + p.states()], &x, 4);
    write_delta(root + "/invalid/sub_lanes-bad-state", serialize_manifest(m), p.dat, corrupt);
  }
  {
    // 20 elements: lane 31 has none, so its state must stay 2^16; make it 2^16 + 1.
    auto [m, p] = one("sub_lanes-U8.bin");
    const uint32_t x = 0x10001;
    std::memcpy(&p.dat[p.f.data_offset + p.states() + 31 * 4], &x, 4);
    write_delta(root + "/invalid/sub_lanes-idle-lane-state", serialize_manifest(m), p.dat, corrupt);
  }
  {
    // A valid BF16 payload (256 elements, 512 bytes) in a frame declared F64:
    // codec 9 does not allow 8-byte elements.
    auto [m, p] = one("sub_lanes-BF16.bin");
    m.frames[0].dtype = m.frames[0].base_dtype = DType::F64;
    write_delta(root + "/invalid/sub_lanes-w8", serialize_manifest(m), p.dat, corrupt);
  }
  {
    // A padding bit (an unread bit of a lane's last raw word) set to 1. Raw
    // bits never change the symbols, so flipping a value bit still decodes
    // (to other bytes) while flipping a padding bit must be refused: the first
    // raw-area bit whose flip is refused is a padding bit. The output bytes
    // are unchanged, so only the padding check can catch it.
    auto [m, p] = one("sub_lanes-F16.bin");
    const size_t raw_at = p.f.data_offset + p.f.data_len - p.B;
    std::vector<uint8_t> base_range(b.base.begin() + p.f.base_offset, b.base.begin() + p.f.base_offset + p.f.base_len);
    std::vector<uint8_t> dec(p.f.out_len);
    bool found = false;
    for (size_t bit = 0; bit < size_t{8} * p.B && !found; ++bit) {
      std::string d = p.dat;
      d[raw_at + bit / 8] ^= static_cast<char>(1u << (bit % 8));
      Frame f = p.f;
      Status st = decode_frame(f, reinterpret_cast<const uint8_t*>(d.data()) + f.data_offset, base_range.data(), dec.data());
      if (st.ok()) continue;
      std::printf("sub_lanes-padding: raw bit %zu of %u is padding\n", bit, 8 * p.B);
      write_delta(root + "/invalid/sub_lanes-padding", serialize_manifest(m), d, corrupt);
      found = true;
    }
    if (!found) { std::fprintf(stderr, "sub_lanes-padding: no padding bit found\n"); return 1; }
  }
  std::printf("wrote %s/invalid/sub_lanes-*\n", root.c_str());
  return 0;
}

// Adds valid-patch/ (codec 10, patch: extents of the base, ops, literals)
// against the EXISTING base/base.bin and the invalid/patch-* cases, leaving
// every older golden file as it is. Raw streams (decodable with no zstd:
// spec_decode.py checks them), zstd streams, zstd literals with B as prefix,
// a frame with no base, a file cut into two frames.
// A codec-10 golden set over the EXISTING base/base.bin: the base file, the
// frames and output files added so far, and the expected `tenpak verify`
// lines. Shared by valid-patch/ and valid-words/, which differ only in how
// each frame's payload is encoded.
struct PatchGolden {
  Built b;
  std::string expected = "ok\n";
  bool open(const std::string& root) {
    b.base = read_file(root + "/base/base.bin");
    if (b.base.size() < 1024) {
      std::fprintf(stderr, "no base/base.bin under %s\n", root.c_str());
      return false;
    }
    BaseFile bf;
    bf.name = "base.bin";
    bf.size = b.base.size();
    bf.sha256 = sha256(b.base.data(), b.base.size());
    b.m.base_files.push_back(bf);
    return true;
  }
  // One frame of the output file being written: output = literals and copies
  // of B (the extents concatenated) as `ops` says; `encode(B)` gives the
  // payload, which must decode back (and pass `check`, when given).
  template <typename Encode, typename Check>
  bool add_frame(const char* name, const std::vector<PatchExtent>& ext, const std::vector<PatchOp>& ops,
                 const std::string& lit, uint64_t base_offset, Encode encode, Check check, std::string& out) {
    std::string B;
    for (auto& e : ext) B += b.base.substr(e.offset, e.len);
    std::string o;
    size_t lp = 0;
    for (auto& op : ops) {
      o += lit.substr(lp, op.lit);
      lp += op.lit;
      o += B.substr(op.src, op.copy);
    }
    const std::string pay = encode(B);
    Frame fr;
    fr.file = static_cast<uint32_t>(b.m.out_files.size());
    fr.out_offset = out.size();
    fr.out_len = static_cast<uint32_t>(o.size());
    fr.data_offset = b.data.size();
    fr.data_len = static_cast<uint32_t>(pay.size());
    fr.codec = Codec::patch;
    fr.dtype = fr.base_dtype = DType::U8;
    if (!ext.empty()) {
      fr.base_file = 0;
      fr.base_offset = base_offset;
      uint64_t hi = 0;
      for (auto& e : ext) hi = std::max<uint64_t>(hi, e.offset + e.len);
      fr.base_len = static_cast<uint32_t>(hi - fr.base_offset);
    }
    fr.hash = xxh128(o.data(), o.size());
    std::vector<uint8_t> dec(o.size());
    if (!decode_frame(fr, reinterpret_cast<const uint8_t*>(pay.data()), reinterpret_cast<const uint8_t*>(B.data()), dec.data()).ok() ||
        std::memcmp(dec.data(), o.data(), o.size()) != 0 || !check(pay)) {
      std::fprintf(stderr, "%s: does not decode back\n", name);
      return false;
    }
    b.data += pay;
    b.m.frames.push_back(fr);
    out += o;
    return true;
  }
  // An output file of the frames `add(out)` appends.
  template <typename AddFrames>
  bool add_file(const std::string& name, AddFrames add) {
    OutFile of;
    of.name = name;
    of.first_frame = static_cast<uint32_t>(b.m.frames.size());
    std::string out;
    if (!add(out)) return false;
    add_out_file(b, of, out, expected);
    return true;
  }
};

int write_patch_golden(const std::string& root) {
  PatchGolden g;
  if (!g.open(root)) return 1;
  Built& b = g.b;
  struct PatchCase {
    const char* name;
    std::vector<PatchExtent> ext;
    std::vector<PatchOp> ops;  // src in B coordinates
    std::string lit;
    int level;  // 0: raw streams
    int line_ops = 0;  // encode_patch's line_ops
  };
  // Literals that repeat base bytes (so B as the zstd prefix pays) with a few changes.
  std::string echo = b.base.substr(300, 400);
  for (size_t i = 0; i < echo.size(); i += 37) echo[i] = 'Z';
  const PatchCase pcs[] = {
      // Two extents; a forward move, a backward move (negative), a copy crossing the extent boundary.
      {"patch-raw", {{16, 200}, {600, 300}}, {{5, 0, 50}, {3, 210, 40}, {0, 100, 150}, {7, 40, 0}}, "hello, world!!!", 0},
      {"patch-zstd", {{0, 1000}}, {{400, 0, 300}, {0, 700, 300}}, echo, 3},
      {"patch-nobase", {}, {{64, 0, 0}}, std::string(64, 'q'), 0},
      // Line ops (method bit 3). base.bin has one '\n', at 201: extents that end
      // there (they may overlap) make B's lines start at 0, 102, 154, 166 (K = 4,
      // |B| = 466). A copy of line 2 after 4 literals, lines 0-1 (move -3), bytes
      // 110..130 (a byte op), line 3 from mid-line (the cursor's index rounds
      // up to 2: move +1), 3 trailing literals.
      {"patch-lines", {{100, 102}, {150, 52}, {190, 12}, {202, 300}},
       {{4, 154, 12}, {0, 0, 154}, {0, 110, 20}, {0, 166, 300}, {3, 466, 0}}, "line!!!", 0, 1},
  };
  auto add_file = [&](const std::string& name, const std::vector<const PatchCase*>& frames) -> bool {
    return g.add_file(name, [&](std::string& out) {
      for (auto* c : frames) {
        auto encode = [&](const std::string& B) {
          return encode_patch(c->ext, c->ops, c->lit, reinterpret_cast<const uint8_t*>(B.data()), B.size(), c->level,
                              true, c->line_ops);
        };
        const uint64_t base_offset = c->ext.empty() ? 0 : c->ext.front().offset;
        if (!g.add_frame(c->name, c->ext, c->ops, c->lit, base_offset, encode, [](const std::string&) { return true; }, out))
          return false;
      }
      return true;
    });
  };
  for (auto& c : pcs)
    if (!add_file(std::string(c.name) + ".bin", {&c})) return 1;
  if (!add_file("patch-two-frames.bin", {&pcs[0], &pcs[2]})) return 1;
  write_delta(root + "/valid-patch", serialize_manifest(b.m), b.data, g.expected);
  std::printf("wrote %s/valid-patch\n", root.c_str());

  const std::string corrupt = "error corrupt read\n";
  auto one = [&](const std::string& file) { return subset(b, {file}); };
  {
    // Payload cut by one byte (the raw literal stream is one byte short).
    auto [m, dat] = one("patch-raw.bin");
    m.frames[0].data_len -= 1;
    write_delta(root + "/invalid/patch-truncated", serialize_manifest(m), dat.substr(0, dat.size() - 1), corrupt);
  }
  {
    // Extent 1 moved past the frame's base range.
    auto [m, dat] = one("patch-raw.bin");
    const uint64_t off = 1000;
    std::memcpy(&dat[m.frames[0].data_offset + 4 + 12], &off, 8);
    write_delta(root + "/invalid/patch-extent-outside", serialize_manifest(m), dat, corrupt);
  }
  {
    // The last op's copy length (low-byte plane of the third array) made 200: past the end of the frame.
    auto [m, dat] = one("patch-raw.bin");
    const size_t h = m.frames[0].data_offset + 4 + 12 * 2;
    uint32_t nops;
    std::memcpy(&nops, &dat[h + 1], 4);
    const size_t ops_at = h + 17;
    // Arrays: nops low bytes + nops LEB128 high parts each (all high parts are one byte here).
    dat[ops_at + 2 * (2 * nops) + (nops - 1)] = static_cast<char>(200);
    write_delta(root + "/invalid/patch-copy-past-frame", serialize_manifest(m), dat, corrupt);
  }
  std::printf("wrote %s/invalid/patch-*\n", root.c_str());
  return 0;
}

// Adds valid-words/ (codec 10 with word-coded literals, method bit 4: raw op
// streams, so spec_decode.py decodes them without zstd) against the EXISTING
// base/base.bin and the invalid/words-* cases, leaving every older golden
// file as it is (`tenpak_golden_gen tests/golden --words-only`). With
// `stat`, the same cases with static word-coded literals (method bit 6) as
// valid-wrans/ and invalid/wrans-* (`--wrans-only`).
int write_words_golden(const std::string& root, bool stat = false) {
  const std::string pre = stat ? "wrans" : "words";
  const uint8_t bit = stat ? 64 : 16;
  PatchGolden g;
  if (!g.open(root)) return 1;
  Built& b = g.b;
  // Text with repeated words, CRLF, digits, invalid UTF-8, a word and a
  // separator run longer than a token (64 bytes), no final newline.
  std::string text = "the cat sat on the mat.\r\nthe dog sat on the log; the cat ran!\n";
  text += "id 12345, id 12346, id 12345\n\xff\xfe caf\xc3\xa9 na\xc3\xafve \xc3\x28 the cat\n";
  text += std::string(70, 'w') + std::string(70, ' ') + "end of the text";
  std::string text2 = "{\"q\": \"what is two and two?\", \"a\": \"four\"}\n{\"q\": \"what is two?\", \"a\": \"two\"}";
  const uint32_t tl = static_cast<uint32_t>(text.size());
  struct WordCase {
    std::string name;
    std::vector<PatchExtent> ext;
    std::vector<PatchOp> ops;  // src in B coordinates
    std::string lit;
  };
  // B larger than the model's 256 KiB sample: 230 overlapping extents of the
  // whole base (|B| = 230 x 1184 bytes), so the model primes from 64 pieces.
  std::vector<PatchExtent> many(230, PatchExtent{0, static_cast<uint32_t>(b.base.size())});
  const WordCase wcs[] = {
      {pre + "-text", {{0, 600}}, {{40, 0, 0}, {0, 100, 50}, {tl - 40, 150, 0}}, text},
      {pre + "-nobase", {}, {{static_cast<uint32_t>(text2.size()), 0, 0}}, text2},
      {pre + "-sampled", many, {{tl, 0, 0}, {0, 5, 20}}, text},
  };
  auto add_file = [&](const std::string& name, const std::vector<const WordCase*>& frames) -> bool {
    return g.add_file(name, [&](std::string& out) {
      for (auto* c : frames) {
        auto encode = [&](const std::string& B) {
          return encode_patch(c->ext, c->ops, c->lit, reinterpret_cast<const uint8_t*>(B.data()), B.size(), 0, false, 0,
                              stat ? 3 : 2);
        };
        // The word-coded method bit (16, or 64) must be what the encoder chose.
        auto words = [&](const std::string& pay) { return (static_cast<uint8_t>(pay[4 + 12 * c->ext.size()]) & (16 | 64)) == bit; };
        if (!g.add_frame(c->name.c_str(), c->ext, c->ops, c->lit, 0, encode, words, out)) return false;
      }
      return true;
    });
  };
  for (auto& c : wcs)
    if (!add_file(c.name + ".bin", {&c})) return 1;
  if (!add_file(pre + "-two-frames.bin", {&wcs[0], &wcs[1]})) return 1;
  write_delta(root + "/valid-" + pre, serialize_manifest(b.m), b.data, g.expected);
  std::printf("wrote %s/valid-%s\n", root.c_str(), pre.c_str());

  const std::string corrupt = "error corrupt read\n";
  auto one = [&](const std::string& file) { return subset(b, {file}); };
  const std::string text_bin = pre + "-text.bin", inv = root + "/invalid/" + pre;
  {
    // The word stream one byte short: the range (rANS) decoder would read past it.
    auto [m, dat] = one(text_bin);
    m.frames[0].data_len -= 1;
    write_delta(inv + "-truncated", serialize_manifest(m), dat.substr(0, dat.size() - 1), corrupt);
  }
  {
    // One byte after the word stream: the decoder must read it exactly.
    auto [m, dat] = one(text_bin);
    m.frames[0].data_len += 1;
    write_delta(inv + "-trailing-byte", serialize_manifest(m), dat + '\0', corrupt);
  }
  {
    // Method bits 2 (zstd literals) and 16 or 64 (word-coded) together.
    auto [m, dat] = one(text_bin);
    dat[m.frames[0].data_offset + 4 + 12] = static_cast<char>(bit | 2);
    write_delta(inv + "-with-zstd-bit", serialize_manifest(m), dat, corrupt);
  }
  {
    // The literal stream codes one byte more than lit_raw, in the last
    // token ("text" -> "texts"): header, ops and output as the valid frame,
    // the stream read to its end with the coder's final state. Corrupt
    // (FORMAT.md: a token past lit_raw), not cut to fit: a reader that
    // clipped the token would return the valid file's bytes.
    auto [m, dat] = one(text_bin);
    const WordCase& c = wcs[0];
    std::vector<PatchOp> ops = c.ops;
    ops.back().lit += 1;
    std::string B;
    for (auto& e : c.ext) B += b.base.substr(e.offset, e.len);
    std::string pay = encode_patch(c.ext, ops, c.lit + "s", reinterpret_cast<const uint8_t*>(B.data()), B.size(), 0,
                                   false, 0, stat ? 3 : 2);
    const size_t h = 4 + 12 * c.ext.size();
    uint32_t nops, lit_raw;
    std::memcpy(&nops, &pay[h + 1], 4);
    std::memcpy(&lit_raw, &pay[h + 13], 4);
    // Raw op stream (level 0): the literal lengths' low bytes come first.
    if ((static_cast<uint8_t>(pay[h]) & (1 | 16 | 64)) != bit || lit_raw != c.lit.size() + 1 ||
        static_cast<uint8_t>(pay[h + 17 + nops - 1]) == 0 || m.frames.size() != 1 ||
        m.frames[0].data_offset + m.frames[0].data_len != dat.size())
      return 1;
    lit_raw -= 1;
    std::memcpy(&pay[h + 13], &lit_raw, 4);
    pay[h + 17 + nops - 1] = static_cast<char>(pay[h + 17 + nops - 1] - 1);
    dat = dat.substr(0, m.frames[0].data_offset) + pay;
    m.frames[0].data_len = static_cast<uint32_t>(pay.size());
    write_delta(inv + "-token-past-literals", serialize_manifest(m), dat, corrupt);
  }
  if (stat) {
    {
      // Both word bits (16 and 64).
      auto [m, dat] = one(text_bin);
      dat[m.frames[0].data_offset + 4 + 12] = static_cast<char>(16 | 64);
      write_delta(inv + "-with-words-bit", serialize_manifest(m), dat, corrupt);
    }
    {
      // The rANS state's first two bytes made 0: an initial state under 2^23.
      auto [m, dat] = one(text_bin);
      const size_t h = m.frames[0].data_offset + 4 + 12;
      uint32_t ops_stored;
      std::memcpy(&ops_stored, &dat[h + 9], 4);
      dat[h + 17 + ops_stored] = dat[h + 18 + ops_stored] = 0;
      write_delta(inv + "-bad-state", serialize_manifest(m), dat, corrupt);
    }
    {
      // The stream's last byte with its low bit flipped: read to its end,
      // but the final states are not both 2^23 (a reader that checked only
      // the bytes read passed every other golden file).
      auto [m, dat] = one(text_bin);
      if (m.frames.size() != 1 || m.frames[0].data_offset + m.frames[0].data_len != dat.size()) return 1;
      dat.back() = static_cast<char>(dat.back() ^ 1);
      write_delta(inv + "-final-state", serialize_manifest(m), dat, corrupt);
    }
  }
  std::printf("wrote %s/invalid/%s-*\n", root.c_str(), pre.c_str());
  return 0;
}

// Adds valid-wrans-ids/ (`tenpak_golden_gen tests/golden --wrans-ids-only`),
// leaving every other golden file as it is: static word-coded literals
// (method bit 6) whose ids reach the fallback's raw bits in two chunks.
// valid-wrans/'s vocabularies stay under 512 ids (base.bin has ~280 distinct
// words), so no id there had more than 8 bits under its leading one and a
// reader taking the chunks longest first (8 then the rest, instead of the
// rest then 8) passed every golden file (found in review7b). Here, with no
// base, 700 distinct words are spelled, then words of ids 700, 600, 513,
// 512, 257 and 1 are repeated (each an escape and a bit length: ids added
// while decoding are in no context table).
int write_wrans_ids_golden(const std::string& root) {
  PatchGolden g;
  if (!g.open(root)) return 1;
  std::string lit;
  for (int i = 0; i < 700; ++i) lit += "w" + std::to_string(i) + (i % 10 == 9 ? "\n" : " ");
  for (int i : {699, 599, 512, 511, 256, 0, 699}) lit += "w" + std::to_string(i) + " ";
  const std::vector<PatchOp> ops = {{static_cast<uint32_t>(lit.size()), 0, 0}};
  if (!g.add_file("wrans-ids.bin", [&](std::string& out) {
        auto encode = [&](const std::string&) { return encode_patch({}, ops, lit, nullptr, 0, 0, false, 0, 3); };
        auto stat = [&](const std::string& pay) { return (static_cast<uint8_t>(pay[4]) & (16 | 64)) == 64; };
        return g.add_frame("wrans-ids", {}, ops, lit, 0, encode, stat, out);
      }))
    return 1;
  write_delta(root + "/valid-wrans-ids", serialize_manifest(g.b.m), g.b.data, g.expected);
  std::printf("wrote %s/valid-wrans-ids\n", root.c_str());
  return 0;
}

// Adds valid-approx/ (codec 11, approx: lossy frames) against the EXISTING
// base/base.bin and the invalid/approx-* cases. Every sub-method (sparse,
// sign, low-rank with float32, float16 and 2..8-bit factors, a frame that
// starts mid-row), every output dtype (F32, F16, BF16, and BF16 from an F32
// base); raw bodies (spec_decode.py decodes them without zstd) and one zstd
// body. Base ranges are chosen where the bytes read as finite floats of
// magnitude < 1000, so the float arithmetic stays away from NaN and overflow.
// rc_only: only valid-grouped-rc/ (sub-method 4, added later; the files of
// valid-approx/ are left as they are) and the invalid/approx-rc-* cases.
int write_approx_golden(const std::string& root, bool rc_only = false) {
  Built b;
  b.base = read_file(root + "/base/base.bin");
  if (b.base.size() < 1024) { std::fprintf(stderr, "no base/base.bin under %s\n", root.c_str()); return 1; }
  Rng g{rc_only ? 14u : 11u};
  BaseFile bf;
  bf.name = "base.bin";
  bf.size = b.base.size();
  bf.sha256 = sha256(b.base.data(), b.base.size());
  b.m.base_files.push_back(bf);
  std::string expected = "ok\n";
  // First offset (multiple of the element size) of n elements of dt that are finite with |x| < 1000.
  auto find_range = [&](DType dt, size_t n) -> int64_t {
    const size_t w = dtype_size(dt);
    for (size_t off = 0; off + n * w <= b.base.size(); off += w) {
      std::vector<float> f(n);
      convert_dtype(reinterpret_cast<const uint8_t*>(b.base.data()) + off, dt, n, DType::F32,
                    reinterpret_cast<uint8_t*>(f.data()));
      bool ok = true;
      for (float x : f) ok = ok && std::isfinite(x) && std::fabs(x) < 1000;
      if (ok) return static_cast<int64_t>(off);
    }
    return -1;
  };
  struct ApproxCase {
    std::string name;
    DType dt, bdt;
    ApproxTensor t;
    std::vector<uint32_t> frame_elems;  // frame cuts in elements (sum = rows * cols)
    int level;                          // 0: raw body
  };
  auto lowrank = [&](uint64_t rows, uint64_t cols, std::vector<uint8_t> bits) {
    ApproxTensor t;
    t.method = ApproxMethod::lowrank;
    t.rows = rows;
    t.cols = cols;
    t.rank = static_cast<uint32_t>(bits.size());
    t.bits = bits;
    for (uint64_t i = 0; i < rows * t.rank; ++i) t.u.push_back(static_cast<float>(0.05 * g.sym()));
    for (uint64_t i = 0; i < t.rank * cols; ++i) t.v.push_back(static_cast<float>(0.05 * g.sym()));
    return t;
  };
  std::vector<ApproxCase> cs;
  if (!rc_only) {
    ApproxTensor t;
    t.method = ApproxMethod::sparse;
    t.rows = 10;
    t.cols = 15;
    for (uint64_t e = 0; e < 150; ++e)
      if (g.uni() < 0.15 || e == 0 || e == 149) { t.pos.push_back(e); t.val.push_back(static_cast<float>(0.01 * g.sym())); }
    std::sort(t.pos.begin(), t.pos.end());
    t.pos.erase(std::unique(t.pos.begin(), t.pos.end()), t.pos.end());
    t.val.resize(t.pos.size(), 0.003f);
    // A gap of 128 needs a two-byte LEB128.
    t.pos.erase(std::remove_if(t.pos.begin(), t.pos.end(), [](uint64_t e) { return e > 20 && e < 149; }), t.pos.end());
    t.val.resize(t.pos.size());
    cs.push_back({"approx-sparse-F32", DType::F32, DType::F32, t, {150}, 0});
    cs.push_back({"approx-sparse-F16-zstd", DType::F16, DType::F16, t, {90, 60}, 19});
  }
  if (!rc_only) {
    ApproxTensor t;
    t.method = ApproxMethod::sign;
    t.rows = 3;
    t.cols = 41;  // 123 elements: padding bits in the last byte of each frame
    t.scale = 0.0123f;
    for (uint64_t e = 0; e < 123; ++e) t.negative.push_back(g.next() & 1);
    cs.push_back({"approx-sign-BF16", DType::BF16, DType::BF16, t, {123}, 0});
    cs.push_back({"approx-sign-BF16-from-F32", DType::BF16, DType::F32, t, {60, 63}, 0});
  }
  if (!rc_only) {
    cs.push_back({"approx-lowrank-F32", DType::F32, DType::F32, lowrank(12, 16, {0, 0, 0}), {192}, 0});
    cs.push_back({"approx-lowrank-F16-mixed", DType::F16, DType::F16, lowrank(12, 12, {8, 16, 3, 2, 5}), {50, 60, 34}, 0});
    cs.push_back({"approx-lowrank-BF16-bits", DType::BF16, DType::BF16, lowrank(9, 10, {7, 6, 4, 8, 2}), {90}, 0});
  }
  // Sub-method 3 (grouped; added later: the cases above are unchanged): a
  // ternary grid (2 bits, zero2 2) with a float16 scale per row and group of
  // 5 columns, F16 in three frames starting mid-row; a 1-bit grid (±s/2) with
  // one scale per frame, BF16 from an F32 base in two frames.
  auto grouped = [&](uint64_t rows, uint64_t cols, uint8_t bits, uint8_t zero2, uint32_t group) {
    ApproxTensor t;
    t.method = ApproxMethod::grouped;
    t.rows = rows;
    t.cols = cols;
    t.qbits = bits;
    t.zero2 = zero2;
    t.group = group;
    if (bits <= 2) {
      for (uint64_t e = 0; e < rows * cols; ++e) t.codes.push_back(static_cast<uint8_t>(g.next() % (bits == 2 ? 3 : 2)));
    } else {
      // Wider grids: codes concentrated near the middle, as GPTQ's on a change are.
      for (uint64_t e = 0; e < rows * cols; ++e) {
        const double x = (g.sym() + g.sym() + g.sym()) / 3 * ((1u << bits) / 2.0) + (1u << bits) / 2.0;
        t.codes.push_back(static_cast<uint8_t>(std::clamp(x, 0.0, double((1u << bits) - 1))));
      }
    }
    const uint64_t ns = group ? rows * ((cols + group - 1) / group) : 1;
    for (uint64_t i = 0; i < ns; ++i) {
      float f = static_cast<float>(0.001 + 0.02 * g.uni()), h;
      uint8_t b2[2];
      convert_dtype(reinterpret_cast<const uint8_t*>(&f), DType::F32, 1, DType::F16, b2);
      convert_dtype(b2, DType::F16, 1, DType::F32, reinterpret_cast<uint8_t*>(&h));
      t.scales.push_back(h);
    }
    return t;
  };
  if (!rc_only) {
    cs.push_back({"approx-grouped-F16-ternary", DType::F16, DType::F16, grouped(8, 12, 2, 2, 5), {30, 41, 25}, 0});
    cs.push_back({"approx-grouped-BF16-1bit-from-F32", DType::BF16, DType::F32, grouped(5, 13, 1, 1, 0), {33, 32}, 0});
  } else {
    // Sub-method 4 (grouped_rc): the same grids range-coded: ternary F16 with
    // a scale per row and 5 columns in three frames starting mid-row (so the
    // contexts of a frame's first rows have no row above); 1-bit BF16 from an
    // F32 base, one scale, two frames; 3-bit F32 (8 levels, z2 7) one frame,
    // and 8-bit F32 (z2 255, every node of the tree) one frame.
    auto rc = [&](ApproxTensor t) { t.method = ApproxMethod::grouped_rc; return t; };
    cs.push_back({"approx-rc-F16-ternary", DType::F16, DType::F16, rc(grouped(8, 12, 2, 2, 5)), {30, 41, 25}, 0});
    cs.push_back({"approx-rc-BF16-1bit-from-F32", DType::BF16, DType::F32, rc(grouped(5, 13, 1, 1, 0)), {33, 32}, 0});
    cs.push_back({"approx-rc-F32-3bit", DType::F32, DType::F32, rc(grouped(6, 20, 3, 7, 0)), {120}, 0});
    cs.push_back({"approx-rc-F32-8bit", DType::F32, DType::F32, rc(grouped(4, 9, 8, 255, 3)), {36}, 0});
  }
  for (auto& c : cs) {
    const size_t w = dtype_size(c.dt), bw = dtype_size(c.bdt);
    const uint64_t count = c.t.rows * c.t.cols;
    const int64_t at = find_range(c.bdt, count);
    if (at < 0) { std::fprintf(stderr, "%s: no usable base range\n", c.name.c_str()); return 1; }
    OutFile of;
    of.name = c.name + ".bin";
    of.first_frame = static_cast<uint32_t>(b.m.frames.size());
    std::string out;
    uint64_t e0 = 0;
    for (uint32_t ne : c.frame_elems) {
      auto pay = encode_approx_frame(c.t, e0, ne, c.level);
      if (!pay.ok()) { std::fprintf(stderr, "%s: %s\n", c.name.c_str(), pay.status().message().c_str()); return 1; }
      Frame fr = element_frame(b, Codec::approx, c.dt, w, e0, ne, pay->size());
      set_base_range(fr, c.bdt, bw, static_cast<uint64_t>(at), e0, ne);
      std::vector<uint8_t> dec(fr.out_len);
      Status st = decode_frame(fr, reinterpret_cast<const uint8_t*>(pay->data()),
                               reinterpret_cast<const uint8_t*>(b.base.data()) + fr.base_offset, dec.data());
      if (!st.ok()) { std::fprintf(stderr, "%s: %s\n", c.name.c_str(), st.message().c_str()); return 1; }
      fr.hash = xxh128(dec.data(), dec.size());
      out.append(reinterpret_cast<const char*>(dec.data()), dec.size());
      b.data += *pay;
      b.m.frames.push_back(fr);
      e0 += ne;
    }
    add_out_file(b, of, out, expected);
  }
  const std::string corrupt = "error corrupt read\n";
  auto one = [&](const std::string& file) { return subset(b, {file}); };
  if (rc_only) {
    write_delta(root + "/valid-grouped-rc", serialize_manifest(b.m), b.data, expected);
    {
      // The range-coded stream one byte short (raw length and frame length with it).
      auto [m, dat] = one("approx-rc-F32-3bit.bin");
      m.frames[0].data_len -= 1;
      dat = dat.substr(0, dat.size() - 1);
      uint32_t raw;
      std::memcpy(&raw, &dat[m.frames[0].data_offset + 2], 4);
      --raw;
      std::memcpy(&dat[m.frames[0].data_offset + 2], &raw, 4);
      write_delta(root + "/invalid/approx-rc-truncated", serialize_manifest(m), dat, corrupt);
    }
    {
      // One byte after the range-coded stream: decodes to the same codes, refused as padded.
      auto [m, dat] = one("approx-rc-F16-ternary.bin");
      const Frame f = m.frames[0];
      std::string pay = dat.substr(f.data_offset, f.data_len) + '\0';
      uint32_t raw;
      std::memcpy(&raw, &pay[2], 4);
      ++raw;
      std::memcpy(&pay[2], &raw, 4);
      std::string nd = dat.substr(0, f.data_offset) + pay + dat.substr(f.data_offset + f.data_len);
      m.frames[0].data_len += 1;
      for (size_t k = 1; k < m.frames.size(); ++k) m.frames[k].data_offset += 1;
      write_delta(root + "/invalid/approx-rc-trailing-byte", serialize_manifest(m), nd, corrupt);
    }
    std::printf("wrote %s/valid-grouped-rc and invalid/approx-rc-*\n", root.c_str());
    return 0;
  }
  write_delta(root + "/valid-approx", serialize_manifest(b.m), b.data, expected);
  std::printf("wrote %s/valid-approx\n", root.c_str());

  {
    // Payload one byte short: the raw body differs from its stated length.
    auto [m, dat] = one("approx-lowrank-F32.bin");
    m.frames[0].data_len -= 1;
    write_delta(root + "/invalid/approx-truncated", serialize_manifest(m), dat.substr(0, dat.size() - 1), corrupt);
  }
  {
    // Sub-method byte 255 (unknown; was 3 until sub-method 3 existed, the file patched in place).
    auto [m, dat] = one("approx-sign-BF16.bin");
    dat[m.frames[0].data_offset] = static_cast<char>(255);
    write_delta(root + "/invalid/approx-bad-method", serialize_manifest(m), dat, corrupt);
  }
  {
    // A padding bit of the sign bits set (123 elements: bits 123..127 of the last byte).
    auto [m, dat] = one("approx-sign-BF16.bin");
    const size_t last = m.frames[0].data_offset + m.frames[0].data_len - 1;
    dat[last] = static_cast<char>(static_cast<uint8_t>(dat[last]) | 0x80);
    write_delta(root + "/invalid/approx-padding", serialize_manifest(m), dat, corrupt);
  }
  {
    // A factor bit width of 9.
    auto [m, dat] = one("approx-lowrank-BF16-bits.bin");
    dat[m.frames[0].data_offset + 6 + 12] = 9;
    write_delta(root + "/invalid/approx-bad-bits", serialize_manifest(m), dat, corrupt);
  }
  {
    // A sparse position past the frame (count 1, position 5000).
    auto [m, dat] = one("approx-sparse-F32.bin");
    std::string pay;
    pay.push_back(0);
    pay.push_back(0);
    const uint32_t raw = 4 + 2 + 4;
    pay.append(reinterpret_cast<const char*>(&raw), 4);
    const uint32_t k = 1;
    pay.append(reinterpret_cast<const char*>(&k), 4);
    pay.push_back(static_cast<char>(0x88));
    pay.push_back(static_cast<char>(0x27));  // 5000
    const float v = 0.5f;
    pay.append(reinterpret_cast<const char*>(&v), 4);
    m.frames[0].data_offset = dat.size();
    m.frames[0].data_len = static_cast<uint32_t>(pay.size());
    write_delta(root + "/invalid/approx-position-past-frame", serialize_manifest(m), dat + pay, corrupt);
  }
  {
    // A padding bit of the grouped codes set (1 bit x 33 elements: bits 33..39 of the last byte).
    auto [m, dat] = one("approx-grouped-BF16-1bit-from-F32.bin");
    const size_t last = m.frames[0].data_offset + m.frames[0].data_len - 1;
    dat[last] = static_cast<char>(static_cast<uint8_t>(dat[last]) | 0x80);
    write_delta(root + "/invalid/approx-grouped-padding", serialize_manifest(m), dat, corrupt);
  }
  std::printf("wrote %s/invalid/approx-*\n", root.c_str());
  return 0;
}

// Adds valid-lowrank/ (codec 12, lowrank_lanes: lossless frames, codec 11's
// low-rank prediction + a sub_lanes residual) against the EXISTING
// base/base.bin and the invalid/lowrank-* cases. Each fine-tune is a
// "merged adapter": base + the product of true factors, summed from the last
// component down with fused multiply-adds (not codec 11's order; F16/BF16:
// the product rounded to the dtype before the addition), so the residual is
// never empty; the stored factors are the true ones at float32,
// float16 or 3 bits. F32 (12 x 16, 3-bit factors) one frame; F16 (12 x 12) in three frames
// starting mid-row (float16 factors); BF16 (10 x 12) from an F32 base in two
// frames, float32 factors (U of five values), the prediction body zstd-compressed.
int write_lowrank_golden(const std::string& root) {
  Built b;
  b.base = read_file(root + "/base/base.bin");
  if (b.base.size() < 1024) { std::fprintf(stderr, "no base/base.bin under %s\n", root.c_str()); return 1; }
  Rng g{12};
  BaseFile bf;
  bf.name = "base.bin";
  bf.size = b.base.size();
  bf.sha256 = sha256(b.base.data(), b.base.size());
  b.m.base_files.push_back(bf);
  std::string expected = "ok\n";
  struct LrCase {
    std::string name;
    DType dt, bdt;
    uint64_t rows, cols;
    uint32_t rank;
    uint8_t bits;
    std::vector<uint32_t> frame_elems;
    int level;  // 0: raw prediction body
  };
  const std::vector<LrCase> cs = {
      {"lowrank-F32", DType::F32, DType::F32, 12, 16, 3, 3, {192}, 0},
      {"lowrank-F16-frames", DType::F16, DType::F16, 12, 12, 2, 16, {50, 60, 34}, 0},
      {"lowrank-BF16-from-F32-zstd", DType::BF16, DType::F32, 10, 12, 4, 0, {55, 65}, 19},
  };
  for (auto& c : cs) {
    const size_t w = dtype_size(c.dt), bw = dtype_size(c.bdt);
    const uint64_t count = c.rows * c.cols;
    // First base range whose elements read as finite floats of magnitude below 1000.
    int64_t at = -1;
    std::vector<float> bvals(count);
    for (size_t off = 0; off + count * bw <= b.base.size() && at < 0; off += bw) {
      convert_dtype(reinterpret_cast<const uint8_t*>(b.base.data()) + off, c.bdt, count, DType::F32,
                    reinterpret_cast<uint8_t*>(bvals.data()));
      bool ok = true;
      for (float x : bvals) ok = ok && std::isfinite(x) && std::fabs(x) < 1000;
      if (ok) at = static_cast<int64_t>(off);
    }
    if (at < 0) { std::fprintf(stderr, "%s: no usable base range\n", c.name.c_str()); return 1; }
    // B in the output dtype, as a reader sees it, widened to float32.
    std::string bconv(count * w, '\0');
    convert_dtype(reinterpret_cast<const uint8_t*>(b.base.data()) + at, c.bdt, count, c.dt,
                  reinterpret_cast<uint8_t*>(bconv.data()));
    convert_dtype(reinterpret_cast<const uint8_t*>(bconv.data()), c.dt, count, DType::F32,
                  reinterpret_cast<uint8_t*>(bvals.data()));
    LowRankFactors f;
    f.t.method = ApproxMethod::lowrank;
    f.t.rows = c.rows;
    f.t.cols = c.cols;
    f.t.rank = c.rank;
    f.t.bits.assign(c.rank, c.bits);
    // The zstd case: U from five values, so that zstd shrinks the body.
    for (uint64_t i = 0; i < c.rows * c.rank; ++i)
      f.t.u.push_back(c.level ? 0.25f * static_cast<float>(static_cast<int>(g.next() % 5) - 2) : static_cast<float>(0.7 * g.sym()));
    for (uint64_t i = 0; i < c.rank * c.cols; ++i) f.t.v.push_back(static_cast<float>(0.7 * g.sym()));
    std::vector<float> merged(count);
    for (uint64_t e = 0; e < count; ++e) {
      const uint64_t r = e / c.cols, col = e % c.cols;
      float acc = 0;
      for (uint32_t j = c.rank; j-- > 0;) acc = std::fma(f.t.u[r * c.rank + j], f.t.v[j * c.cols + col], acc);
      // F16/BF16: the product rounded to the weights' dtype before it is
      // added (a merge done in the model's dtype: two roundings).
      if (c.dt != DType::F32) {
        uint16_t h;
        convert_dtype(reinterpret_cast<const uint8_t*>(&acc), DType::F32, 1, c.dt, reinterpret_cast<uint8_t*>(&h));
        convert_dtype(reinterpret_cast<const uint8_t*>(&h), c.dt, 1, DType::F32, reinterpret_cast<uint8_t*>(&acc));
      }
      merged[e] = bvals[e] + acc;
    }
    std::string ft(count * w, '\0');
    convert_dtype(reinterpret_cast<const uint8_t*>(merged.data()), DType::F32, count, c.dt,
                  reinterpret_cast<uint8_t*>(ft.data()));
    OutFile of;
    of.name = c.name + ".bin";
    of.first_frame = static_cast<uint32_t>(b.m.frames.size());
    uint64_t e0 = 0;
    size_t mispredicted = 0;
    for (uint32_t ne : c.frame_elems) {
      const auto* out = reinterpret_cast<const uint8_t*>(ft.data()) + e0 * w;
      auto pay = encode_lowrank_frame(f, e0, out, reinterpret_cast<const uint8_t*>(bconv.data()) + e0 * w, ne * w, c.dt,
                                      c.level);
      if (!pay.ok()) { std::fprintf(stderr, "%s: %s\n", c.name.c_str(), pay.status().message().c_str()); return 1; }
      if (c.level > 0 && (*pay)[5] != 1) { std::fprintf(stderr, "%s: prediction body not zstd\n", c.name.c_str()); return 1; }
      Frame fr = element_frame(b, Codec::lowrank_lanes, c.dt, w, e0, ne, pay->size());
      set_base_range(fr, c.bdt, bw, static_cast<uint64_t>(at), e0, ne);
      std::vector<uint8_t> dec(fr.out_len);
      Status st = decode_frame(fr, reinterpret_cast<const uint8_t*>(pay->data()),
                               reinterpret_cast<const uint8_t*>(b.base.data()) + fr.base_offset, dec.data());
      if (!st.ok() || std::memcmp(dec.data(), out, fr.out_len) != 0) {
        std::fprintf(stderr, "%s: does not round-trip: %s\n", c.name.c_str(), st.message().c_str());
        return 1;
      }
      uint32_t a;
      std::memcpy(&a, pay->data(), 4);
      std::vector<uint8_t> pred(fr.out_len);
      if (!decode_approx(reinterpret_cast<const uint8_t*>(pay->data()) + 4, a,
                         reinterpret_cast<const uint8_t*>(bconv.data()) + e0 * w, fr.out_len, c.dt, pred.data())
               .ok())
        return 1;
      for (uint32_t i = 0; i < ne; ++i) mispredicted += std::memcmp(pred.data() + i * w, out + i * w, w) != 0;
      fr.hash = xxh128(out, fr.out_len);
      b.data += *pay;
      b.m.frames.push_back(fr);
      e0 += ne;
    }
    if (mispredicted == 0) { std::fprintf(stderr, "%s: empty residual; change the inputs\n", c.name.c_str()); return 1; }
    add_out_file(b, of, ft, expected);
    std::printf("%s: %zu of %llu elements corrected by the residual\n", c.name.c_str(), mispredicted,
                static_cast<unsigned long long>(count));
  }
  write_delta(root + "/valid-lowrank", serialize_manifest(b.m), b.data, expected);
  std::printf("wrote %s/valid-lowrank\n", root.c_str());

  const std::string corrupt = "error corrupt read\n";
  auto one = [&](const std::string& file) { return subset(b, {file}); };
  {
    // Payload one byte short: the residual's length no longer matches its streams.
    auto [m, dat] = one("lowrank-F32.bin");
    m.frames[0].data_len -= 1;
    write_delta(root + "/invalid/lowrank-truncated", serialize_manifest(m), dat.substr(0, dat.size() - 1), corrupt);
  }
  {
    // The prediction's method byte 1 (sign): a valid codec-11 method, not allowed here.
    auto [m, dat] = one("lowrank-F32.bin");
    dat[m.frames[0].data_offset + 4] = 1;
    write_delta(root + "/invalid/lowrank-not-lowrank", serialize_manifest(m), dat, corrupt);
  }
  {
    // A = data_len - 3: the prediction runs past the payload.
    auto [m, dat] = one("lowrank-F16-frames.bin");
    const uint32_t a = m.frames[0].data_len - 3;
    std::memcpy(&dat[m.frames[0].data_offset], &a, 4);
    write_delta(root + "/invalid/lowrank-length", serialize_manifest(m), dat, corrupt);
  }
  {
    // A valid F32 payload in a frame declared I32 (same width): codec 12 is for floats only.
    auto [m, dat] = one("lowrank-F32.bin");
    m.frames[0].dtype = m.frames[0].base_dtype = DType::I32;
    write_delta(root + "/invalid/lowrank-not-float", serialize_manifest(m), dat, corrupt);
  }
  std::printf("wrote %s/invalid/lowrank-*\n", root.c_str());
  return 0;
}

// invalid/unknown-codec was written with codec kMaxCodec + 1 = 8, now sub_rans:
// the case was refused only because that store frame has no base. Patches
// frame 0's codec byte to kUnknownCodec and re-seals the checksum (reseal), so
// the index is refused for the reason its name says.
int fix_unknown_codec(const std::string& root) {
  const std::string path = root + "/invalid/unknown-codec/" + kIndexFile;
  std::string idx = read_file(path);
  if (idx.size() < 36 + 64 + 8) { std::fprintf(stderr, "cannot read %s\n", path.c_str()); return 1; }
  idx[frame_record_at(idx, 0) + 28] = static_cast<char>(kUnknownCodec);
  write(path, reseal(idx));
  std::printf("patched %s: frame 0 codec = %u\n", path.c_str(), kUnknownCodec);
  return 0;
}

}  // namespace

// Adds valid-compact/ and valid-compact-zstd/: the delta of valid-approx/
// (its tenpak.dat and expected.txt as they are) under a compact index (flags
// 1: raw body; flags 3: zstd body), and the invalid/compact-* cases, leaving
// every older golden file as it is.
int write_compact_golden(const std::string& root) {
  const std::string src = root + "/valid-approx";
  const std::string idx = read_file(src + "/" + kIndexFile), dat = read_file(src + "/" + kDataFile),
                    expected = read_file(src + "/expected.txt");
  auto m = parse_manifest(reinterpret_cast<const uint8_t*>(idx.data()), idx.size(), src);
  if (!m.ok()) { std::fprintf(stderr, "%s\n", m.status().message().c_str()); return 1; }
  auto raw = serialize_manifest_compact(*m, false);
  auto z = serialize_manifest_compact(*m, true);
  if (!raw.ok() || !z.ok()) { std::fprintf(stderr, "compact index refused\n"); return 1; }
  uint32_t zflags;
  std::memcpy(&zflags, z->data() + 12, 4);
  if (zflags != (kIndexCompact | kIndexBodyZstd)) { std::fprintf(stderr, "zstd body not smaller\n"); return 1; }
  write_delta(root + "/valid-compact", *raw, dat, expected);
  write_delta(root + "/valid-compact-zstd", *z, dat, expected);
  const std::string corrupt = "error corrupt open\n";
  {
    std::string b = *raw;  // the head states one byte more than the body holds
    uint32_t len;
    std::memcpy(&len, &b[28], 4);
    ++len;
    std::memcpy(&b[28], &len, 4);
    write_delta(root + "/invalid/compact-body-length", reseal(b), dat, corrupt);
  }
  {
    std::string b = *raw;  // one byte after the frame hashes, counted in the body length
    uint32_t len;
    std::memcpy(&len, &b[28], 4);
    ++len;
    std::memcpy(&b[28], &len, 4);
    b.insert(b.size() - 8, 1, '\0');
    write_delta(root + "/invalid/compact-trailing-byte", reseal(b), dat, corrupt);
  }
  {
    std::string b = *raw;  // flags 2: a zstd body without the compact layout
    const uint32_t f = kIndexBodyZstd;
    std::memcpy(&b[12], &f, 4);
    write_delta(root + "/invalid/compact-flags", reseal(b), dat, corrupt);
  }
  {
    // The first output file's frame count one higher: its frames no longer
    // add up to the frame table (the file ranges must cover nfr exactly).
    Manifest mm = *m;
    std::string b = *raw;
    const size_t at = b.find(mm.out_files[0].name);  // varint length, name, varint size, sha256, mode, count
    size_t k = at + mm.out_files[0].name.size();
    while (static_cast<uint8_t>(b[k]) & 0x80) ++k;  // the size
    ++k;
    k += 32;
    while (static_cast<uint8_t>(b[k]) & 0x80) ++k;  // the mode
    ++k;
    b[k] = static_cast<char>(b[k] + 1);
    write_delta(root + "/invalid/compact-frame-count", reseal(b), dat, corrupt);
  }
  std::printf("wrote %s/valid-compact, valid-compact-zstd and invalid/compact-*\n", root.c_str());
  return 0;
}

// valid-approx/'s index, data and expected lines, the index made compact
// and raw with `record` as its lossy record (false: it was refused).
struct RecordDelta {
  std::string raw, dat, expected;
};
bool approx_with_record(const std::string& root, const std::string& record, RecordDelta& out) {
  const std::string src = root + "/valid-approx";
  const std::string idx = read_file(src + "/" + kIndexFile);
  out.dat = read_file(src + "/" + kDataFile);
  out.expected = read_file(src + "/expected.txt");
  auto m = parse_manifest(reinterpret_cast<const uint8_t*>(idx.data()), idx.size(), src);
  if (!m.ok()) { std::fprintf(stderr, "%s\n", m.status().message().c_str()); return false; }
  m->lossy_record = record;
  auto raw = serialize_manifest_compact(*m, false);
  if (!raw.ok()) { std::fprintf(stderr, "compact index refused\n"); return false; }
  out.raw = std::move(*raw);
  return true;
}

// Adds valid-compact-record/: the delta of valid-approx/ (its tenpak.dat and
// expected.txt as they are) under a raw compact index that carries a lossy
// record (flags 5), and invalid/compact-record-* (all refused when the index
// is opened), leaving every older golden file as it is.
int write_record_golden(const std::string& root) {
  RecordDelta rd;
  if (!approx_with_record(root,
      "{\"format\":\"tenpak.lossy\",\"version\":1,\"lossy\":true,\"method\":\"golden:1\",\"embeddings\":false,"
      "\"lossless_delta_bytes\":4096,\"finetune_bytes\":65536,\"quality\":{\"eval_text\":\"golden.txt\","
      "\"eval_part\":\"whole file\",\"ctx\":256,\"windows\":2,\"scored_tokens\":510,\"ppl_ratio\":1.00567,"
      "\"ppl_delta_pct\":0.567,\"kl_mean\":0.00510234,\"top1_agreement\":0.932}}",
                          rd))
    return 1;
  const std::string& dat = rd.dat;
  write_delta(root + "/valid-compact-record", rd.raw, dat, rd.expected);
  const std::string corrupt = "error corrupt open\n";
  {
    std::string b = rd.raw;  // flags 4: a record without the compact layout
    const uint32_t f = kIndexRecord;
    std::memcpy(&b[12], &f, 4);
    write_delta(root + "/invalid/compact-record-flags", reseal(b), dat, corrupt);
  }
  {
    // The record's last byte cut, body_len one less: its length varint
    // (two bytes, just before the record) states one byte more than is left.
    std::string b = rd.raw;
    b.erase(b.size() - 9, 1);
    uint32_t len;
    std::memcpy(&len, &b[28], 4);
    --len;
    std::memcpy(&b[28], &len, 4);
    write_delta(root + "/invalid/compact-record-truncated", reseal(b), dat, corrupt);
  }
  {
    std::string b = rd.raw;  // the record's flag cleared: its bytes follow the hashes as trailing bytes
    const uint32_t f = kIndexCompact;
    std::memcpy(&b[12], &f, 4);
    write_delta(root + "/invalid/compact-record-unflagged", reseal(b), dat, corrupt);
  }
  std::printf("wrote %s/valid-compact-record and invalid/compact-record-*\n", root.c_str());
  return 0;
}

// Adds valid-compact-record-labels/: valid-compact-record/'s delta whose
// record also carries the optional "qat_label_weight" (a delta whose codes
// were trained with the calibration text's next tokens, docs/FORMAT.md
// "Lossy deltas") and the calibration text it came from; every older golden
// file as it is.
int write_record_labels_golden(const std::string& root) {
  RecordDelta rd;
  if (!approx_with_record(root,
      "{\"format\":\"tenpak.lossy\",\"version\":1,\"lossy\":true,\"method\":\"golden:1\",\"embeddings\":false,"
      "\"lossless_delta_bytes\":4096,\"finetune_bytes\":65536,\"quality\":{\"eval_text\":\"golden.txt\","
      "\"eval_part\":\"whole file\",\"ctx\":256,\"windows\":2,\"scored_tokens\":510,\"ppl_ratio\":0.99647,"
      "\"ppl_delta_pct\":-0.353,\"kl_mean\":0.0528834,\"top1_agreement\":0.7956},\"calib\":{\"calib_text\":"
      "\"calib.txt\",\"calib_part\":\"whole file\",\"calib_text_sha256\":"
      "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"},\"qat_label_weight\":0.25}",
                          rd))
    return 1;
  write_delta(root + "/valid-compact-record-labels", rd.raw, rd.dat, rd.expected);
  std::printf("wrote %s/valid-compact-record-labels\n", root.c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[2]) == "--rans-only") return write_rans_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--lanes-only") return write_lanes_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--patch-only") return write_patch_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--words-only") return write_words_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--wrans-only") return write_words_golden(argv[1], true);
  if (argc == 3 && std::string(argv[2]) == "--wrans-ids-only") return write_wrans_ids_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--approx-only") return write_approx_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--lowrank-only") return write_lowrank_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--fix-unknown-codec") return fix_unknown_codec(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--compact-only") return write_compact_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--record-only") return write_record_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--record-labels-only") return write_record_labels_golden(argv[1]);
  if (argc == 3 && std::string(argv[2]) == "--grouped-rc-only") return write_approx_golden(argv[1], true);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s tests/golden [--rans-only | --lanes-only | --patch-only | --approx-only | --lowrank-only | --compact-only | --record-only | --record-labels-only | --grouped-rc-only | --fix-unknown-codec]\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1];
  Built b = build(cases());
  write(root + "/base/base.bin", b.base);

  std::string idx = serialize_manifest(b.m);
  std::string expected = "ok\n";
  for (auto& [name, bytes] : b.outputs) expected += hex(sha256(bytes.data(), bytes.size())) + " " + name + "\n";
  write_delta(root + "/valid", idx, b.data, expected);
  if (write_rans_golden(root)) return 1;
  if (write_lanes_golden(root)) return 1;

  // Invalid deltas, each with the error class a reader must report and the
  // step at which it must be found (open, base, read).
  const std::vector<std::string> few = {"store-U8.bin", "sub_ctx-BF16.bin", "sub_ctx-F16-kernel3x3.bin"};
  auto [sm, sdat] = subset(b, few);
  const std::string sidx = serialize_manifest(sm);
  auto frame_of = [&](const std::string& file) -> uint32_t {
    for (auto& of : sm.out_files)
      if (of.name == file) return of.first_frame;
    std::exit(1);
  };
  {
    std::string v = sidx;
    v[8] = 2;  // version
    write_delta(root + "/invalid/unknown-version", reseal(v), sdat, "error unsupported open\n");
  }
  {
    std::string v = sidx;
    v[40] ^= 1;  // any byte: the checksum must catch it
    write_delta(root + "/invalid/index-checksum", v, sdat, "error corrupt open\n");
  }
  {
    Manifest m = sm;
    m.frames[frame_of("store-U8.bin")].codec = static_cast<Codec>(kUnknownCodec);
    write_delta(root + "/invalid/unknown-codec", serialize_manifest(m), sdat, "error corrupt open\n");
  }
  {
    Manifest m = sm;
    m.out_files[0].name = "../escape.bin";
    write_delta(root + "/invalid/path-traversal", serialize_manifest(m), sdat, "error corrupt open\n");
  }
  {
    Manifest m = sm;
    m.base_files[0].sha256[0] ^= 0xff;
    write_delta(root + "/invalid/wrong-base", serialize_manifest(m), sdat, "error mismatch base\n");
  }
  {
    // A sub_ctx payload cut short: the range decoder runs past its end.
    Manifest m = sm;
    m.frames[frame_of("sub_ctx-BF16.bin")].data_len = 12;
    write_delta(root + "/invalid/sub_ctx-truncated", serialize_manifest(m), sdat, "error corrupt read\n");
  }
  {
    // A sub_ctx header whose area (10) is not a multiple of kw (3).
    const Frame& f = sm.frames[frame_of("sub_ctx-F16-kernel3x3.bin")];
    std::string dat = sdat;
    dat[f.data_offset + 1] = 10;
    write_delta(root + "/invalid/sub_ctx-bad-header", sidx, dat, "error corrupt read\n");
  }
  {
    // A stored byte changed: decodes, but the frame hash must refuse it.
    const Frame& f = sm.frames[frame_of("store-U8.bin")];
    std::string dat = sdat;
    dat[f.data_offset + 3] ^= 0x20;
    write_delta(root + "/invalid/frame-hash", sidx, dat, "error corrupt read\n");
  }
  size_t total = 0;
  for (auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && e.path().extension() != ".cc" && e.path().extension() != ".txt" &&
        e.path().filename() != "CMakeLists.txt" && e.path().extension() != ".md")
      total += e.file_size();
  std::printf("wrote golden deltas under %s (%zu bytes of deltas and base)\n", root.c_str(), total);
  return 0;
}
