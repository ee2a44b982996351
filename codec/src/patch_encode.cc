// Codec 10 (patch): the encoder (tenpak_codec_encode); the decoder is
// patch_decode.cc. tenpak/patch_codec.h describes the payload.
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "patch_internal.h"
#include "patch_words.h"
#include "patch_wrans.h"
#include "tenpak/patch_codec.h"

namespace tenpak {
namespace {

using namespace patch_detail;

void put_u32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
void put_var(std::string& s, uint64_t v) {
  while (v >= 0x80) { s.push_back(static_cast<char>((v & 0x7f) | 0x80)); v >>= 7; }
  s.push_back(static_cast<char>(v));
}

ZSTD_CCtx* pcctx() {
  thread_local struct C { ZSTD_CCtx* c = ZSTD_createCCtx(); ~C() { ZSTD_freeCCtx(c); } } t;
  return t.c;
}

// zstd of src with `prefix` as raw-content history; empty when it does not pay.
std::string zstd_with_prefix(const uint8_t* src, size_t n, const uint8_t* prefix, size_t pn, int level) {
  ZSTD_CCtx* c = pcctx();
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  int wlog = 10;
  while ((size_t(1) << wlog) < n + pn && wlog < 23) ++wlog;
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog);
  // Levels 19-22 are btultra2, which without a prefix parses its first block
  // twice (the first pass only collects statistics): a source of one block
  // (<= 128 KiB) costs twice btultra's time. ds-csv's literal streams (~100
  // KB a frame, no prefix): 6 frames, 586,887 B, to 54,535 B in 355 ms with
  // btultra2, 54,897 B (+0.7%) in 180 ms with btultra.
  if (level >= 19 && !pn && n <= (128u << 10)) ZSTD_CCtx_setParameter(c, ZSTD_c_strategy, ZSTD_btultra);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
  if (pn) ZSTD_CCtx_refPrefix(c, prefix, pn);
  std::string out(ZSTD_compressBound(n), '\0');
  size_t r = ZSTD_compress2(c, out.data(), out.size(), src, n);
  if (ZSTD_isError(r) || r >= n) return {};
  out.resize(r);
  return out;
}

// The level a stream of n bytes gets in a frame of out_len output bytes
// when `level` is asked for and B is not its prefix: levels 13-19 run at
// 2-5 MB/s on these streams, so a stream that is more than 1/64 of its
// frame would alone hold the build under 100 MB of output per CPU-second;
// such streams get level 9 (40-75 MB/s; 6-18% larger: docs/BENCHMARKS.md),
// and one that is more than half of its frame (new rows) level 3 (the
// trial's own output; pq-append's 5.5 MB of new rows' text: 177 ms at 9
// for 3% less).
int affordable_level(int level, size_t n, uint64_t out_len) {
  return n * 64 <= out_len ? level : n * 2 <= out_len ? std::min(level, 9) : std::min(level, 3);
}
// An op stream's level: 17 at most (18 and 19, btultra2, take twice its
// time for nothing: all op streams of GSM8K, ds-append, ds-csv, ds-conll,
// pq-append 345,909 B at 19, 345,414 at 17), and 3 where it is more than
// 1/64 of its frame: level 9 saved 2% of ds-csv's delta (493 against 504
// KB) for a tenth of its build. A frame whose literals are coded with B as
// their prefix (method bit 2: they resemble B) keeps 17 whatever its size:
// GSM8K's size target needs level 16 or more there (its op stream at 9:
// +374 B, over the target), and such a frame's level-19 literals cost 100
// times its op stream's level 17. One rule for encode_patch and
// patch_with_extents, read from the method byte each writes.
int ops_level(int level, size_t n, uint64_t out_len, uint8_t method) {
  return n * 64 <= out_len || (method & kLitPrefix) ? std::min(level, 17) : std::min(level, 3);
}

// The payload's head up to its literal count: extents, method, op count,
// the op stream's raw and stored lengths.
void put_patch_header(std::string& s, const std::vector<PatchExtent>& ext, uint8_t method, size_t n_ops,
                      size_t ops_raw, size_t ops_stored) {
  put_u32(s, static_cast<uint32_t>(ext.size()));
  for (auto& e : ext) { put_u64(s, e.offset); put_u32(s, e.len); }
  s.push_back(static_cast<char>(method));
  put_u32(s, static_cast<uint32_t>(n_ops));
  put_u32(s, static_cast<uint32_t>(ops_raw));
  put_u32(s, static_cast<uint32_t>(ops_stored));
}

// The op stream in byte units, or (with_lines) with every copy that is
// whole lines of B (line table t) counted in lines.
std::string op_stream_bytes(const std::vector<PatchOp>& ops, const std::vector<uint32_t>& t, bool with_lines) {
  std::vector<uint64_t> vals[3];
  for (auto& v : vals) v.reserve(ops.size());
  // line_index(t, c), searched first in the 64 lines from the previous
  // answer: copies mostly move forward through B (the same result as the
  // whole-table search, which was most of this function on ds-csv's 10k
  // ops a frame).
  auto line_at = [&t](uint64_t c, size_t& hint) -> uint64_t {
    if (hint > t.size() || (hint > 0 && t[hint - 1] >= c)) hint = 0;
    const auto lo = t.begin() + static_cast<std::ptrdiff_t>(hint);
    const auto hi = t.begin() + static_cast<std::ptrdiff_t>(std::min(t.size(), hint + 64));
    auto it = std::lower_bound(lo, hi, c);
    if (it == hi && hi != t.end()) it = std::lower_bound(hi, t.end(), c);
    hint = static_cast<size_t>(it - t.begin());
    return hint;
  };
  size_t h_copy = 0, h_cursor = 0;
  uint64_t cursor = 0;
  for (auto& o : ops) {
    bool whole = false;
    uint64_t a = 0, e = 0;
    if (with_lines && o.copy) {
      a = line_at(o.src, h_copy);
      e = line_at(o.src + o.copy, h_copy);
      whole = a < t.size() && t[a] == o.src && e < t.size() && t[e] == o.src + o.copy;
    }
    int64_t mv = whole ? static_cast<int64_t>(a) - static_cast<int64_t>(line_at(cursor, h_cursor))
                       : static_cast<int64_t>(o.src) - static_cast<int64_t>(cursor);
    vals[0].push_back(o.lit);
    vals[1].push_back((static_cast<uint64_t>(mv) << 1) ^ static_cast<uint64_t>(mv >> 63));
    vals[2].push_back(!with_lines ? o.copy : whole ? ((e - a) << 1) | 1 : uint64_t(o.copy) << 1);
    cursor = o.src + o.copy;
  }
  std::string raw;
  raw.reserve(ops.size() * 4);
  for (auto& v : vals) {
    for (uint64_t x : v) raw.push_back(static_cast<char>(x & 0xff));
    for (uint64_t x : v) put_var(raw, x >> 8);
  }
  return raw;
}

}  // namespace

