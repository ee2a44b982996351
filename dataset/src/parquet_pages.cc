// Parquet footer and page headers (Thrift compact protocol, the fields
// parquet_pages.h names) and the base page index.
//
// Why not Debian's libthrift-dev (0.17): its TCompactProtocol can read
// fields without generated code, but it reports bad input by exceptions
// from a transport object and brings a library to the builder for the ~100
// lines below (varints, field headers, skipping by type), which must in any
// case bound every length and nesting depth themselves to treat a damaged
// file as "not Parquet". Nothing here is on the decode side.
#include "parquet_pages.h"

#include "content_hash.h"

#include <snappy.h>

#include <sys/mman.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <new>
#include <unordered_map>

#include "tenpak/hash.h"
#include "tenpak/scratch.h"

namespace tenpak::parquet {
namespace {

// Compact protocol types.
enum : int { kStop = 0, kTrue = 1, kFalse = 2, kByte = 3, kI16 = 4, kI32 = 5, kI64 = 6, kDouble = 7, kBinary = 8,
             kList = 9, kSet = 10, kMap = 11, kStruct = 12 };

class Thrift {
 public:
  Thrift(const uint8_t* p, const uint8_t* e) : p_(p), e_(e) {}
  bool ok() const { return ok_; }
  const uint8_t* pos() const { return p_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
      if (p_ >= e_) return fail();
      const uint8_t b = *p_++;
      v |= uint64_t(b & 0x7f) << sh;
      if (!(b & 0x80)) return v;
    }
    return fail();
  }
  int64_t zigzag() { const uint64_t v = varint(); return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

  // The next field's type (kStop at the struct's end) and id.
  int field(int16_t& id) {
    if (p_ >= e_) return static_cast<int>(fail());
    const uint8_t b = *p_++;
    if (b == 0) return kStop;
    const int d = b >> 4;
    id = d ? static_cast<int16_t>(id + d) : static_cast<int16_t>(zigzag());
    return b & 15;
  }
  // A list or set header: element type and count.
  // count is 0 when the header cannot be read, so a caller that only checks ok() afterwards never
  // reads an unset value.
  int list(uint64_t& count) {
    count = 0;
    if (p_ >= e_) return static_cast<int>(fail());
    const uint8_t b = *p_++;
    count = b >> 4;
    if (count == 15) count = varint();
    // Each element takes at least one byte (bools in a list too).
    if (count > static_cast<uint64_t>(e_ - p_)) fail();
    return b & 15;
  }
  void skip(int type, int depth = 0) {
    if (!ok_ || depth > 16) { fail(); return; }
    switch (type) {
      case kTrue: case kFalse: return;  // a field's value is in its type
      case kByte: advance(1); return;
      case kI16: case kI32: case kI64: varint(); return;
      case kDouble: advance(8); return;
      case kBinary: advance(varint()); return;
      case kList: case kSet: {
        uint64_t n;
        const int t = list(n);
        for (uint64_t i = 0; i < n && ok_; ++i) {
          if (t == kTrue || t == kFalse) advance(1);
          else skip(t, depth + 1);
        }
        return;
      }
      case kMap: {
        const uint64_t n = varint();
        if (!n) return;
        if (p_ >= e_ || n > static_cast<uint64_t>(e_ - p_)) { fail(); return; }
        const uint8_t kv = *p_++;
        for (uint64_t i = 0; i < n && ok_; ++i) {
          for (int t : {kv >> 4, kv & 15}) {
            if (t == kTrue || t == kFalse) advance(1);
            else skip(t, depth + 1);
          }
        }
        return;
      }
      case kStruct: {
        int16_t id = 0;
        for (int t; ok_ && (t = field(id)) != kStop;) skip(t, depth + 1);
        return;
      }
      default: fail();
    }
  }
  void advance(uint64_t n) {
    if (n > static_cast<uint64_t>(e_ - p_)) { fail(); return; }
    p_ += n;
  }
  uint64_t fail() { ok_ = false; p_ = e_; return 0; }

 private:
  const uint8_t* p_;
  const uint8_t* e_;
  bool ok_ = true;
};

struct Chunk {
  uint32_t codec = 0;
  int64_t data_off = -1, dict_off = -1, size = -1;
  bool external = false;  // file_path set, or encrypted: not ours to read
};

// ColumnChunk (parquet.thrift): 1 file_path, 3 meta_data (ColumnMetaData:
// 4 codec, 7 total_compressed_size, 9 data_page_offset, 11
// dictionary_page_offset), 8/9 crypto metadata.
void read_chunk(Thrift& t, Chunk& c) {
  int16_t id = 0;
  for (int ty; t.ok() && (ty = t.field(id)) != kStop;) {
    if (id == 1 && ty == kBinary) { t.skip(ty); c.external = true; }
    else if ((id == 8 || id == 9) && ty == kStruct) { t.skip(ty); c.external = true; }
    else if (id == 3 && ty == kStruct) {
      int16_t m = 0;
      for (int mt; t.ok() && (mt = t.field(m)) != kStop;) {
        if (m == 4 && mt == kI32) c.codec = static_cast<uint32_t>(t.zigzag());
        else if (m == 7 && mt == kI64) c.size = t.zigzag();
        else if (m == 9 && mt == kI64) c.data_off = t.zigzag();
        else if (m == 11 && mt == kI64) c.dict_off = t.zigzag();
        else t.skip(mt);
      }
    } else {
      t.skip(ty);
    }
  }
}

// FileMetaData: 4 row_groups (list<RowGroup>; RowGroup 1 columns: list<ColumnChunk>).
bool read_footer(Thrift& t, std::vector<std::vector<Chunk>>& groups) {
  int16_t id = 0;
  for (int ty; t.ok() && (ty = t.field(id)) != kStop;) {
    if (id != 4 || ty != kList) { t.skip(ty); continue; }
    uint64_t n;
    if (t.list(n) != kStruct && n) return false;
    for (uint64_t g = 0; g < n && t.ok(); ++g) {
      groups.emplace_back();
      int16_t r = 0;
      for (int rt; t.ok() && (rt = t.field(r)) != kStop;) {
        if (r != 1 || rt != kList) { t.skip(rt); continue; }
        uint64_t nc;
        if (t.list(nc) != kStruct && nc) return false;
        for (uint64_t c = 0; c < nc && t.ok(); ++c) {
          groups.back().emplace_back();
          read_chunk(t, groups.back().back());
        }
      }
    }
  }
  return t.ok();
}

// PageHeader: 1 type, 2 uncompressed_page_size, 3 compressed_page_size.
bool read_page_header(Thrift& t, Page& pg) {
  int16_t id = 0;
  int64_t type = -1, raw = -1, comp = -1;
  for (int ty; t.ok() && (ty = t.field(id)) != kStop;) {
    if (id == 1 && ty == kI32) type = t.zigzag();
    else if (id == 2 && ty == kI32) raw = t.zigzag();
    else if (id == 3 && ty == kI32) comp = t.zigzag();
    else t.skip(ty);
  }
  if (!t.ok() || type < 0 || type > 255 || raw < 0 || comp < 0) return false;
  pg.type = static_cast<uint8_t>(type);
  pg.raw_len = static_cast<uint32_t>(raw);
  pg.body_len = static_cast<uint32_t>(comp);
  return true;
}

using dataset_internal::load64;
using dataset_internal::window16;
// Anchors: the hash of the 16-byte window at each position whose first 8
// bytes hash (one multiply) into 1/128 of the range. Selecting by the full
// window hash cost three multiplies a byte: indexing pq-append's base pages
// was a quarter of its build. 1/128 (was 1/64): half the index to build and
// half the look-ups, the same candidates on both Parquet pairs.
constexpr uint64_t kAnchorMul = 0x9E3779B97F4A7C15ull, kAnchorTop = uint64_t(1) << 57;
inline bool is_anchor(const uint8_t* p) { return load64(p) * kAnchorMul < kAnchorTop; }

// The anchors among positions p + j, j < 64, as bit j (reads p[0, 71)):
// the same test as is_anchor at each position. The scalar scan tests four
// positions a branch; the scan of a column's base pages was 9% of
// pq-column's build, and ~7% after that (docs/BENCHMARKS.md, Dataset deltas
// run 18), hence the AVX-512 form where the CPU has it.
uint64_t anchor_mask_scalar(const uint8_t* p) {
  uint64_t m = 0;
  for (int j = 0; j < 64; j += 4) {
    const bool a = is_anchor(p + j), b = is_anchor(p + j + 1), c = is_anchor(p + j + 2), d = is_anchor(p + j + 3);
    if (a | b | c | d) m |= (uint64_t(a) | uint64_t(b) << 1 | uint64_t(c) << 2 | uint64_t(d) << 3) << j;
  }
  return m;
}

#if defined(__x86_64__)
// Load r (0-7) holds the 8-byte words at r, r + 8, ..., r + 56: lane q is
// position 8q + r, multiplied by the constant modulo 2^64 (vpmullq) and
// compared unsigned, as is_anchor does.
__attribute__((target("avx512f,avx512dq"))) uint64_t anchor_mask_avx512(const uint8_t* p) {
  const __m512i k = _mm512_set1_epi64(static_cast<long long>(kAnchorMul));
  const __m512i top = _mm512_set1_epi64(static_cast<long long>(kAnchorTop));
  uint64_t m = 0;
  for (int r = 0; r < 8; ++r) {
    const __m512i x = _mm512_loadu_si512(p + r);
    for (unsigned b = _mm512_cmplt_epu64_mask(_mm512_mullo_epi64(x, k), top); b; b &= b - 1)
      m |= uint64_t(1) << (8 * __builtin_ctz(b) + r);
  }
  return m;
}
#endif

using AnchorMask = uint64_t (*)(const uint8_t*);
AnchorMask anchor_mask_for(int level) {
#if defined(__x86_64__)
  if (level >= 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return anchor_mask_avx512;
#endif
  (void)level;
  return anchor_mask_scalar;
}
const AnchorMask anchor_mask = anchor_mask_for(1);

// Calls f(window16(p + i)) for every anchor position i (i + 16 <= n), in
// increasing order: 64 positions a step, then one at a time.
template <class F>
void for_anchors(const uint8_t* p, uint64_t n, F&& f, AnchorMask mask = anchor_mask) {
  uint64_t i = 0;
  for (; i + 80 <= n; i += 64)
    for (uint64_t m = mask(p + i); m; m &= m - 1) f(window16(p + i + static_cast<uint64_t>(__builtin_ctzll(m))));
  for (; i + 16 <= n; ++i)
    if (is_anchor(p + i)) f(window16(p + i));
}

}  // namespace

std::vector<uint64_t> anchors_of(const uint8_t* p, uint64_t n, int level) {
  std::vector<uint64_t> out;
  for_anchors(p, n, [&](uint64_t h) { out.push_back(h); }, anchor_mask_for(level));
  return out;
}

bool list_pages(const uint8_t* p, uint64_t n, std::vector<Page>& out) {
  out.clear();
  if (n < 12 || std::memcmp(p, "PAR1", 4) != 0 || std::memcmp(p + n - 4, "PAR1", 4) != 0) return false;
  uint32_t flen;
  std::memcpy(&flen, p + n - 8, 4);
  if (flen > n - 12) return false;
  const uint64_t data_end = n - 8 - flen;
  Thrift t(p + data_end, p + n - 8);
  std::vector<std::vector<Chunk>> groups;
  if (!read_footer(t, groups)) return false;
  for (uint32_t g = 0; g < groups.size(); ++g) {
    for (uint32_t c = 0; c < groups[g].size(); ++c) {
      const Chunk& ch = groups[g][c];
      if (ch.external) return false;
      if (ch.data_off < 4 || ch.size <= 0) return false;
      // Some writers record dictionary_page_offset 0 for "none".
      const uint64_t start = ch.dict_off >= 4 && ch.dict_off < ch.data_off ? ch.dict_off : ch.data_off;
      if (start >= data_end || static_cast<uint64_t>(ch.size) > data_end - start) return false;
      const uint64_t end = start + static_cast<uint64_t>(ch.size);
      uint64_t pos = start;
      for (uint32_t k = 0; pos < end; ++k) {
        Thrift h(p + pos, p + end);
        Page pg;
        if (!read_page_header(h, pg)) return false;
        pg.hdr = pos;
        pg.body = static_cast<uint64_t>(h.pos() - p);
        if (pg.body_len > end - pg.body) return false;
        pg.row_group = g;
        pg.column = c;
        pg.ordinal = k;
        pg.codec = ch.codec;
        out.push_back(pg);
        pos = pg.end();
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Page& a, const Page& b) { return a.hdr < b.hdr; });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].hdr < out[i - 1].end()) return false;
  return true;
}

bool unsnappy_to(const uint8_t* body, uint32_t len, uint32_t raw_len, uint8_t* out) {
  size_t n = 0;
  const char* src = reinterpret_cast<const char*>(body);
  return snappy::GetUncompressedLength(src, len, &n) && n == raw_len &&
         snappy::RawUncompress(src, len, reinterpret_cast<char*>(out));
}

bool unsnappy_append(const uint8_t* body, uint32_t len, uint32_t raw_len, std::string& out) {
  const size_t at = out.size();
  out.resize(at + raw_len);
  return unsnappy_to(body, len, raw_len, reinterpret_cast<uint8_t*>(out.data()) + at);
}

bool PageIndex::build(const uint8_t* p, uint64_t n) {
  std::vector<Page> all;
  if (!list_pages(p, n, all)) return false;
  base_ = p;
  for (const Page& pg : all) {
    if (!pg.eligible()) continue;
    const uint32_t k = static_cast<uint32_t>(pages_.size());
    pages_.push_back(pg);
    bodies_.push_back({xxh64(p + pg.body, pg.body_len), k});
    column_count_ = std::max(column_count_, pg.column + 1);
  }
  usable_.assign(pages_.size(), 0);
  raw_.assign(pages_.size(), nullptr);
  columns_ = std::make_unique<Column[]>(column_count_);
  std::sort(bodies_.begin(), bodies_.end());
  return true;
}

const PageIndex::Column& PageIndex::column(uint32_t c) const {
  Column& col = columns_[c];
  std::call_once(col.once, [&] {
    // The pages kept, in one uninitialised block on transparent huge pages
    // where the kernel gives them (madvise): zero-filling a page only to
    // decompress over it (std::string's resize) was 5% of pq-column's build,
    // and faulting in a fresh 4 KiB page at a time (16 MB of its answer
    // column) 6%.
    std::vector<uint64_t> at(pages_.size(), ~uint64_t(0));
    uint64_t total = 0;
    {
      std::lock_guard lock(keep_mu_);
      for (uint32_t k = 0; k < pages_.size(); ++k) {
        const Page& pg = pages_[k];
        if (pg.column != c || !pg.raw_len || kept_ + pg.raw_len > kKeepRaw) continue;
        kept_ += pg.raw_len;
        at[k] = total;
        total += pg.raw_len;
      }
    }
    if (total) {
      constexpr uint64_t kHuge = 2u << 20;
      const uint64_t size = (total + kHuge - 1) / kHuge * kHuge;
      col.kept.reset(static_cast<uint8_t*>(std::aligned_alloc(kHuge, size)));
      if (!col.kept) throw std::bad_alloc();
      madvise(col.kept.get(), size, MADV_HUGEPAGE);  // advice only: 4 KiB pages otherwise
    }
    Scratch<uint8_t> spare;
    std::vector<dataset_internal::HashIndex::Entry> anchors;
    for (uint32_t k = 0; k < pages_.size(); ++k) {
      const Page& pg = pages_[k];
      if (pg.column != c) continue;
      uint8_t* raw = at[k] != ~uint64_t(0) ? col.kept.get() + at[k] : spare.get(pg.raw_len);
      if (!unsnappy_to(base_ + pg.body, pg.body_len, pg.raw_len, raw)) continue;
      if (at[k] != ~uint64_t(0)) raw_[k] = raw;
      usable_[k] = 1;
      for_anchors(raw, pg.raw_len,
                  [&](uint64_t h) { anchors.push_back({h, k}); });
    }
    col.anchors.build(anchors);
  });
  return col;
}

int64_t PageIndex::same_body(const uint8_t* body, uint32_t len) const {
  const uint64_t h = xxh64(body, len);
  for (auto it = std::lower_bound(bodies_.begin(), bodies_.end(), std::make_pair(h, uint32_t(0)));
       it != bodies_.end() && it->first == h; ++it) {
    const Page& b = pages_[it->second];
    if (b.body_len == len && std::memcmp(base_ + b.body, body, len) == 0) return it->second;
  }
  return -1;
}

bool PageIndex::append_raw(uint32_t k, std::string& out) const {
  const Page& pg = pages_[k];
  if (!raw_[k]) return unsnappy_append(base_ + pg.body, pg.body_len, pg.raw_len, out);
  out.append(reinterpret_cast<const char*>(raw_[k]), pg.raw_len);
  return true;
}

std::vector<uint32_t> PageIndex::choose(const Page& d, std::string_view raw, uint64_t budget, double* shared) const {
  if (shared) *shared = 0;
  if (d.column >= column_count_) return {};
  const dataset_internal::HashIndex& idx = column(d.column).anchors;
  std::unordered_map<uint32_t, uint32_t> votes;
  thread_local std::vector<uint64_t> hs;
  hs.clear();
  // The page's anchors in kSlices slices spread over it, kSliceBytes each
  // (the whole page when smaller): rows shifted or taken from two base
  // pages show in every part of the page, and a sample votes as the whole
  // did. The first 8192 anchors (the first ~512 KiB) were looked up before,
  // a tenth of pq-column's build (docs/BENCHMARKS.md, Dataset deltas run 14).
  const auto* rp = reinterpret_cast<const uint8_t*>(raw.data());
  constexpr uint64_t kSlices = 16, kSliceBytes = 8u << 10;
  if (raw.size() <= kSlices * kSliceBytes) {
    for_anchors(rp, raw.size(), [&](uint64_t h) { hs.push_back(h); });
  } else {
    const uint64_t step = raw.size() / kSlices;
    for (uint64_t k = 0; k < kSlices; ++k)
      for_anchors(rp + k * step, kSliceBytes, [&](uint64_t h) { hs.push_back(h); });
  }
  // Lookups are cache misses (the directory, then the bucket): each one's
  // directory slot is fetched 16 lookups ahead and its bucket 8 ahead.
  for (size_t i = 0; i < hs.size(); ++i) {
    if (i + 16 < hs.size()) idx.prefetch_dir(hs[i + 16]);
    if (i + 8 < hs.size()) idx.prefetch_bucket(hs[i + 8]);
    const uint64_t h = hs[i];
    auto it = idx.find(h);
    // A hash in many pages (a repeated value) says little: at most 8 votes.
    for (int seen = 0; it != idx.end() && it->first == h && seen < 8; ++it, ++seen) ++votes[it->second];
  }
  std::vector<std::pair<uint32_t, uint32_t>> order(votes.begin(), votes.end());
  // Most votes first; ties to the earlier page.
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  std::vector<uint32_t> out;
  uint64_t sum = 0;
  // Pages with a quarter of the top page's votes or more: a page shares
  // content with the base pages its rows came from; the others' few shared
  // windows are common values, and every page of B costs the rebuild a
  // snappy decompression (pq-column: B fell from ~3 to ~1.3 pages a frame).
  const uint32_t floor = order.empty() ? 0 : std::max<uint32_t>(2, order[0].second / 4);
  if (shared && !hs.empty()) *shared = order.empty() ? 0.0 : double(order[0].second) / double(hs.size());
  for (auto& [k, v] : order) {
    if (v < floor) break;
    if (sum + pages_[k].raw_len > budget) continue;
    sum += pages_[k].raw_len;
    out.push_back(k);
  }
  if (!out.empty()) return out;
  int64_t same = -1, last = -1;
  for (uint32_t k = 0; k < pages_.size(); ++k) {
    const Page& b = pages_[k];
    if (b.column != d.column || b.type != d.type || b.raw_len > budget || !usable_[k]) continue;
    if (b.row_group == d.row_group && b.ordinal == d.ordinal) same = k;
    last = k;
  }
  if (same >= 0) out.push_back(static_cast<uint32_t>(same));
  else if (last >= 0) out.push_back(static_cast<uint32_t>(last));
  return out;
}

}  // namespace tenpak::parquet
