// Writes tests/golden/snappy/: codec 10 frames with method bit 5 (snappy
// pages, docs/FORMAT.md) against their own base file, whose extents must be
// snappy streams (base/base.bin of the other golden sets has none). See
// README.md there.
//
//   cmake --build build --target tenpak_golden_gen_snappy
//   build/tests/golden/tenpak_golden_gen_snappy tests/golden
//
// Regenerate ONLY for a deliberate format change. Inputs are deterministic
// (fixed text, SplitMix64); streams are raw (no zstd), so that
// spec_snappy.py decodes every frame with the Python standard library and a
// reference snappy compressor (pyarrow's).
#include <snappy.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tenpak/format.h"
#include "tenpak/frame_codec.h"
#include "tenpak/hash.h"
#include "tenpak/patch_codec.h"

#include "golden_files.h"
#include "splitmix64.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

using golden::write;

std::string snappy_of(const std::string& s) {
  std::string z;
  snappy::Compress(s.data(), s.size(), &z);
  return z;
}

// Text rows with repeats (so snappy emits copies as well as literals).
std::string text(Rng& g, int rows) {
  static const char* w[] = {"page", "row", "value", "parquet", "snappy", "delta", "base", "frame", "copy", "literal"};
  std::string s;
  for (int i = 0; i < rows; ++i) {
    for (int k = 0, n = 3 + static_cast<int>(g.next() % 6); k < n; ++k) s += std::string(w[g.next() % 10]) + " ";
    s += std::to_string(g.next() % 1000) + "\n";
  }
  return s;
}

struct Frame1 {
  const char* name;
  std::vector<PatchExtent> ext;  // into base.bin; each a whole snappy stream (or not, for invalid cases)
  std::vector<PatchOp> ops;      // src in B (decompressed) coordinates
  std::string lit;
  uint32_t raw_len;              // bytes of the inner output kept as they are
  bool snappy = true;
};