std::string encode_patch(const std::vector<PatchExtent>& ext, const std::vector<PatchOp>& ops,
                         const std::string& literals, const uint8_t* b, size_t b_len, int level,
                         bool prefix, int line_ops, int words, const PatchSnappy* snappy) {
  if (!b_len) prefix = false;
  std::vector<uint32_t> t;
  if (line_ops) line_table(b, b_len, t);
  std::string raw = op_stream_bytes(ops, t, line_ops == 1), zo;
  bool lines = line_ops == 1;
  uint64_t out_len = 0;
  for (auto& o : ops) out_len += uint64_t(o.lit) + o.copy;
  std::optional<std::string> zo3;  // the op stream at level 3, when a trial made it
  auto zops = [&](const std::string& r, int lv) { return zstd_with_prefix(reinterpret_cast<const uint8_t*>(r.data()), r.size(), nullptr, 0, lv); };
  if (line_ops == 2 && level > 0) {
    // Whichever stream is smaller as stored, judged at level 3 (the two
    // differ by 0-30%; level 17 changes their order rarely), then only that
    // one coded at ops_level.
    std::string raw2 = op_stream_bytes(ops, t, true);
    std::string z1 = zops(raw, 3), z2 = zops(raw2, 3);
    if ((z2.empty() ? raw2.size() : z2.size()) < (z1.empty() ? raw.size() : z1.size())) { raw = std::move(raw2); lines = true; zo3 = std::move(z2); }
    else zo3 = std::move(z1);
  } else if (line_ops == 2) {
    std::string raw2 = op_stream_bytes(ops, t, true);
    if (raw2.size() < raw.size()) { raw = std::move(raw2); lines = true; }
  }
  std::string zl, wl;
  bool wrd = false, wl_done = false, wst = false;
  // Literals level 3 does not halve are not text (pq-column's float pages):
  // the word coder, a model of words, is not tried on them.
  bool textlike = true;
  const auto* lp = reinterpret_cast<const uint8_t*>(literals.data());
  const size_t ln = literals.size();
  auto word_code = [&] {  // method bit 4 or 6, wrans::encode_words's rule
    wst = wrans::encode_words(lp, ln, b, b_len, wl, words == 2 ? 4 : words == 3 ? 6 : 0);
    wl_done = true;
  };
  if (level > 0) {
    // Trials at level 3 (fast even with a 4 MiB prefix) decide what is
    // worth the time of `level`: literals that compress 8:1 alone are
    // repetitive (high levels crawl on those and gain little: level 9);
    // B as the prefix must save 10% (loading it at level 19 costs ~0.3 s
    // per MiB).
    std::string t0 = zstd_with_prefix(lp, ln, nullptr, 0, 3), t1;
    const size_t s0 = t0.empty() ? ln : t0.size();
    int lit_level = s0 * 8 < ln ? std::min(level, 9) : level;
    // B as the prefix of literals that are most of their frame (new rows)
    // is not tried: their level-3 trial with it (B indexed, up to 4 MiB)
    // refused it on every such frame measured (pq-append's 14 page frames
    // of new rows: 61 ms for nothing; ds-append's are word-coded).
    if (ln * 2 > out_len) prefix = false;
    if (prefix) {
      t1 = zstd_with_prefix(lp, ln, b, b_len, 3);
      prefix = !t1.empty() && t1.size() * 10 < s0 * 9;
    }
    // Literals that resemble B (its prefix pays) keep `level` (and their op
    // stream 17: ops_level).
    if (!prefix) lit_level = affordable_level(lit_level, ln, out_len);
    // Word-first: in a frame made mostly of literals (new records), the
    // word coder runs before `level`, and when it beats 80% of the level-3
    // trial by the margins of the rule below, that rule would pick it
    // whatever `level` gives: level 19 has not come under 0.8x of level 3
    // on such literals (text: 0.83-0.84 on ds-append's and pq-append's new
    // rows; ds-append's word-coded streams are 0.59x of level 3), so its
    // run (0.35 s per MiB of text) is skipped.
    textlike = s0 * 2 <= ln;
    bool sure = false;
    if (words == 1 && textlike && ln >= kWordsMinLiterals && ln * 2 >= out_len) {
      const size_t lb = std::min(s0, t1.empty() ? s0 : t1.size()) * 4 / 5;
      if (lb * 16 >= ln && lb * 100 >= out_len) {
        word_code();
        sure = wl.size() * 10 < lb * 9 && (lb - wl.size()) * 100 >= out_len;
      }
    }
    if (sure) {
      zl = std::move(wl);
      wrd = true;
      prefix = false;
    } else {
      if (!prefix && lit_level == 3) zl = t0;
      else zl = zstd_with_prefix(lp, ln, prefix ? b : nullptr, prefix ? b_len : 0, lit_level);
      if (zl.empty()) prefix = false;
      // A trial may be the smallest: on very repetitive literals (a field
      // added to every record, 21 bytes a row) levels 6-19 lose to level 3
      // (1.17 MB of them: 35.7 KB at level 9, 21.2 KB at level 3).
      if (prefix && t1.size() < zl.size()) zl = std::move(t1);
      if (!t0.empty() && t0.size() < (zl.empty() ? ln : zl.size())) { zl = std::move(t0); prefix = false; }
    }
  }
  // Word-coded literals where they pay (below: a frame of new text
  // records), or always when asked (words = 2: golden files, tests). Not
  // tried on literals zstd packs 16:1 (repeated fields: a word model codes
  // each repeat as a token, zstd as one match; ds-addfield's trial doubled
  // its build time and never won), nor where zstd's whole stream is under
  // 2% of the frame: the rule below asks for 1% of the frame saved, and no
  // measured word-coded stream came under half of zstd's (ds-append's new
  // rows: 0.70x of level 19); ds-csv's literals at level 9 (1.3-1.8% of a
  // frame) ran the trial for nothing, a fifth of its build.
  const size_t zsize = zl.empty() ? ln : zl.size();
  if (!wrd && (words >= 2 || (words == 1 && level > 0 && textlike && ln >= kWordsMinLiterals && zsize * 16 >= ln &&
                              zsize * 50 >= out_len))) {
    if (!wl_done) word_code();
    // Kept when at least 10% smaller and the bytes saved are at least 1% of
    // the frame: a word-coded frame rebuilds far slower than a zstd one
    // (~30 MB/cpu-s of literals, plus priming from up to 256 KiB of B), so
    // it must buy a real share of the frame. Measured (docs/BENCHMARKS.md):
    // ds-append's frames of new rows save 7% of their size (28% of zstd's);
    // ds-csv's edited frames saved 0.2% of theirs while its rebuild fell
    // from ~430 to ~80 MB/cpu-s.
    if (words >= 2 || (wl.size() * 10 < zsize * 9 && (zsize - wl.size()) * 100 >= out_len)) {
      zl = std::move(wl);
      wrd = true;
      prefix = false;
    }
  }
  uint8_t method = (wrd ? (wst ? kLitWordsStatic : kLitWords) : 0) | (zl.empty() || wrd ? 0 : kLitZstd) |
                   (zl.empty() || wrd || !prefix ? 0 : kLitPrefix) | (lines ? kLineOps : 0) | (snappy ? kSnappy : 0);
  if (level > 0) {
    const int lv = ops_level(level, raw.size(), out_len, method);
    zo = lv == 3 && zo3 ? std::move(*zo3) : zops(raw, lv);
  }
  if (!zo.empty()) method |= kOpsZstd;
  std::string s;
  put_patch_header(s, ext, method, ops.size(), raw.size(), zo.empty() ? raw.size() : zo.size());
  put_u32(s, static_cast<uint32_t>(literals.size()));
  if (snappy) { put_u32(s, snappy->inner_len); put_u32(s, snappy->raw_len); }
  s += zo.empty() ? raw : zo;
  s += zl.empty() && !wrd ? literals : zl;
  return s;
}

