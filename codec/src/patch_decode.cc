// Codec 10 (patch): the decoder (tenpak_codec_decode); the encoder is
// patch_encode.cc. tenpak/patch_codec.h describes the payload.
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "patch_internal.h"
#include "patch_snappy.h"
#include "patch_words.h"
#include "patch_wrans.h"
#include "tenpak/patch_codec.h"
#include "tenpak/scratch.h"

namespace tenpak {
namespace {

using namespace patch_detail;

uint32_t get_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
// LEB128, at most 10 bytes; false on a truncated or over-long value.
bool get_var(const uint8_t*& p, const uint8_t* e, uint64_t& v) {
  v = 0;
  for (int sh = 0; sh < 70; sh += 7) {
    if (p == e) return false;
    uint8_t b = *p++;
    if (sh == 63 && b > 1) return false;
    v |= uint64_t(b & 0x7f) << sh;
    if (!(b & 0x80)) return true;
  }
  return false;
}

ZSTD_DCtx* pdctx() {
  thread_local struct D { ZSTD_DCtx* d = ZSTD_createDCtx(); ~D() { ZSTD_freeDCtx(d); } } t;
  return t.d;
}

bool unzstd_with_prefix(const uint8_t* src, size_t sn, const uint8_t* prefix, size_t pn, uint8_t* dst, size_t n) {
  ZSTD_DCtx* d = pdctx();
  ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
  if (pn && ZSTD_isError(ZSTD_DCtx_refPrefix(d, prefix, pn))) return false;
  size_t r = ZSTD_decompressDCtx(d, dst, n, src, sn);
  return !ZSTD_isError(r) && r == n;
}

Status corrupt(const std::string& what) { return {Errc::corrupt, "patch frame: " + what}; }

}  // namespace

Result<std::vector<PatchExtent>> patch_extents(const Frame& f, const uint8_t* payload) {
  if (f.data_len < 4) return corrupt("payload shorter than its header");
  uint32_t ne = get_u32(payload);
  if (ne > kMaxPatchExtents) return corrupt(std::to_string(ne) + " extents (at most 4096)");
  if ((ne == 0) != (f.base_file == kNoBase)) return corrupt("extents without a base file, or a base file without extents");
  if (4 + 12ull * ne > f.data_len) return corrupt("extent table truncated");
  std::vector<PatchExtent> ext(ne);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < ne; ++i) {
    ext[i].offset = get_u64(payload + 4 + 12 * i);
    ext[i].len = get_u32(payload + 12 + 12 * i);
    if (ext[i].len == 0 || ext[i].offset < f.base_offset ||
        ext[i].offset - f.base_offset > f.base_len || ext[i].len > f.base_offset + f.base_len - ext[i].offset)
      return corrupt("extent " + std::to_string(i) + " empty or outside the frame's base range");
    sum += ext[i].len;
  }
  if (sum > kMaxPatchBase) return corrupt("extents longer than 4 MiB in all");
  return ext;
}

