// Codec 10's snappy pages (method bit 5) and the builder's Parquet route:
// pages re-compressed bit-exact, refusals of corrupt snappy input, and the
// fallback for pages snappy::Compress does not reproduce. Parquet files are
// written here by hand (Thrift compact, only what the builder reads), so the
// tests need no pyarrow; tests/dataset/parquet_test.sh runs pyarrow's files.
#include <gtest/gtest.h>
#include <snappy.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "tenpak/dataset.h"
#include "tenpak/delta.h"
#include "tenpak/patch_codec.h"

#include "../test_util.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

struct TempDir {
  std::string path = tptest::temp_dir("pqpages");
  ~TempDir() { fs::remove_all(path); }
};
void write(const std::string& p, const std::string& s) { tptest::write_file(p, s); }
std::string read(const std::string& p) { return tptest::read_file(p); }
const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }
std::string snappy_of(const std::string& s) {
  std::string z;
  snappy::Compress(s.data(), s.size(), &z);
  return z;
}
// A valid snappy stream snappy::Compress does not write for compressible
// input: every byte a literal (one element per 60 bytes).
std::string snappy_literal(const std::string& s) {
  std::string z;
  for (uint64_t n = s.size(); ; n >>= 7) {
    z.push_back(static_cast<char>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
    if (n < 0x80) break;
  }
  for (size_t i = 0; i < s.size(); i += 60) {
    const size_t k = std::min<size_t>(60, s.size() - i);
    z.push_back(static_cast<char>((k - 1) << 2));
    z.append(s, i, k);
  }
  return z;
}

// Thrift compact protocol, the few shapes a Parquet footer and page header need.
struct Compact {
  std::string s;
  std::vector<int> last{0};
  void var(uint64_t v) { while (v >= 0x80) { s.push_back(static_cast<char>(v | 0x80)); v >>= 7; } s.push_back(static_cast<char>(v)); }
  void head(int id, int type) { s.push_back(static_cast<char>(((id - last.back()) << 4) | type)); last.back() = id; }
  void i32(int id, int64_t v) { head(id, 5); var((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void i64(int id, int64_t v) { head(id, 6); var((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void begin(int id) { head(id, 12); last.push_back(0); }   // a struct field
  void list(int id, int n, int type) { head(id, 9); s.push_back(static_cast<char>((n << 4) | type)); }
  void elem() { last.push_back(0); }                          // a struct in a list
  void end() { s.push_back(0); last.pop_back(); }
};

// A Parquet file (as far as TenPak's builder reads one) of one row group whose
// columns are `cols`, each a list of page contents; `literal`: page bodies
// as all-literal snappy streams instead of snappy::Compress output.
std::string parquet(const std::vector<std::vector<std::string>>& cols, bool literal = false) {
  std::string f = "PAR1";
  struct Meta { int64_t start, comp, raw; };
  std::vector<Meta> meta;
  for (auto& pages : cols) {
    Meta m{static_cast<int64_t>(f.size()), 0, 0};
    for (auto& pg : pages) {
      std::string body = literal ? snappy_literal(pg) : snappy_of(pg);
      Compact h;
      h.i32(1, 0);  // DATA_PAGE
      h.i32(2, static_cast<int64_t>(pg.size()));
      h.i32(3, static_cast<int64_t>(body.size()));
      h.begin(5);  // DataPageHeader: num_values, encodings
      h.i32(1, 1);
      h.i32(2, 0);
      h.i32(3, 3);
      h.i32(4, 3);
      h.end();
      h.s.push_back(0);
      f += h.s + body;
      m.raw += static_cast<int64_t>(h.s.size() + pg.size());
    }
    m.comp = static_cast<int64_t>(f.size()) - m.start;
    meta.push_back(m);
  }
  Compact t;
  t.i32(1, 1);
  t.list(2, 0, 12);
  t.i64(3, 1);
  t.list(4, 1, 12);
  t.elem();
  t.list(1, static_cast<int>(cols.size()), 12);
  for (auto& m : meta) {
    t.elem();
    t.i64(2, m.start);
    t.begin(3);
    t.i32(1, 6);
    t.i32(4, 1);  // SNAPPY
    t.i64(5, 1);
    t.i64(6, m.raw);
    t.i64(7, m.comp);
    t.i64(9, m.start);
    t.end();
    t.end();
  }
  t.i64(2, 1);
  t.i64(3, 1);
  t.end();
  t.s.push_back(0);
  const uint32_t n = static_cast<uint32_t>(t.s.size());
  f += t.s;
  f.append(reinterpret_cast<const char*>(&n), 4);
  return f + "PAR1";
}

// Rows of words: `edit` changes one row in ten.
std::string rows(int n, uint64_t seed, bool edit) {
  std::mt19937_64 r(seed), e(seed + 99);
  static const char* w[] = {"alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"};
  std::string s;
  for (int i = 0; i < n; ++i) {
    std::string row;
    for (int k = 0, m = 6 + static_cast<int>(r() % 12); k < m; ++k) row += std::string(w[r() % 10]) + std::to_string(r() % 1000) + " ";
    if (edit && i % 10 == 0) row += "edited" + std::to_string(e() % 100000) + " ";
    uint32_t len = static_cast<uint32_t>(row.size());
    s.append(reinterpret_cast<const char*>(&len), 4);  // PLAIN byte arrays: length, bytes
    s += row;
  }
  return s;
}

// Frames with codec 10 method bit 5, read from the delta.
int snappy_frames(const std::string& dir) {
  auto r = open_delta_dir(dir);
  EXPECT_TRUE(r.ok());
  if (!r.ok()) return -1;
  std::string dat = read(dir + "/tenpak.dat");
  int n = 0;
  for (const Frame& f : (*r)->manifest().frames) {
    if (f.codec != Codec::patch) continue;
    uint32_t ne;
    std::memcpy(&ne, dat.data() + f.data_offset, 4);
    n += (static_cast<uint8_t>(dat[f.data_offset + 4 + 12 * ne]) & 32) != 0;
  }
  return n;
}

Status apply_all(const std::string& t, bool check_sha) {
  auto r = open_delta_dir(t + "/delta");
  if (!r.ok()) return r.status();
  TP_RETURN_IF_ERROR(attach_local_base(**r, t + "/base", check_sha));
  auto n = apply_delta(**r, t + "/out", ApplyOptions{});
  return n.ok() ? Status::Ok() : n.status();
}

// Base and derived sets: two columns, pages of ~150 KB; the derived text
// column has one row in ten edited, the other column is unchanged.
void write_pair(const std::string& t, bool literal_derived) {
  std::vector<std::vector<std::string>> b = {{rows(3000, 1, false), rows(3000, 2, false)}, {rows(2000, 3, false)}};
  std::vector<std::vector<std::string>> d = {{rows(3000, 1, true), rows(3000, 2, true)}, {rows(2000, 3, false)}};
  write(t + "/base/data.parquet", parquet(b));
  write(t + "/derived/data.parquet", parquet(d, literal_derived));
}

}  // namespace

TEST(Patch, SnappyPagesRoundTripAndRefusals) {
  const std::string p0 = rows(500, 7, false), p1 = rows(400, 8, false);
  const std::string z0 = snappy_of(p0), z1 = snappy_of(p1);
  const std::string braw = z0 + z1, b = p0 + p1;  // extents' bytes; B
  std::vector<PatchExtent> ext = {{1000, static_cast<uint32_t>(z0.size())}, {5000 + z0.size(), static_cast<uint32_t>(z1.size())}};
  const std::string hdr = "HEADER";
  const std::string body = p1.substr(0, 3000) + "new bytes" + p0.substr(100, 5000);
  std::vector<PatchOp> ops = {{6, static_cast<uint64_t>(p0.size()), 3000}, {9, 100, 5000}};
  const std::string lit = hdr + "new bytes";
  const PatchSnappy sn{static_cast<uint32_t>(hdr.size() + body.size()), static_cast<uint32_t>(hdr.size())};
  const std::string want = hdr + snappy_of(body);
  for (int level : {0, 3}) {
    std::string p = encode_patch(ext, ops, lit, u8(b), b.size(), level, true, 0, 0, &sn);
    Frame f;
    f.codec = Codec::patch;
    f.out_len = static_cast<uint32_t>(want.size());
    f.data_len = static_cast<uint32_t>(p.size());
    f.base_file = 0;
    f.base_offset = 1000;
    f.base_len = static_cast<uint32_t>(5000 + z0.size() + z1.size() - 1000);
    std::string out(want.size(), '\0');
    ASSERT_TRUE(decode_patch(f, u8(p), u8(braw), reinterpret_cast<uint8_t*>(out.data())).ok());
    EXPECT_EQ(out, want);
    // The builder's entry, with B given decompressed: the same bytes; a B
    // of another length than the preambles say is refused; the extents are
    // not decompressed again (a B of other bytes gives other output, which
    // the builder's comparison with the page catches).
    {
      std::string o2(want.size(), '\0');
      ASSERT_TRUE(decode_patch_expanded(f, u8(p), u8(braw), u8(b), b.size(), reinterpret_cast<uint8_t*>(o2.data())).ok());
      EXPECT_EQ(o2, want);
      EXPECT_EQ(decode_patch_expanded(f, u8(p), u8(braw), u8(b), b.size() - 1, reinterpret_cast<uint8_t*>(o2.data())).code(),
                Errc::corrupt);
      std::string other = b;
      other[p0.size() + 10] ^= 1;  // inside the first copy (p1's first 3000 bytes)
      const Status st =
          decode_patch_expanded(f, u8(p), u8(braw), u8(other), other.size(), reinterpret_cast<uint8_t*>(o2.data()));
      EXPECT_TRUE(!st.ok() || o2 != want);
    }
    for (size_t cut = 0; cut < p.size(); ++cut) {
      Frame g = f;
      g.data_len = static_cast<uint32_t>(cut);
      std::string q = p.substr(0, cut);
      EXPECT_FALSE(decode_patch(g, u8(q), u8(braw), reinterpret_cast<uint8_t*>(out.data())).ok()) << cut;
    }
    // A preamble one more than the stream holds: refused.
    {
      std::string bad = braw;
      ASSERT_LT(static_cast<uint8_t>(bad[0]) & 0x7f, 0x7f);
      bad[0] = static_cast<char>(bad[0] + 1);
      EXPECT_EQ(decode_patch(f, u8(p), u8(bad), reinterpret_cast<uint8_t*>(out.data())).code(), Errc::corrupt);
    }
    // Any other damage: refused as corrupt, or a valid stream of other (or,
    // in repetitive text, the same) bytes, which the reader's frame hash
    // checks; never a crash or a read outside the buffers (ASan builds).
    for (size_t at = 0; at < braw.size(); at += 61) {
      for (uint8_t x : {0x01, 0x80, 0xff}) {
        std::string bad = braw;
        bad[at] ^= x;
        Status st = decode_patch(f, u8(p), u8(bad), reinterpret_cast<uint8_t*>(out.data()));
        if (!st.ok()) EXPECT_EQ(st.code(), Errc::corrupt);
      }
    }
    // An extent whose preamble claims more than 4 MiB.
    {
      std::string big = "\x80\x80\x80\x03";  // 6 MiB
      big += braw.substr(4);
      EXPECT_EQ(decode_patch(f, u8(p), u8(big), reinterpret_cast<uint8_t*>(out.data())).code(), Errc::corrupt);
    }
    // The output length must be what snappy writes: one byte more is refused.
    {
      Frame g = f;
      g.out_len += 1;
      std::string o2(g.out_len, '\0');
      EXPECT_EQ(decode_patch(g, u8(p), u8(braw), reinterpret_cast<uint8_t*>(o2.data())).code(), Errc::corrupt);
    }
  }
  // raw_len past inner_len is refused.
  const PatchSnappy bad{static_cast<uint32_t>(hdr.size() + body.size()), static_cast<uint32_t>(hdr.size() + body.size() + 1)};
  std::string p = encode_patch(ext, ops, lit, u8(b), b.size(), 0, true, 0, 0, &bad);
  Frame f;
  f.codec = Codec::patch;
  f.out_len = static_cast<uint32_t>(want.size());
  f.data_len = static_cast<uint32_t>(p.size());
  f.base_file = 0;
  f.base_offset = 1000;
  f.base_len = static_cast<uint32_t>(5000 + z0.size() + z1.size() - 1000);
  std::string out(want.size(), '\0');
  EXPECT_EQ(decode_patch(f, u8(p), u8(braw), reinterpret_cast<uint8_t*>(out.data())).code(), Errc::corrupt);
}

// Every extent is decompressed and checked, read by a copy or not
// (docs/FORMAT.md, "Snappy pages"): damage to the body of an extent no copy
// reads is refused as is damage to one a copy reads, a bad preamble, or
// (with B as the literals' prefix) damage anywhere in B. The builder lists
// no such extent (Dataset.ParquetPageFramesListOnlyExtentsTheyUse); a
// reader that skipped them would accept frames a strict reader refuses.
// The page body is over 64 KiB, so snappy::Compress writes several blocks,
// straight into the output and, near its end, through snappy's scratch.
TEST(Patch, SnappyPagesDecompressEveryExtent) {
  auto u32 = [](size_t v) { return static_cast<uint32_t>(v); };
  const std::string p0 = rows(3000, 11, false), pm = rows(800, 12, false), p1 = rows(2500, 13, false);
  const std::string z0 = snappy_of(p0), zm = snappy_of(pm), z1 = snappy_of(p1);
  const std::string braw = z0 + zm + z1, b = p0 + pm + p1;
  const std::vector<PatchExtent> ext = {
      {0, u32(z0.size())}, {z0.size(), u32(zm.size())}, {z0.size() + zm.size(), u32(z1.size())}};
  const std::string hdr = "PAGEHEADER";
  const size_t a1 = 50, n1 = p1.size() - 100, a0 = 7, n0 = p0.size() - 20;
  for (bool prefix : {false, true}) {
    // With B as prefix: new bytes that are text of the unread extent, which
    // zstd codes against B.
    const std::string nw = prefix ? pm.substr(100, 20000) : "new bytes of the edited row";
    const std::string body = p1.substr(a1, n1) + nw + p0.substr(a0, n0);
    ASSERT_GT(body.size(), 3u * 65536);
    const std::vector<PatchOp> ops = {{u32(hdr.size()), p0.size() + pm.size() + a1, u32(n1)},
                                      {u32(nw.size()), a0, u32(n0)}};
    const PatchSnappy sn{u32(hdr.size() + body.size()), u32(hdr.size())};
    const std::string want = hdr + snappy_of(body);
    const std::string p = encode_patch(ext, ops, hdr + nw, u8(b), b.size(), prefix ? 3 : 0, prefix, 0, 0, &sn);
    const uint8_t method = static_cast<uint8_t>(p[4 + 12 * ext.size()]);
    ASSERT_EQ(method & (8 | 16), 0);
    ASSERT_EQ((method & 4) != 0, prefix) << "literals' prefix bit";
    Frame f;
    f.codec = Codec::patch;
    f.out_len = u32(want.size());
    f.data_len = u32(p.size());
    f.base_file = 0;
    f.base_offset = 0;
    f.base_len = u32(braw.size());
    auto decode = [&](const Frame& g, const std::string& base, std::string* got = nullptr) {
      std::string out(g.out_len, '\0');
      Status st = decode_patch(g, u8(p), u8(base), reinterpret_cast<uint8_t*>(out.data()));
      if (got) *got = out;
      return st;
    };
    std::string got;
    ASSERT_TRUE(decode(f, braw, &got).ok()) << prefix;
    EXPECT_EQ(got, want) << prefix;
    // The middle extent's body made invalid (its preamble kept): no copy
    // reads it, and it is refused all the same.
    {
      std::string bad = braw;
      std::fill(bad.begin() + static_cast<long>(z0.size()) + 8, bad.begin() + static_cast<long>(z0.size() + zm.size()), '\xff');
      ASSERT_FALSE(snappy::IsValidCompressedBuffer(bad.data() + z0.size(), zm.size()));
      EXPECT_EQ(decode(f, bad).code(), Errc::corrupt) << prefix;
    }
    // Its preamble unreadable: refused (B's length comes from every preamble).
    {
      std::string bad = braw;
      std::fill(bad.begin() + static_cast<long>(z0.size()), bad.begin() + static_cast<long>(z0.size()) + 6, '\xff');
      EXPECT_EQ(decode(f, bad).code(), Errc::corrupt) << prefix;
    }
    // An extent a copy reads, damaged the same way: refused.
    {
      std::string bad = braw;
      std::fill(bad.begin() + 8, bad.begin() + 4000, '\xff');
      EXPECT_EQ(decode(f, bad).code(), Errc::corrupt) << prefix;
    }
    // An output one byte shorter than snappy writes: refused, the
    // compressed page never written past the frame.
    {
      Frame g = f;
      g.out_len -= 1;
      EXPECT_EQ(decode(g, braw).code(), Errc::corrupt) << prefix;
    }
  }
}

TEST(Dataset, ParquetPagesAreCodedDecompressed) {
  TempDir t;
  write_pair(t.path, false);
  auto rep = build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", DatasetBuildOptions{});
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  EXPECT_EQ(rep->files[0].mode, "parquet pages");
  // The two edited pages (and the unchanged column's first page when a
  // content-defined chunk reaches into it from the edited page before it).
  EXPECT_GE(snappy_frames(t.path + "/delta"), 2);
  ASSERT_TRUE(apply_all(t.path, true).ok());
  EXPECT_EQ(read(t.path + "/out/data.parquet"), read(t.path + "/derived/data.parquet"));
  // One row in ten gains ~12 bytes: the edits, not the pages again (as
  // snappy bytes the edited pages share little with the base's).
  const double ratio = double(rep->build.delta_bytes) / rep->build.finetune_bytes;
  EXPECT_LT(ratio, 0.05) << rep->build.delta_bytes;
}

// Every extent a snappy page frame lists is one its output depends on: the
// builder drops the candidate pages that gave no copy (they cost 12 bytes
// each, and a reader fetches and decompresses them). Each extent in turn is
// replaced by a valid stream of other bytes of the same length; the frame
// must then decode to other bytes or be refused.
TEST(Dataset, ParquetPageFramesListOnlyExtentsTheyUse) {
  TempDir t;
  write_pair(t.path, false);
  // A page of new rows: no base page shares its content, so the builder
  // falls back to a base page of its column as the candidate, and no copy
  // reads it (pq-append's frames of appended rows).
  {
    std::vector<std::vector<std::string>> d = {{rows(3000, 1, true), rows(3000, 2, true), rows(2500, 7, false)},
                                               {rows(2000, 3, false)}};
    write(t.path + "/derived/data.parquet", parquet(d));
  }
  ASSERT_TRUE(build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", {}).ok());
  auto r = open_delta_dir(t.path + "/delta");
  ASSERT_TRUE(r.ok());
  const std::string dat = read(t.path + "/delta/tenpak.dat"), base = read(t.path + "/base/data.parquet");
  int frames = 0, extents = 0;
  for (const Frame& f0 : (*r)->manifest().frames) {
    if (f0.codec != Codec::patch) continue;
    const std::string p0 = dat.substr(f0.data_offset, f0.data_len);
    uint32_t ne;
    std::memcpy(&ne, p0.data(), 4);
    if (!(static_cast<uint8_t>(p0[4 + 12 * ne]) & 32)) continue;
    ++frames;
    auto ext = patch_extents(f0, u8(p0));
    ASSERT_TRUE(ext.ok());
    std::vector<std::string> z;
    for (auto& e : *ext) z.push_back(base.substr(e.offset, e.len));
    auto decode = [&](const std::vector<std::string>& zs, std::string& out) {
      std::string p = p0, braw;
      for (size_t i = 0; i < zs.size(); ++i) {
        const uint32_t len = static_cast<uint32_t>(zs[i].size());
        std::memcpy(p.data() + 12 + 12 * i, &len, 4);
        braw += zs[i];
      }
      Frame f = f0;
      f.base_offset = 0;
      f.base_len = 0xffffffffu;
      out.assign(f.out_len, '\0');
      return decode_patch(f, u8(p), u8(braw), reinterpret_cast<uint8_t*>(out.data()));
    };
    std::string want, got;
    ASSERT_TRUE(decode(z, want).ok());
    for (size_t i = 0; i < z.size(); ++i) {
      std::string page;
      ASSERT_TRUE(snappy::Uncompress(z[i].data(), z[i].size(), &page));
      for (char& c : page) c = static_cast<char>(c ^ 0x55);
      std::vector<std::string> zs = z;
      zs[i] = snappy_of(page);
      const Status st = decode(zs, got);
      EXPECT_TRUE(!st.ok() || got != want) << "frame at " << f0.data_offset << ": extent " << i << " of " << z.size()
                                           << " is not used";
      ++extents;
    }
  }
  EXPECT_GE(frames, 2);
  // The edited pages' frames read their base pages; the new rows' frame may
  // list none at all (its candidate dropped).
  EXPECT_GE(extents, 2);
}

TEST(Dataset, ParquetPageSnappyDoesNotReproduceFallsBack) {
  TempDir t;
  write_pair(t.path, true);
  auto rep = build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", DatasetBuildOptions{});
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  EXPECT_EQ(snappy_frames(t.path + "/delta"), 0);
  ASSERT_TRUE(apply_all(t.path, true).ok());
  EXPECT_EQ(read(t.path + "/out/data.parquet"), read(t.path + "/derived/data.parquet"));
}

TEST(Dataset, CorruptSnappyExtentNamesFileAndFrame) {
  TempDir t;
  write_pair(t.path, false);
  ASSERT_TRUE(build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", {}).ok());
  ASSERT_GE(snappy_frames(t.path + "/delta"), 2);
  // A base read wrong (a cache between the reader and its origin, a base
  // file changed after its sha256 was checked): the snappy extents are the
  // first column's page bodies. Every damage is an error naming the frame.
  std::string b = read(t.path + "/base/data.parquet");
  for (size_t at : {size_t(40), size_t(41), b.size() / 4}) {
    std::string bad = b;
    bad[at] ^= 0x5a;
    write(t.path + "/base/data.parquet", bad);
    fs::remove_all(t.path + "/out");
    Status st = apply_all(t.path, false);
    ASSERT_FALSE(st.ok()) << at;
    EXPECT_EQ(st.code(), Errc::corrupt) << st.to_string();
    EXPECT_NE(st.message().find("file 'data.parquet' frame "), std::string::npos) << st.message();
  }
}

// A file that ends in "PAR1" but does not parse as Parquet here (a footer
// length past the file, a footer cut short, a page header past its chunk) is
// an ordinary file: built as content-defined chunks, never an error.
TEST(Dataset, DamagedParquetIsAnOrdinaryFile) {
  TempDir t;
  write_pair(t.path, false);
  const std::string d = read(t.path + "/derived/data.parquet");
  uint32_t flen;
  std::memcpy(&flen, d.data() + d.size() - 8, 4);
  std::vector<std::string> bad;
  {
    std::string x = d;
    const uint32_t big = static_cast<uint32_t>(d.size());
    std::memcpy(x.data() + x.size() - 8, &big, 4);
    bad.push_back(x);  // footer length past the file
  }
  {
    std::string x = d;
    const uint32_t cut = flen / 2;
    std::memcpy(x.data() + x.size() - 8, &cut, 4);
    bad.push_back(x);  // footer read from its middle
  }
  {
    std::string x = d;
    x[4] = static_cast<char>(0xff);  // the first page header's first byte: not a field header
    bad.push_back(x);
  }
  for (size_t i = 0; i < bad.size(); ++i) {
    fs::remove_all(t.path + "/delta");
    fs::remove_all(t.path + "/out");
    write(t.path + "/derived/data.parquet", bad[i]);
    auto rep = build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", DatasetBuildOptions{});
    ASSERT_TRUE(rep.ok()) << i << ": " << rep.status().to_string();
    EXPECT_EQ(rep->files[0].mode, "chunks") << i;
    ASSERT_TRUE(apply_all(t.path, true).ok()) << i;
    EXPECT_EQ(read(t.path + "/out/data.parquet"), bad[i]) << i;
  }
}

// Pages the base's page index has nothing for: a derived column the base
// lacks (no page to vote for, none to fall back to), a page of new rows of
// 512 KiB or more (coded without B), and a base without a single page (one
// row group, no columns). Each page frame comes back bit-exact, and the
// delta's bytes do not depend on the thread count: the index of a column
// is built by whichever worker first asks for it.
TEST(Dataset, ParquetPagesTheBaseLacksAndTheThreadCount) {
  TempDir t;
  const std::vector<std::vector<std::string>> b = {{rows(3000, 1, false), rows(3000, 2, false)}};
  const std::vector<std::vector<std::string>> d = {{rows(3000, 1, true), rows(3000, 2, true), rows(5600, 7, false)},
                                                   {rows(1500, 8, false), rows(5600, 9, false)}};
  ASSERT_GE(rows(5600, 7, false).size(), 512u << 10);
  ASSERT_LE(rows(5600, 9, false).size(), 1000u << 10);
  write(t.path + "/derived/data.parquet", parquet(d));
  for (const std::string& base : {parquet(b), parquet({})}) {
    SCOPED_TRACE(base.size());
    write(t.path + "/base/data.parquet", base);
    std::string dat, idx;
    for (unsigned threads : {1u, 3u, 2u}) {
      SCOPED_TRACE(threads);
      fs::remove_all(t.path + "/delta");
      fs::remove_all(t.path + "/out");
      DatasetBuildOptions o;
      o.threads = threads;
      auto rep = build_dataset_delta(t.path + "/base", t.path + "/derived", t.path + "/delta", o);
      ASSERT_TRUE(rep.ok()) << rep.status().to_string();
      EXPECT_EQ(rep->files[0].mode, "parquet pages");
      EXPECT_GE(snappy_frames(t.path + "/delta"), 4);
      ASSERT_TRUE(apply_all(t.path, true).ok());
      EXPECT_EQ(read(t.path + "/out/data.parquet"), read(t.path + "/derived/data.parquet"));
      if (dat.empty()) {
        dat = read(t.path + "/delta/tenpak.dat");
        idx = read(t.path + "/delta/tenpak.idx");
        continue;
      }
      EXPECT_TRUE(read(t.path + "/delta/tenpak.dat") == dat);
      EXPECT_TRUE(read(t.path + "/delta/tenpak.idx") == idx);
    }
  }
}