std::string patch_with_extents(const std::string& p, const std::vector<PatchExtent>& ext,
                               const std::vector<PatchOp>& ops, int level) {
  auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, p.data() + at, 4); return v; };
  if (p.size() < 4) return {};
  const size_t h = 4 + 12 * size_t(u32(0));
  if (p.size() < h + 17) return {};
  const uint8_t method = static_cast<uint8_t>(p[h]);
  if (method & (kLitPrefix | kLineOps | kLitWords | kLitWordsStatic)) return {};
  const size_t hx = (method & kSnappy) ? 25 : 17;
  if (p.size() < h + hx || u32(h + 9) > p.size() - h - hx) return {};
  const size_t lit_at = h + hx + u32(h + 9);
  std::string raw = op_stream_bytes(ops, {}, false), zo;
  uint64_t out_len = 0;
  for (auto& o : ops) out_len += uint64_t(o.lit) + o.copy;
  if (level > 0)
    zo = zstd_with_prefix(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), nullptr, 0,
                          ops_level(level, raw.size(), out_len, method));
  std::string s;
  put_patch_header(s, ext, (method & ~kOpsZstd) | (zo.empty() ? 0 : kOpsZstd), ops.size(), raw.size(),
                   zo.empty() ? raw.size() : zo.size());
  s.append(p, h + 13, hx - 13);  // literal count, snappy page lengths
  s += zo.empty() ? raw : zo;
  s.append(p, lit_at, std::string::npos);
  return s;
}

}  // namespace tenpak