struct Golden {
  std::string base, data, expected = "ok\n";
  Manifest m;
  // B of a frame: its extents decompressed (snappy frames) or as they are.
  std::string b_of(const Frame1& c) const {
    std::string B;
    for (auto& e : c.ext) {
      std::string piece, z = base.substr(e.offset, e.len);
      if (!c.snappy) { B += z; continue; }
      if (!snappy::Uncompress(z.data(), z.size(), &piece)) { std::fprintf(stderr, "%s: extent is not snappy\n", c.name); std::exit(1); }
      B += piece;
    }
    return B;
  }
  // Appends frame c to the file being built (`out` so far); `mutate` edits
  // the payload (and may change the frame) for invalid cases.
  template <class Mutate>
  void add_frame(const Frame1& c, std::string& out, bool must_decode, Mutate mutate) {
    const std::string B = b_of(c);
    std::string inner;
    size_t lp = 0;
    for (auto& op : c.ops) { inner += c.lit.substr(lp, op.lit); lp += op.lit; inner += B.substr(op.src, op.copy); }
    std::string o = c.snappy ? inner.substr(0, c.raw_len) + snappy_of(inner.substr(c.raw_len)) : inner;
    const PatchSnappy sn{static_cast<uint32_t>(inner.size()), c.raw_len};
    std::string pay = encode_patch(c.ext, c.ops, c.lit, reinterpret_cast<const uint8_t*>(B.data()), B.size(), 0, true, 0, 0,
                                   c.snappy ? &sn : nullptr);
    Frame fr;
    fr.file = static_cast<uint32_t>(m.out_files.size());
    fr.out_offset = out.size();
    fr.out_len = static_cast<uint32_t>(o.size());
    fr.codec = Codec::patch;
    fr.dtype = fr.base_dtype = DType::U8;
    if (!c.ext.empty()) {
      uint64_t lo = ~uint64_t(0), hi = 0;
      for (auto& e : c.ext) { lo = std::min(lo, e.offset); hi = std::max<uint64_t>(hi, e.offset + e.len); }
      fr.base_file = 0;
      fr.base_offset = lo;
      fr.base_len = static_cast<uint32_t>(hi - lo);
    }
    fr.hash = xxh128(o.data(), o.size());
    std::string raw;
    for (auto& e : c.ext) raw += base.substr(e.offset, e.len);
    std::vector<uint8_t> dec(o.size());
    fr.data_len = static_cast<uint32_t>(pay.size());
    const Status st = decode_frame(fr, reinterpret_cast<const uint8_t*>(pay.data()), reinterpret_cast<const uint8_t*>(raw.data()), dec.data());
    if (must_decode && (!st.ok() || std::memcmp(dec.data(), o.data(), o.size()) != 0)) {
      std::fprintf(stderr, "%s: does not decode back (%s)\n", c.name, st.to_string().c_str());
      std::exit(1);
    }
    mutate(pay, fr);
    if (fr.out_len > o.size()) o.append(fr.out_len - o.size(), 'X');  // output-length: the file grows with the frame
    fr.data_offset = data.size();
    fr.data_len = static_cast<uint32_t>(pay.size());
    data += pay;
    m.frames.push_back(fr);
    out += o;
  }
  void add_file(const std::string& name, const std::vector<const Frame1*>& frames) {
    add_file(name, frames, [](std::string&, Frame&) {});
  }
  template <class Mutate>
  void add_file(const std::string& name, const std::vector<const Frame1*>& frames, Mutate mutate) {
    OutFile of;
    of.name = name;
    of.first_frame = static_cast<uint32_t>(m.frames.size());
    std::string out;
    for (auto* c : frames) add_frame(*c, out, true, mutate);
    of.size = out.size();
    of.sha256 = sha256(out.data(), out.size());
    of.frame_count = static_cast<uint32_t>(m.frames.size()) - of.first_frame;
    m.out_files.push_back(of);
    expected += hex(of.sha256) + " " + of.name + "\n";
  }
  void write_to(const std::string& dir, const std::string& exp) const {
    Manifest mm = m;
    BaseFile bf;
    bf.name = "base.bin";
    bf.size = base.size();
    bf.sha256 = sha256(base.data(), base.size());
    mm.base_files = {bf};
    golden::write_delta(dir, serialize_manifest(mm), data, exp);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: %s tests/golden\n", argv[0]); return 2; }
  const std::string root = std::string(argv[1]) + "/snappy";
  Rng g{10};
  // base.bin: 16 bytes of "header", snappy page P0, 5 bytes, page P1, then
  // 64 bytes that are not a snappy stream (their preamble claims 2^28 bytes).
  const std::string p0 = text(g, 40), p1 = text(g, 30);
  const std::string z0 = snappy_of(p0), z1 = snappy_of(p1);
  Golden gd;
  gd.base = std::string("PAR1HEADERBYTES!") + z0 + "gap!!" + z1;
  const uint64_t o0 = 16, o1 = 16 + z0.size() + 5, o2 = gd.base.size();
  gd.base += std::string("\x80\x80\x80\x80\x01", 5) + std::string(59, 'x');
  const uint32_t l0 = static_cast<uint32_t>(z0.size()), l1 = static_cast<uint32_t>(z1.size());
  const uint64_t n0 = p0.size(), n1 = p1.size();
  // A page edited: its header (7 literal bytes, kept raw), P1's start, new
  // words, P0 from byte 30 to its end (a backward move), P1 again from 100.
  const Frame1 edit{"snappy-edit", {{o0, l0}, {o1, l1}},
                    {{7, n0, 200}, {11, 30, n0 - 30}, {0, n0 + 100, n1 - 100}}, "HDR\x15\x02\x01\x7f" "new words!\n", 7};
  // No base: the header and a body of literals only.
  const Frame1 nobase{"snappy-nobase", {}, {{5 + 300, 0, 0}}, std::string("HEAD!") + p0.substr(0, 300), 5};
  // Extents listed in the other order; raw_len 0; a copy crossing from one
  // decompressed page into the next.
  const Frame1 swap{"snappy-swapped", {{o1, l1}, {o0, l0}}, {{0, n1 - 50, 120}, {3, 0, 40}}, "abc", 0};
  // An ordinary patch frame (bit 5 clear) of the same base, raw bytes.
  const Frame1 plain{"plain", {{0, 16}}, {{4, 0, 16}}, "raw:", 0, false};
  gd.add_file("snappy-edit.bin", {&edit});
  gd.add_file("snappy-nobase.bin", {&nobase});
  gd.add_file("snappy-swapped.bin", {&swap});
  gd.add_file("snappy-two-frames.bin", {&edit, &plain});
  gd.write_to(root + "/valid", gd.expected);
  write(root + "/base/base.bin", gd.base);
  std::printf("wrote %s/valid and %s/base\n", root.c_str(), root.c_str());

  // Invalid cases (each `error corrupt read`), one file of one frame each.
  const std::string corrupt = "error corrupt read\n";
  auto bad = [&](const char* name, const Frame1& c, auto mutate) {
    Golden b;
    b.base = gd.base;
    b.add_file("bad.bin", {&c}, mutate);
    b.write_to(root + "/invalid/" + name, corrupt);
    std::printf("wrote %s/invalid/%s\n", root.c_str(), name);
  };
  auto at_header = [](const std::string& pay) { uint32_t ne; std::memcpy(&ne, pay.data(), 4); return 4 + 12 * size_t(ne); };
  // The payload one byte short.
  bad("truncated", edit, [](std::string& p, Frame&) { p.pop_back(); });
  // An extent that is not a snappy stream (its preamble: 2^28 bytes).
  {
    Frame1 c = edit;
    bad("extent-not-snappy", c, [&](std::string& p, Frame& f) {
      const uint64_t off = o2;
      const uint32_t len = 64;
      std::memcpy(&p[4 + 12], &off, 8);
      std::memcpy(&p[4 + 12 + 8], &len, 4);
      f.base_len = static_cast<uint32_t>(o2 + 64 - f.base_offset);
    });
  }
  // inner_len over 4 MiB.
  bad("inner-too-long", edit, [&](std::string& p, Frame&) {
    const uint32_t v = (4u << 20) + 1;
    std::memcpy(&p[at_header(p) + 17], &v, 4);
  });
  // raw_len past inner_len.
  bad("raw-past-inner", edit, [&](std::string& p, Frame&) {
    uint32_t v;
    std::memcpy(&v, &p[at_header(p) + 17], 4);
    v += 1;
    std::memcpy(&p[at_header(p) + 21], &v, 4);
  });
  // out_len one more than raw_len + |snappy(rest)| (the file one byte longer).
  bad("output-length", edit, [&](std::string&, Frame& f) { f.out_len += 1; });
  // raw_len one less: one header byte moves into the snappy stream, which
  // then holds other bytes of the same length: only the frame hash (or the
  // file's sha256) refuses it.
  bad("raw-len-shifted", edit, [&](std::string& p, Frame&) {
    uint32_t v;
    std::memcpy(&v, &p[at_header(p) + 21], 4);
    v -= 1;
    std::memcpy(&p[at_header(p) + 21], &v, 4);
  });
  return 0;
}