namespace {

// decode_patch, with `given` (given_len bytes) as the snappy frame's B
// decompressed when not null (decode_patch_expanded).
Status decode_patch_impl(const Frame& f, const uint8_t* payload, const uint8_t* b, const uint8_t* given,
                         uint64_t given_len, uint8_t* out) {
  auto ext = patch_extents(f, payload);
  if (!ext.ok()) return ext.status();
  uint64_t blen = 0;
  for (auto& e : *ext) blen += e.len;
  const size_t h = 4 + 12 * ext->size();
  if (f.data_len < h + 17) return corrupt("payload shorter than its header");
  const uint8_t* p = payload + h;
  const uint8_t method = p[0];
  const uint32_t nops = get_u32(p + 1), ops_raw = get_u32(p + 5), ops_stored = get_u32(p + 9), lit_raw = get_u32(p + 13);
  const int word_bits = ((method & kLitWords) != 0) + ((method & kLitWordsStatic) != 0) + ((method & kLitZstd) != 0);
  if ((method & ~127u) || (method & (kLitZstd | kLitPrefix)) == kLitPrefix || word_bits > 1)
    return corrupt("unknown stream method " + std::to_string(method));
  // Snappy pages (bit 5): the ops write `olen` inner bytes (raw prefix plus
  // the page's uncompressed body) from B = the extents decompressed.
  const bool sn = method & kSnappy;
  size_t hx = 17;
  uint32_t olen = f.out_len, raw_len = 0;
  if (sn) {
    if (f.data_len < h + 25) return corrupt("payload shorter than its header");
    olen = get_u32(p + 17);
    raw_len = get_u32(p + 21);
    hx = 25;
    if (olen > kMaxPatchBase || raw_len > olen || raw_len > f.out_len) return corrupt("snappy page lengths out of range");
  }
  if (nops > olen + 1u || lit_raw > olen || ops_raw > 3u * 11u * (nops + 1))
    return corrupt("op or literal count out of range");
  const uint64_t rest = f.data_len - h - hx;
  if (ops_stored > rest) return corrupt("op stream truncated");
  if (!(method & kOpsZstd) && ops_stored != ops_raw) return corrupt("stored op stream length differs from its size");
  thread_local Scratch<uint8_t> bx, inner;
  thread_local std::vector<uint64_t> starts;
  uint8_t* const final_out = out;
  const uint8_t* const b_raw = b;
  if (sn) {
    // B's length from the preambles, checked before anything is
    // decompressed (below, once the op stream is read).
    if (!snappy_layout(*ext, b, starts)) return corrupt("a snappy extent does not decompress (or B over 4 MiB)");
    blen = starts.back();
    if (given && given_len != blen) return corrupt("the given B is not the extents' decompressed length");
    b = given ? given : bx.get(blen);
    out = inner.get(olen);
  }
  const uint8_t* ops_p = p + hx;
  const uint8_t* lit_p = ops_p + ops_stored;
  const uint64_t lit_stored = rest - ops_stored;
  if (!(method & (kLitZstd | kLitWords | kLitWordsStatic)) && lit_stored != lit_raw)
    return corrupt("stored literal stream length differs from its size");

  thread_local Scratch<uint8_t> ops_buf, lit_buf;
  const uint8_t* ops = ops_p;
  if (method & kOpsZstd) {
    uint8_t* d = ops_buf.get(ops_raw);
    if (!unzstd_with_prefix(ops_p, ops_stored, nullptr, 0, d, ops_raw)) return corrupt("op stream (zstd)");
    ops = d;
  }
  // Three arrays of nops values (literal lengths, zigzagged copy source
  // moves relative to the end of the previous copy, copy lengths), each as
  // a plane of low bytes (nops bytes) then the values >> 8 in LEB128.
  const uint8_t* qe = ops + ops_raw;
  const uint8_t* lo[3];
  const uint8_t* hi[3];
  {
    const uint8_t* s = ops;
    for (int a = 0; a < 3; ++a) {
      if (static_cast<uint64_t>(qe - s) < nops) return corrupt("op stream truncated");
      lo[a] = s;
      s += nops;
      hi[a] = s;
      // Most values are one byte (< 0x80: always well-formed and in
      // range), so eight of them are skipped at once when no byte of the
      // next eight continues a value; the others as get_var reads them.
      // (Every value was parsed twice, here and below: 12% of ds-csv's
      // apply, 190k ops; docs/BENCHMARKS.md, Dataset deltas run 6.)
      uint64_t v;
      for (uint32_t left = nops; left;) {
        uint64_t w;
        if (left >= 8 && qe - s >= 8 && (std::memcpy(&w, s, 8), !(w & 0x8080808080808080ull))) {
          s += 8;
          left -= 8;
          continue;
        }
        if (!get_var(s, qe, v) || v > (~uint64_t(0) >> 8)) return corrupt("op stream truncated");
        --left;
      }
    }
    if (s != qe) return corrupt("trailing bytes in the op stream");
  }
  auto next = [&](int a, uint32_t i) {
    uint64_t h;
    if (*hi[a] < 0x80)  // validated above: a value remains, so hi[a] < qe
      h = *hi[a]++;
    else
      get_var(hi[a], qe, h);
    return (h << 8) | lo[a][i];
  };
  // Line ops (method bit 3): the copy value's low bit says whether the op
  // counts in lines of B (its move and its length) or in bytes.
  const bool lines = method & kLineOps;
  // Every extent is decompressed and checked (docs/FORMAT.md "Snappy
  // pages"), read by a copy or not: the builder lists only extents whose
  // bytes the frame uses (dataset_builder.cc, drop_unread_extents). A
  // given B was decompressed by the caller from these extents.
  if (sn && !given && !snappy_expand(*ext, b_raw, starts, bx.data()))
    return corrupt("a snappy extent does not decompress (or B over 4 MiB)");
  const uint8_t* lit = lit_p;
  if (method & kLitZstd) {
    uint8_t* d = lit_buf.get(lit_raw);
    const bool pre = (method & kLitPrefix) && blen;
    if (!unzstd_with_prefix(lit_p, lit_stored, pre ? b : nullptr, pre ? blen : 0, d, lit_raw))
      return corrupt("literal stream (zstd)");
    lit = d;
  }
  if (method & kLitWords) {
    uint8_t* d = lit_buf.get(lit_raw);
    if (!words::decode(lit_p, lit_stored, b, blen, d, lit_raw)) return corrupt("literal stream (words)");
    lit = d;
  }
  if (method & kLitWordsStatic) {
    uint8_t* d = lit_buf.get(lit_raw);
    if (!wrans::decode(lit_p, lit_stored, b, blen, d, lit_raw)) return corrupt("literal stream (static words)");
    lit = d;
  }
  thread_local std::vector<uint32_t> t;
  if (lines) line_table(b, blen, t);
  const uint64_t nlines = lines ? t.size() - 1 : 0;
  uint64_t pos = 0, litpos = 0, cursor = 0;
  int64_t cursor_line = 0;  // idx(cursor) after a line op, else -1 (searched when needed)
  for (uint32_t i = 0; i < nops; ++i) {
    const uint64_t l = next(0, i), z = next(1, i);
    uint64_t c = next(2, i);
    if (l > lit_raw - litpos || l > olen - pos) return corrupt("op " + std::to_string(i) + ": literals overrun");
    std::memcpy(out + pos, lit + litpos, l);
    pos += l;
    litpos += l;
    const int64_t move = static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1);
    if (lines && (c & 1)) {
      if (cursor_line < 0) cursor_line = static_cast<int64_t>(line_index(t, cursor));
      const int64_t s = cursor_line + move;
      const uint64_t count = c >> 1;
      if (s < 0 || static_cast<uint64_t>(s) > nlines || count > nlines - static_cast<uint64_t>(s))
        return corrupt("op " + std::to_string(i) + ": lines outside the base ranges");
      const uint64_t src = t[s];
      c = t[s + count] - src;
      if (c > olen - pos) return corrupt("op " + std::to_string(i) + ": copy outside the frame");
      if (c) std::memcpy(out + pos, b + src, c);
      pos += c;
      cursor = src + c;
      cursor_line = s + static_cast<int64_t>(count);
      continue;
    }
    cursor_line = -1;
    if (lines) c >>= 1;
    const int64_t src = static_cast<int64_t>(cursor) + move;
    if (src < 0 || static_cast<uint64_t>(src) > blen || c > blen - static_cast<uint64_t>(src) || c > olen - pos)
      return corrupt("op " + std::to_string(i) + ": copy outside the base ranges or the frame");
    if (c) std::memcpy(out + pos, b + src, c);
    pos += c;
    cursor = static_cast<uint64_t>(src) + c;
  }
  if (pos != olen || litpos != lit_raw) return corrupt("ops cover " + std::to_string(pos) + " of " + std::to_string(olen) + " bytes");
  if (sn && !snappy_output(out, olen, raw_len, final_out, f.out_len))
    return corrupt("snappy of the page is not " + std::to_string(f.out_len - raw_len) + " bytes");
  return Status::Ok();
}

}  // namespace

Status decode_patch(const Frame& f, const uint8_t* payload, const uint8_t* b, uint8_t* out) {
  return decode_patch_impl(f, payload, b, nullptr, 0, out);
}

Status decode_patch_expanded(const Frame& f, const uint8_t* payload, const uint8_t* b, const uint8_t* bx,
                             uint64_t bx_len, uint8_t* out) {
  return decode_patch_impl(f, payload, b, bx, bx_len, out);
}

}  // namespace tenpak
