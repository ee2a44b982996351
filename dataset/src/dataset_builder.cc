// Dataset delta building: choose a base file per derived file, describe the
// derived file as ops (literal bytes, then a copy of a base range), cut the
// ops into frames of at most 1 MiB, encode frames in parallel (codec 10
// patch, copy_base, zstd), write payloads in order, then the index. A record
// file goes through these steps a window of records at a time
// (DatasetBuildOptions::window_bytes), so that its per-record state is a
// window's, not the file's; frames decode alone, so a frame that ends at a
// window's end is an ordinary frame.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>
#include <sys/stat.h>
#include <unistd.h>
#include <functional>
#include <unordered_map>

#include "tenpak/block_source.h"
#include "tenpak/dataset.h"
#include "tenpak/frame_codec.h"
#include "tenpak/model.h"
#include "tenpak/out_file.h"
#include "tenpak/patch_codec.h"
#include "tenpak/scratch.h"
#include "content_hash.h"
#include "hash_index.h"
#include "parquet_pages.h"

namespace fs = std::filesystem;

namespace tenpak {
namespace {

constexpr uint32_t kMinCopy = 8;        // shorter matches stay literal (an op costs ~2-3 bytes)
// A copy that does not continue the previous one needs this many bytes: a
// move costs more than zstd's match against B (GSM8K: 16: 0.050, 32: 0.044, 64: 0.042, 128: 0.041).
constexpr uint64_t kMinJump = 128;
// A copy that continues the record after an insertion or a replacement (a
// small forward move, see encode_edit): 16 cost GSM8K 5%, 64 cost ds-csv 4%
// and CoNLL 1% (32: GSM8K +0.4%, ds-csv -2%, ds-edit -8% against 128).
constexpr uint64_t kMinForward = 32;
constexpr uint64_t kMergeGap = 4096;    // base ranges this close share one extent
constexpr uint64_t kBaseBudget = 2u << 20;  // |B| a frame aims at (the format allows 4 MiB)
constexpr uint32_t kExtentBudget = 1024;
constexpr uint64_t kDictSample = 64 << 10;  // base sample added to frames made mostly of new bytes

struct InFile {
  std::string name, path;
  std::unique_ptr<Mapping> map;
  uint32_t mode = 0644;
  const uint8_t* data() const { return map->data(); }
  uint64_t size() const { return map->size(); }
};

// A file or every regular file under a directory (sorted, .git skipped).
Status list_files(const std::string& root, std::vector<InFile>& out) {
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> names;
  if (fs::is_regular_file(root, ec)) {
    names.push_back({fs::path(root).filename().string(), root});
  } else if (fs::is_directory(root, ec)) {
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const auto& p = it->path();
      if (it->is_directory() && (p.filename() == ".git" || p.filename() == ".cache")) {
        it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file()) continue;
      names.push_back({fs::relative(p, root).generic_string(), p.string()});
    }
    if (ec) return {Errc::io, root + ": " + ec.message()};
  } else {
    return {Errc::invalid, root + ": not found"};
  }
  std::sort(names.begin(), names.end());
  for (auto& [n, p] : names) {
    if (!is_safe_relative_path(n)) return {Errc::unsupported, p + ": unsafe file name '" + n + "'"};
    InFile f;
    f.name = n;
    f.path = p;
    auto m = Mapping::open(p);
    if (!m.ok()) return m.status();
    f.map = std::move(m.value());
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) f.mode = st.st_mode & 0777;
    out.push_back(std::move(f));
  }
  return Status::Ok();
}

// Literal bytes (taken from the derived file at the current position), then
// a copy of base[src, src + copy).
struct Op {
  uint64_t lit = 0;
  uint64_t src = 0;
  uint64_t copy = 0;
};

// Codec 10's ops and literal stream for ops over the derived bytes out: a
// copy's source is b_pos(op.src), its position in the frame's B; an op
// without a copy keeps the source where the previous copy ended (a move of 0).
template <class BPos>
void to_patch_ops(const std::vector<Op>& in, const uint8_t* out, BPos b_pos, std::vector<PatchOp>& ops,
                  std::string& lit) {
  uint64_t pos = 0;
  for (auto& o : in) {
    PatchOp po;
    po.lit = static_cast<uint32_t>(o.lit);
    lit.append(reinterpret_cast<const char*>(out + pos), o.lit);
    pos += o.lit;
    po.src = o.copy ? b_pos(o.src) : ops.empty() ? 0 : ops.back().src + ops.back().copy;
    po.copy = static_cast<uint32_t>(o.copy);
    pos += o.copy;
    ops.push_back(po);
  }
}

// Drops the extents no copy reads (context ranges, the base sample, page
// candidates that gave no copy), copy sources moved down by the bytes
// dropped before them; extents holding one copy stay adjacent in B. `at`:
// where each extent starts in B, then |B| (ext.size() + 1 values). Such
// extents still cost 12 bytes each, and a reader fetches them (and, for
// snappy pages, decompresses them: docs/FORMAT.md asks every extent to be a
// valid stream). Only for frames whose B serves the copies alone: a literal
// prefix, line ops or a word sample read all of B. False (nothing changed)
// when every extent is read.
// `kept_idx`, when given, gets the indices of the extents kept.
bool drop_unread_extents(std::vector<PatchExtent>& ext, const std::vector<uint64_t>& at, std::vector<PatchOp>& ops,
                         std::vector<size_t>* kept_idx = nullptr) {
  const size_t n = ext.size();
  auto holder = [&](uint64_t src) { return static_cast<size_t>(std::upper_bound(at.begin(), at.begin() + n, src) - at.begin()) - 1; };
  if (kept_idx) kept_idx->clear();
  std::vector<uint8_t> read(n, 0);
  for (auto& o : ops)
    if (o.copy)
      for (size_t k = holder(o.src); k < n && at[k] < o.src + o.copy; ++k) read[k] = at[k + 1] > at[k];
  std::vector<uint64_t> shift(n, 0);
  std::vector<PatchExtent> kept;
  uint64_t gone = 0;
  for (size_t k = 0; k < n; ++k) {
    if (!read[k]) { gone += at[k + 1] - at[k]; continue; }
    shift[k] = gone;
    kept.push_back(ext[k]);
    if (kept_idx) kept_idx->push_back(k);
  }
  if (kept.size() == n) return false;
  uint64_t cursor = 0;
  for (auto& o : ops) {
    o.src = o.copy ? o.src - shift[holder(o.src)] : cursor;
    cursor = o.src + o.copy;
  }
  ext = std::move(kept);
  return true;
}

// B as the literals' prefix only where there are enough literals for it
// to pay: loading a 2 MiB prefix at level 19 costs ~0.5 s, and a frame of
// copies with a few edited words gains a few bytes from it.
inline bool literal_prefix_pays(uint64_t lits, uint64_t b_size) { return lits * 64 >= b_size || lits >= (64u << 10); }
// A base range worth having in a frame's B beside its copies (the matched
// record, the base region a changed chunk replaced): literals compress
// against it.
struct Context {
  uint64_t out_pos, base_off, len;
};

class OpList {
 public:
  std::vector<Op> ops;
  std::vector<Context> ctx;
  uint64_t pos = 0;  // output bytes described so far
  void literal(uint64_t n) { pending_ += n; pos += n; lits_ += n; }
  void copy(uint64_t src, uint64_t n) {
    if (!n) return;
    if (pending_ == 0 && !ops.empty() && ops.back().src + ops.back().copy == src) {
      ops.back().copy += n;
    } else {
      ops.push_back({pending_, src, n});
      pending_ = 0;
    }
    pos += n;
  }
  void context(uint64_t base_off, uint64_t len) {
    if (len) ctx.push_back({pos, base_off, len});
  }
  void finish() {
    if (pending_) ops.push_back({pending_, 0, 0});
    pending_ = 0;
  }
  // Literal bytes described so far.
  uint64_t literals() const { return lits_; }
  void clear() { ops.clear(); ctx.clear(); pos = pending_ = lits_ = 0; }
  // Appends the ops and contexts of `o` (built from position 0) at pos.
  void append(const OpList& o) {
    for (auto& c : o.ctx) ctx.push_back({pos + c.out_pos, c.base_off, c.len});
    for (auto& x : o.ops) { literal(x.lit); copy(x.src, x.copy); }
    literal(o.pending_);
  }

 private:
  uint64_t pending_ = 0, lits_ = 0;
};

using dataset_internal::load64;
using dataset_internal::window16;
using dataset_internal::HashIndex;
inline uint32_t hash8(const uint8_t* p, int bits) { return static_cast<uint32_t>((load64(p) * 0x9E3779B97F4A7C15ull) >> (64 - bits)); }

// Encodes derived bytes r[0, rn) as an edit of base bytes b[0, bn) (base file
// offset boff): greedy copies of at least kMinCopy bytes, preferring the
// continuation of the previous copy; the rest literal. `in_place`: b follows
// a base record matched in place (the next record's copy likely continues
// where b ends).
void encode_edit(const uint8_t* r, uint64_t rn, const uint8_t* b, uint64_t bn, uint64_t boff, bool in_place, OpList& ol) {
  if (bn < kMinCopy || rn < kMinCopy) { ol.literal(rn); return; }
  // A large b (a Parquet page frame's base pages, up to 3 MiB) is indexed
  // at every 4th position: a match of 11 bytes or more still hits at one of
  // its first 4 positions and is extended back to where it starts, and the
  // table (2 entries per position indexed) stays within the caches. At
  // every position the table of 3 MiB was 32 MiB, filled and cleared per
  // page frame: 40% of pq-append's build without zstd.
  const uint64_t step = bn >= (256u << 10) ? 4 : 1;
  int bits = 8;
  // Two slots per position indexed, one with step 4: pq-column's page
  // frames' tables (B of 1-1.3 MB) were 4 MiB, their stores and look-ups
  // cache misses; at 2 MiB its build is ~2% faster for 634 B more (every
  // other pair of docs/BENCHMARKS.md's table byte-identical).
  while ((uint64_t(1) << bits) < (step == 1 ? 2 : 1) * bn / step && bits < 26) ++bits;
  // The 8-byte hash table of b, built when the continuation first fails
  // (most edited records are copies along one diagonal and a literal).
  thread_local std::vector<uint32_t> table;
  bool indexed = false;
  uint64_t i = 0, lit_start = 0, expect = 0, miss = 0;
  while (i + 8 <= rn) {
    int64_t cand = -1;
    if (expect + 8 <= bn && load64(r + i) == load64(b + expect)) {
      cand = static_cast<int64_t>(expect);
    } else {
      if (!indexed) {
        // Not cleared (the memset of a page frame's 2 MiB table was 1% of
        // pq-column's build): a slot left from an earlier b holds a position
        // that fails the look-up's checks (on the grid, within b, its 8 bytes
        // hashing to the slot: such a position of this b was stored there),
        // so the copies found are those of a cleared table.
        if (table.size() < (size_t(1) << bits)) table.resize(size_t(1) << bits);
        // Each slot's line fetched 16 positions ahead: the table of a page
        // frame's B (2 MiB) is past the L2 cache, and these stores were a
        // twentieth of pq-column's build.
        uint64_t j = 0;
        for (const uint64_t ahead = 16 * step; j + ahead + 8 <= bn; j += step) {
          __builtin_prefetch(&table[hash8(b + j + ahead, bits)], 1);
          table[hash8(b + j, bits)] = static_cast<uint32_t>(j + 1);
        }
        for (; j + 8 <= bn; j += step) table[hash8(b + j, bits)] = static_cast<uint32_t>(j + 1);
        indexed = true;
      }
      // The slot of a position a few look-ups on fetched now: the table
      // (2 MiB for a page frame's B) is past the L2 cache, and a run of new
      // bytes (pq-column's recomputed floats) looks up position after
      // position (advance below: the same pattern every 4 * (1 + k) positions
      // with b indexed at every 4th, every 1 + k at every position).
      if (const uint64_t ahead = (step == 1 ? 16 : 64) * (1 + (miss >= 256 ? std::min<uint64_t>(miss >> 8, 3) : 0));
          i + ahead + 8 <= rn)
        __builtin_prefetch(&table[hash8(r + i + ahead, bits)]);
      if (uint32_t t = table[hash8(r + i, bits)];
          t && t + 7 <= bn && ((t - 1) & (step - 1)) == 0 && load64(b + t - 1) == load64(r + i))
        cand = t - 1;
    }
    // Past 256 positions without a copy kept (new text; a match too short
    // to keep counts as none: new text repeats words), in a b of 64 KiB or
    // more, fewer positions are looked up. With b indexed at every 4th
    // position: every other run of 4, then one in 3 and one in 4 (a run of
    // 4 finds any match it lies in; one of 24 bytes or more, less than a
    // forward copy needs, always holds such a run); indexed at every
    // position: one in 2, 3, then 4 (matches of 12 bytes or more found). A
    // frame of new rows looked up every byte of its 1 MiB (40% of
    // pq-append's build).
    auto advance = [&] {
      ++miss;
      const uint64_t k = miss >= 256 && bn >= (64u << 10) ? std::min<uint64_t>(miss >> 8, 3) : 0;
      i += step == 1 ? 1 + k : (i & 3) == 3 ? 1 + 4 * k : 1;
    };
    if (cand < 0) { advance(); continue; }
    uint64_t s = static_cast<uint64_t>(cand), L = 8;
    while (i + L + 8 <= rn && s + L + 8 <= bn && load64(r + i + L) == load64(b + s + L)) L += 8;
    while (i + L < rn && s + L < bn && r[i + L] == b[s + L]) ++L;
    uint64_t back = 0;
    while (i - back > lit_start && s > back && r[i - back - 1] == b[s - back - 1]) ++back;
    // A copy from elsewhere in the record costs a move besides its length:
    // short ones are cheaper as literals (zstd finds them in B anyway). One
    // that skips no more base bytes than the literals before it (plus 16)
    // continues the record after an insertion or a replacement: a small
    // forward move.
    // One that ends both records in place merges with the copy of the next
    // record when that one is unchanged: it costs only its move.
    const uint64_t c = s - back;
    const bool forward = c >= expect && c - expect <= i - back - lit_start + 16;
    const uint64_t need = s == expect || (in_place && forward && i + L == rn && s + L == bn) ? kMinCopy
                          : forward                                              ? kMinForward
                                                                                 : kMinJump;
    if (L + back < need) { advance(); continue; }
    miss = 0;
    ol.literal(i - back - lit_start);
    ol.copy(boff + s - back, L + back);
    i += L;
    lit_start = i;
    expect = s + L;
  }
  ol.literal(rn - lit_start);
}

// ---- records ----------------------------------------------------------------

struct BaseIndex {
  const InFile* f = nullptr;
  std::vector<uint64_t> ends;  // record ends
  HashIndex exact;    // (hash of record bytes, record index)
  // One bit per record hash in at least 16 bits per record (its low bits;
  // the index's directory uses the top ones): a derived record found in no
  // base record (ds-csv: every row, a column was added) is refused here by
  // one cached load instead of the index's directory and bucket, two cache
  // misses that were 60% of encode_records.
  std::vector<uint64_t> seen;
  uint64_t seen_mask = 0;
  HashIndex anchors;  // (anchor hash, record index); built on first need
  bool anchors_built = false;
  uint64_t start(uint32_t k) const { return k ? ends[k - 1] : 0; }
};

// Content anchors of a record: the hashes of 16-byte windows whose first 8
// bytes hash (one multiply) into 1/32 of the range (one per 32 bytes on
// average), at most 48 per record. Selecting by the full window hash cost
// three multiplies a byte of the base: a fifth of ds-csv's build.
template <class F>
void for_anchors(const uint8_t* p, uint64_t n, F&& f) {
  if (n < 16) return;
  int got = 0;
  for (uint64_t i = 0; i + 16 <= n && got < 48; ++i)
    if ((load64(p + i) * 0x9E3779B97F4A7C15ull) >> 59 == 0) { f(window16(p + i)); ++got; }
}

void build_anchors(BaseIndex& bi) {
  const uint8_t* p = bi.f->data();
  std::vector<HashIndex::Entry> a;
  // HashIndex counts its entries in 32 bits: the anchors past 2^32 - 1 (a
  // base of ~128 GiB of records) are left out; anchors only propose
  // records to try, so matching finds less, and nothing else changes.
  constexpr size_t kMaxAnchors = 0xffffffffu - 48;
  for (uint32_t k = 0; k < bi.ends.size() && a.size() <= kMaxAnchors; ++k) {
    uint64_t s = bi.start(k);
    for_anchors(p + s, bi.ends[k] - s, [&](uint64_t h) { a.push_back({h, k}); });
  }
  bi.anchors.build(a);
  bi.anchors_built = true;
}

// For a base file that records_fit at most kMaxBaseRecords (record indices
// are 32-bit).
void index_records(BaseIndex& bi, bool blocks) {
  bi.ends = split_records(bi.f->data(), bi.f->size(), blocks);
  std::vector<HashIndex::Entry> e;
  e.reserve(bi.ends.size());
  for (uint32_t k = 0; k < bi.ends.size(); ++k) {
    uint64_t s = bi.start(k);
    e.push_back({xxh64(bi.f->data() + s, bi.ends[k] - s), k});
  }
  bi.exact.build(e);
  uint64_t bits = 1024;
  while (bits < 16 * e.size()) bits <<= 1;
  bi.seen.assign(bits / 64, 0);
  bi.seen_mask = bits - 1;
  for (auto& [h, k] : e) bi.seen[(h & bi.seen_mask) >> 6] |= uint64_t(1) << (h & 63);
}

// h: xxh64 of the record.
int64_t find_exact(const BaseIndex& bi, const uint8_t* p, uint64_t n, uint64_t h) {
  if (!(bi.seen[(h & bi.seen_mask) >> 6] >> (h & 63) & 1)) return -1;
  auto it = bi.exact.find(h);
  for (; it != bi.exact.end() && it->first == h; ++it) {
    uint64_t s = bi.start(it->second);
    if (bi.ends[it->second] - s == n && std::memcmp(bi.f->data() + s, p, n) == 0) return it->second;
  }
  return -1;
}

// What matching carries from one window of a derived file's records to
// the next (build_file codes a file window by window), so that a record is
// matched as it would be in one pass over the file.
struct RecordMatch {
  int64_t prev = -1;
  bool prev_in_place = true;  // prev was found exact, or as the record after its predecessor's match
};

// Ops of the derived records that end at `ends` (file offsets; the first
// starts at `from`, 0 or a record end), appended to ol from its position.
void encode_records(const InFile& d, BaseIndex& bi, uint64_t from, const std::vector<uint64_t>& ends, RecordMatch& st,
                    OpList& ol, DatasetFileReport& rep) {
  const uint8_t* p = d.data();
  const uint8_t* bp = bi.f->data();
  rep.records += ends.size();
  int64_t& prev = st.prev;
  bool& prev_in_place = st.prev_in_place;
  std::unordered_map<uint32_t, int> votes;
  auto start = [&](size_t k) { return k ? ends[k - 1] : from; };
  // The records' hashes first, so that each one's bit of `seen` (a cache
  // miss; ds-csv misses on every row) is fetched 16 records ahead.
  std::vector<uint64_t> hs(ends.size());
  for (size_t k = 0; k < ends.size(); ++k) hs[k] = xxh64(p + start(k), ends[k] - start(k));
  for (size_t k = 0; k < ends.size(); ++k) {
    const uint64_t s = start(k), n = ends[k] - s;
    if (k + 16 < ends.size()) __builtin_prefetch(bi.seen.data() + ((hs[k + 16] & bi.seen_mask) >> 6));
    int64_t m = find_exact(bi, p + s, n, hs[k]);
    if (m >= 0) {
      ol.copy(bi.start(static_cast<uint32_t>(m)), n);
      ++rep.exact;
      prev = m;
      prev_in_place = true;
      continue;
    }
    // The record after the previous match, when it keeps at least half of
    // this record as its prefix and suffix (a revision edits records in
    // place). Anchor votes go wrong there: short repeated content (CoNLL's
    // "word\tTAG" lines) gives many records the same anchors and only the
    // first few holding one get its vote.
    const int64_t next = prev + 1;
    const bool has_next = next < static_cast<int64_t>(bi.ends.size());
    uint64_t near = 0;  // prefix + suffix shared with record `next`
    if (has_next) {
      const uint64_t bs = bi.start(static_cast<uint32_t>(next)), bn = bi.ends[next] - bs;
      const uint8_t *x = p + s, *y = bp + bs;
      const uint64_t mn = std::min(n, bn);
      uint64_t pre = 0, suf = 0;
      while (pre + 8 <= mn && load64(x + pre) == load64(y + pre)) pre += 8;
      while (pre < mn && x[pre] == y[pre]) ++pre;
      while (suf < mn - pre && x[n - 1 - suf] == y[bn - 1 - suf]) ++suf;
      near = pre + suf;
    }
    // Edits against `next` first (when there is one): kept when it keeps
    // half of this record as prefix + suffix, or its edit
    // leaves at most half of the record literal; otherwise also against the
    // record with most shared anchors (ties and records without anchors go
    // to `next`), keeping the edit with fewer literal bytes (the tie to
    // `next`). The anchor index is built only when first needed.
    auto trial = [&](int64_t k, OpList& t) {
      t.clear();
      const uint64_t bs = bi.start(static_cast<uint32_t>(k)), bn = bi.ends[k] - bs;
      t.context(bs, bn);
      encode_edit(p + s, n, bp + bs, bn, bs, k == next && prev_in_place, t);
      return t.literals();
    };
    thread_local OpList a, b;
    int64_t best = -1;
    int bestv = 0;
    uint64_t lits = n;
    // `next` is tried even when it shares less than 16 bytes of prefix and
    // suffix (ds-csv: a first cell edited, a column added at the end): the
    // anchor index (a hash of every 16-byte window of the base, a fifth of
    // ds-csv's build) is built only when some record's edit against `next`
    // leaves more than half of it literal.
    if (has_next) {
      lits = trial(next, a);
      best = next;
      bestv = near >= 16 ? 1 : 0;
    }
    if (best < 0 || (2 * near < n && 2 * lits > n)) {
      if (!bi.anchors_built) build_anchors(bi);
      votes.clear();
      for_anchors(p + s, n, [&](uint64_t h) {
        auto it = bi.anchors.find(h);
        int seen = 0;
        for (; it != bi.anchors.end() && it->first == h && seen < 8; ++it, ++seen) ++votes[it->second];
      });
      int64_t vb = -1;
      int vv = 0;
      for (auto& [rk, v] : votes)
        if (v > vv || (v == vv && std::llabs(int64_t(rk) - next) < std::llabs(vb - next))) { vb = rk; vv = v; }
      if (vb < 0 && has_next && best < 0) vb = next;
      if (vb >= 0 && vb != best) {
        const uint64_t lv = trial(vb, b);
        if (best < 0 || lv < lits) { std::swap(a, b); lits = lv; best = vb; bestv = vv; }
      }
    }
    if (best < 0) {
      ol.literal(n);
      ++rep.fresh;
      prev_in_place = false;
      continue;
    }
    ol.append(a);
    if (lits == n && bestv == 0) { ++rep.fresh; prev_in_place = false; continue; }
    ++rep.edited;
    prev_in_place = prev_in_place && best == next;
    prev = best;
  }
}

// ---- chunks -------------------------------------------------------------------

struct ChunkIndex {
  std::vector<uint64_t> ends;
  std::vector<std::pair<uint64_t, uint32_t>> by_hash;  // (xxh64 of chunk, chunk index), sorted
};

void index_chunks(const InFile& b, ChunkIndex& ci) {
  ci.ends = cdc_chunks(b.data(), b.size());
  for (uint32_t k = 0; k < ci.ends.size(); ++k) {
    uint64_t s = k ? ci.ends[k - 1] : 0;
    ci.by_hash.push_back({xxh64(b.data() + s, ci.ends[k] - s), k});
  }
  std::sort(ci.by_hash.begin(), ci.by_hash.end());
}

// Chunk ops of derived bytes [a, e) (chunk boundaries from a).
void encode_chunk_range(const InFile& d, const InFile& b, const ChunkIndex& ci, uint64_t a, uint64_t e, OpList& ol,
                        DatasetFileReport& rep) {
  const uint8_t* p = d.data();
  std::vector<uint64_t> ends = cdc_chunks(p + a, e - a);
  for (auto& x : ends) x += a;
  rep.records += ends.size();
  // Matched chunk (or -1) for each derived chunk.
  std::vector<int64_t> src(ends.size(), -1);
  for (size_t k = 0; k < ends.size(); ++k) {
    uint64_t s = k ? ends[k - 1] : a, n = ends[k] - s;
    uint64_t h = xxh64(p + s, n);
    auto it = std::lower_bound(ci.by_hash.begin(), ci.by_hash.end(), std::make_pair(h, uint32_t(0)));
    for (; it != ci.by_hash.end() && it->first == h; ++it) {
      uint64_t bs = it->second ? ci.ends[it->second - 1] : 0;
      if (ci.ends[it->second] - bs == n && std::memcmp(b.data() + bs, p + s, n) == 0) { src[k] = bs; break; }
    }
  }
  for (size_t k = 0; k < ends.size();) {
    uint64_t s = k ? ends[k - 1] : a;
    if (src[k] >= 0) {
      ol.copy(static_cast<uint64_t>(src[k]), ends[k] - s);
      ++rep.exact;
      ++k;
      continue;
    }
    // A run of new chunks: the base region between the neighbouring matches
    // is probably their old version (context for zstd's long matches).
    size_t e = k;
    while (e < ends.size() && src[e] < 0) ++e;
    uint64_t run = ends[e - 1] - s;
    uint64_t lo, hi;
    if (k > 0 && src[k - 1] >= 0) lo = static_cast<uint64_t>(src[k - 1]) + (ends[k - 1] - (k > 1 ? ends[k - 2] : a));
    else lo = std::min<uint64_t>(s, b.size());
    if (e < ends.size() && src[e] >= 0 && static_cast<uint64_t>(src[e]) > lo) hi = static_cast<uint64_t>(src[e]);
    else hi = lo + run;
    hi = std::min({hi, b.size(), lo + std::max<uint64_t>(run, 1) + (256 << 10)});
    if (hi > lo) ol.context(lo, std::min<uint64_t>(hi - lo, 1 << 20));
    ol.literal(run);
    rep.fresh += e - k;
    k = e;
  }
}

// Chunk ops of a derived file; the ranges in `skip` (sorted, disjoint: the
// Parquet pages that become page frames, whose ops are not used) are one
// literal each, not chunked: pq-column's changed pages are most of its file
// and their chunks were ~3% of its build (docs/BENCHMARKS.md, Dataset deltas
// run 15). The chunks after a skipped range start at its end.
void encode_chunks(const InFile& d, const InFile& b, const ChunkIndex& ci,
                   const std::vector<std::pair<uint64_t, uint64_t>>& skip, OpList& ol, DatasetFileReport& rep) {
  uint64_t pos = 0;
  for (const auto& [a, e] : skip) {
    if (a > pos) encode_chunk_range(d, b, ci, pos, a, ol, rep);
    ol.literal(e - a);
    ++rep.records;
    ++rep.fresh;
    pos = e;
  }
  if (d.size() > pos) encode_chunk_range(d, b, ci, pos, d.size(), ol, rep);
}

// ---- frames -------------------------------------------------------------------

struct FrameJob {
  uint64_t off = 0, len = 0;
  std::vector<Op> ops;  // within the frame, src in base-file coordinates
  std::vector<std::pair<uint64_t, uint64_t>> ctx;  // base ranges (offset, len)
  bool sampled = true;
  int64_t page = -1;  // a Parquet page tried as a snappy page frame (index into the file's pages)
};

// Cuts ops into frames of at most kMaxFrameOut output bytes.
std::vector<FrameJob> cut_frames(const OpList& ol, uint64_t size) {
  std::vector<FrameJob> jobs;
  uint64_t pos = 0;
  size_t ci = 0;
  FrameJob cur;
  auto flush = [&] {
    if (cur.len == 0) return;
    while (ci < ol.ctx.size() && ol.ctx[ci].out_pos < cur.off + cur.len) {
      cur.ctx.push_back({ol.ctx[ci].base_off, ol.ctx[ci].len});
      ++ci;
    }
    jobs.push_back(std::move(cur));
    cur = FrameJob{};
    cur.off = pos;
  };
  for (const Op& o0 : ol.ops) {
    Op o = o0;
    while (o.lit || o.copy) {
      uint64_t room = kMaxFrameOut - cur.len;
      if (room == 0) { flush(); continue; }
      Op part;
      part.lit = std::min(o.lit, room);
      room -= part.lit;
      part.src = o.src;
      part.copy = (part.lit == o.lit) ? std::min(o.copy, room) : 0;
      cur.ops.push_back(part);
      cur.len += part.lit + part.copy;
      pos += part.lit + part.copy;
      o.lit -= part.lit;
      o.src += part.copy;
      o.copy -= part.copy;
    }
  }
  flush();
  (void)size;
  return jobs;
}

struct Encoded {
  EncodedFrame e;
  uint32_t base_file = kNoBase;
  uint64_t base_off = 0, base_len = 0;
  Xxh128 hash{};
};

// Extents for a frame: its copy sources and context ranges, sorted and
// merged; contexts are dropped first, then the frame is split when over
// budget (returns false).
bool make_extents(const FrameJob& j, const uint8_t* base, uint64_t base_size, bool with_ctx, bool with_dict,
                  std::vector<PatchExtent>& ext) {
  // Three runs (copies, contexts, sample), each usually in increasing
  // order already (records matched in place): each sorted only when it is
  // not, then merged (a sort of the whole was 7% of ds-csv's build).
  thread_local std::vector<std::pair<uint64_t, uint64_t>> iv;
  iv.clear();
  auto sort_run = [&](size_t from) {
    if (!std::is_sorted(iv.begin() + from, iv.end())) std::sort(iv.begin() + from, iv.end());
    std::inplace_merge(iv.begin(), iv.begin() + from, iv.end());
  };
  for (auto& o : j.ops)
    if (o.copy) iv.push_back({o.src, o.src + o.copy});
  sort_run(0);
  if (with_ctx) {
    const size_t from = iv.size();
    for (auto& c : j.ctx) iv.push_back({c.first, c.first + c.second});
    sort_run(from);
  }
  const size_t sample_from = iv.size();
  if (with_dict && base_size) {
    // A sample of the base spread over it: a raw-content dictionary for new records.
    const uint64_t piece = 4096, count = std::min<uint64_t>(kDictSample / piece, base_size / piece + 1);
    for (uint64_t k = 0; k < count; ++k) {
      uint64_t o = base_size > piece ? (base_size - piece) * k / std::max<uint64_t>(count - 1, 1) : 0;
      // Ends just after a line end when one is near, so that the lines of
      // B stay the base's lines past the piece (copies count in lines).
      uint64_t e = std::min(base_size, o + piece);
      if (const void* nl = std::memchr(base + e - 1, '\n', std::min<uint64_t>(base_size - e + 1, 1024)))
        e = static_cast<uint64_t>(static_cast<const uint8_t*>(nl) - base) + 1;
      iv.push_back({o, e});
    }
  }
  sort_run(sample_from);
  ext.clear();
  uint64_t total = 0;
  for (auto& [a, b] : iv) {
    if (!ext.empty() && a <= ext.back().offset + ext.back().len + kMergeGap) {
      uint64_t e = std::max<uint64_t>(ext.back().offset + ext.back().len, b);
      total += e - (ext.back().offset + ext.back().len);
      ext.back().len = static_cast<uint32_t>(e - ext.back().offset);
    } else {
      ext.push_back({a, static_cast<uint32_t>(b - a)});
      total += b - a;
    }
    if (total > kMaxPatchBase || ext.size() > kMaxPatchExtents) return false;
  }
  return total <= kBaseBudget * (with_ctx ? 1 : 2) && ext.size() <= kExtentBudget * (with_ctx ? 1 : 4);
}

Encoded encode_job(const FrameJob& j, const uint8_t* out, const InFile* base, uint32_t base_idx,
                   const DatasetBuildOptions& opt) {
  Encoded r;
  r.hash = xxh128(out, j.len);
  uint64_t lits = 0, copies = 0;
  for (auto& o : j.ops) { lits += o.lit; copies += o.copy; }
  const int level = opt.zstd_level;
  // One copy and nothing else: the frame is a base range.
  if (j.ops.size() == 1 && j.ops[0].lit == 0 && base) {
    r.e.codec = Codec::copy_base;
    r.base_file = base_idx;
    r.base_off = j.ops[0].src;
    r.base_len = j.len;
    return r;
  }
  if (!base || (copies == 0 && j.ctx.empty() && base->size() == 0)) {
    r.e = encode_frame_with(Codec::zstd, out, j.len, DType::U8, nullptr, level);
    if (r.e.payload.size() >= j.len) r.e = encode_frame_with(Codec::store, out, j.len, DType::U8, nullptr, level);
    return r;
  }
  std::vector<PatchExtent> ext;
  const bool dict = lits * 4 > j.len;
  bool ok = make_extents(j, base->data(), base->size(), true, dict, ext) ||
            make_extents(j, base->data(), base->size(), false, false, ext);
  if (!ok) {
    // Too many scattered base ranges for one frame: literal (the caller
    // splits frames before this happens; a safety net).
    r.e = encode_frame_with(Codec::zstd, out, j.len, DType::U8, nullptr, level);
    return r;
  }
  std::string b;
  std::vector<uint64_t> bstart;
  for (auto& e : ext) { bstart.push_back(b.size()); b.append(reinterpret_cast<const char*>(base->data() + e.offset), e.len); }
  std::vector<PatchOp> ops;
  std::string lit;
  to_patch_ops(j.ops, out, [&](uint64_t src) {
    size_t k = std::upper_bound(ext.begin(), ext.end(), src, [](uint64_t v, const PatchExtent& e) { return v < e.offset; }) - ext.begin() - 1;
    return bstart[k] + (src - ext[k].offset);
  }, ops, lit);
  if (ext.empty()) {
    r.e = encode_frame_with(Codec::zstd, out, j.len, DType::U8, nullptr, level);
    return r;
  }
  r.e.codec = Codec::patch;
  const bool prefix = literal_prefix_pays(lits, b.size());
  r.e.payload = encode_patch(ext, ops, lit, reinterpret_cast<const uint8_t*>(b.data()), b.size(), level, prefix, 2,
                              opt.word_literals ? 1 : 0);
  // Extents no copy reads, where the payload left B to the copies (no
  // literal prefix, line ops or word sample; else B's bytes shape the
  // literals or the op counts, and the frame keeps them): dropped, the
  // literal stream kept as coded, 12 bytes saved per extent. The ops are
  // not used after this (drop_unread_extents changes them in place); the
  // extents are kept as they were when the pruned payload is not smaller.
  bstart.push_back(b.size());
  std::vector<PatchExtent> ext_pruned = ext;
  if (drop_unread_extents(ext_pruned, bstart, ops)) {
    std::string q = patch_with_extents(r.e.payload, ext_pruned, ops, level);
    if (!q.empty() && q.size() <= r.e.payload.size()) {
      r.e.payload = std::move(q);
      ext = std::move(ext_pruned);
    }
  }
  r.base_file = ext.empty() ? kNoBase : base_idx;
  r.base_off = ext.empty() ? 0 : ext.front().offset;
  uint64_t hi = 0;
  for (auto& e : ext) hi = std::max<uint64_t>(hi, e.offset + e.len);
  r.base_len = hi - r.base_off;
  if (r.base_len > 0xffffffffu) {  // the span field is 32 bits: fall back
    r.e = encode_frame_with(Codec::zstd, out, j.len, DType::U8, nullptr, level);
    r.base_file = kNoBase;
    r.base_off = r.base_len = 0;
  }
  if (r.e.payload.size() >= j.len) {
    r.e = encode_frame_with(Codec::store, out, j.len, DType::U8, nullptr, level);
    r.base_file = kNoBase;
    r.base_off = r.base_len = 0;
  }
  return r;
}

// Splits jobs whose base ranges exceed the budget (scattered copies) in halves.
void split_heavy(std::vector<FrameJob>& jobs, const InFile* base) {
  if (!base) return;
  std::vector<FrameJob> out;
  std::vector<FrameJob> stack(jobs.rbegin(), jobs.rend());
  std::vector<PatchExtent> ext;
  while (!stack.empty()) {
    FrameJob j = std::move(stack.back());
    stack.pop_back();
    if (j.ops.size() <= 1 || make_extents(j, base->data(), base->size(), false, false, ext)) {
      out.push_back(std::move(j));
      continue;
    }
    size_t half = j.ops.size() / 2;
    FrameJob a, b;
    a.off = j.off;
    a.ops.assign(j.ops.begin(), j.ops.begin() + half);
    for (auto& o : a.ops) a.len += o.lit + o.copy;
    b.off = j.off + a.len;
    b.ops.assign(j.ops.begin() + half, j.ops.end());
    b.len = j.len - a.len;
    a.ctx = j.ctx;  // contexts may go to either half; they are optional
    b.ctx = j.ctx;
    stack.push_back(std::move(b));
    stack.push_back(std::move(a));
  }
  jobs = std::move(out);
}

// ---- Parquet pages ------------------------------------------------------------

// The ops of `ol` for output bytes [a, b), rebased to a.
OpList slice_ops(const OpList& ol, uint64_t a, uint64_t b) {
  OpList s;
  uint64_t pos = 0;
  for (auto& o : ol.ops) {
    if (pos >= b) break;
    if (uint64_t la = std::max(pos, a), lb = std::min(pos + o.lit, b); la < lb) s.literal(lb - la);
    pos += o.lit;
    if (uint64_t ca = std::max(pos, a), cb = std::min(pos + o.copy, b); ca < cb) s.copy(o.src + (ca - pos), cb - ca);
    pos += o.copy;
  }
  for (auto& c : ol.ctx)
    if (c.out_pos >= a && c.out_pos < b) s.ctx.push_back({c.out_pos - a, c.base_off, c.len});
  s.finish();
  return s;
}

// What page_jobs does with each page of a derived Parquet file, decided once
// (the tests and the xxh64 of every page body ran twice: here for the chunk
// pass's skip list, again in page_jobs): kNotPage, a page left to the chunk
// ops (not a snappy data or dictionary page, or over a frame or over B's
// limit decompressed); kPageFrame, a page whose compressed body is no base
// page's, a page frame whenever its ops hold a literal (so its chunk ops
// matter only if that frame fails: then they are made again); else the base
// page (index into pi.pages()) whose compressed body it is, a copy of that
// body after the page's header.
constexpr int64_t kNotPage = -2, kPageFrame = -1;
std::vector<int64_t> page_plan(const std::vector<parquet::Page>& pages, const parquet::PageIndex& pi, const uint8_t* dp) {
  std::vector<int64_t> plan(pages.size(), kNotPage);
  for (size_t k = 0; k < pages.size(); ++k) {
    const parquet::Page& pg = pages[k];
    if (pg.eligible() && pg.end() - pg.hdr <= kMaxFrameOut && pg.raw_len <= kMaxPatchBase)
      plan[k] = std::max<int64_t>(pi.same_body(dp + pg.body, pg.body_len), kPageFrame);
  }
  return plan;
}

// Frames of a Parquet file: each changed snappy page (header and body, at
// most 1 MiB) one frame tried as a snappy page; the bytes between them cut
// as usual from the file's chunk ops. A page that is copied whole from the
// base stays a copy; one whose compressed body is a base page's (an
// unchanged page the chunks did not find whole: a chunk straddled its start)
// is that copy after its header, not decompressed. `plan`: page_plan's.
std::vector<FrameJob> page_jobs(const OpList& ol, uint64_t size, const std::vector<parquet::Page>& pages,
                                const std::vector<int64_t>& plan, const InFile* base, const parquet::PageIndex& pi,
                                const uint8_t* dp) {
  std::vector<FrameJob> jobs;
  auto plain = [&](uint64_t a, uint64_t b) {
    if (a >= b) return;
    std::vector<FrameJob> part = cut_frames(slice_ops(ol, a, b), b - a);
    for (auto& j : part) j.off += a;
    split_heavy(part, base);
    for (auto& j : part) jobs.push_back(std::move(j));
  };
  uint64_t pos = 0;
  for (size_t k = 0; k < pages.size(); ++k) {
    if (plan[k] == kNotPage) continue;
    const parquet::Page& pg = pages[k];
    OpList s = slice_ops(ol, pg.hdr, pg.end());
    if (s.literals() == 0) continue;
    plain(pos, pg.hdr);
    FrameJob j;
    j.off = pg.hdr;
    j.len = pg.end() - pg.hdr;
    if (plan[k] >= 0) {
      const parquet::Page& bp = pi.pages()[plan[k]];
      const uint64_t hl = pg.body - pg.hdr;
      if (bp.body - bp.hdr == hl && std::memcmp(base->data() + bp.hdr, dp + pg.hdr, hl) == 0)
        j.ops.push_back({0, bp.hdr, j.len});
      else
        j.ops.push_back({hl, bp.body, pg.body_len});
    } else {
      // The page's ops as one frame (it is at most kMaxFrameOut bytes: what
      // cut_frames would make of them).
      j.ops = std::move(s.ops);
      for (auto& c : s.ctx) j.ctx.push_back({c.base_off, c.len});
      j.page = static_cast<int64_t>(k);
    }
    jobs.push_back(std::move(j));
    pos = pg.end();
  }
  plain(pos, size);
  return jobs;
}

// Budget of decompressed base pages (B) for a page frame.
constexpr uint64_t kPageBase = 3u << 20;
// The zstd level of a page frame's streams, at most: each page frame's
// build already costs a snappy compression of the page, and its op and
// literal streams at 17-19 were a sixth of pq-column's build; level 9 there
// cut it by ~8% for 2% more delta, level 6 by 3.5% more for 0.3% more
// (pq-append's page frames are level 3 already: same bytes; its size
// target is 0.8x the best baseline, pq-column is at 0.036x).
// docs/BENCHMARKS.md, Dataset deltas run 14.
constexpr int kPageLevel = 6;

// A changed Parquet page as a snappy page frame (codec 10 method bit 5): its
// header raw, its decompressed body as an edit of the chosen base pages'
// decompressed bodies, the extents their compressed bodies. Only when
// snappy::Compress of the decompressed body gives the page's bytes back and
// the payload decodes to the frame here; else (false) the caller codes the
// frame as usual. Snappy::Compress runs once per page, in that check (a
// reproducibility check before the encoding compressed every page a second
// time, 8% of pq-column's build; a page that does not reproduce, rare, now
// fails the check after its encoding instead of before).
bool encode_page_job(const FrameJob& j, const uint8_t* out, const parquet::Page& pg, const InFile* base,
                     uint32_t base_idx, const parquet::PageIndex& pi, const DatasetBuildOptions& opt, Encoded& r) {
  const uint32_t hlen = static_cast<uint32_t>(pg.body - pg.hdr);
  const int plevel = std::min(opt.zstd_level, kPageLevel);
  // The header, then the body decompressed: into reused, uninitialised
  // memory (a fresh zero-filled string a page was 5% of pq-column's build).
  thread_local Scratch<uint8_t> inner_buf;
  const uint64_t inner_len = uint64_t(hlen) + pg.raw_len;
  uint8_t* const ip = inner_buf.get(inner_len);
  std::memcpy(ip, out, hlen);
  if (!parquet::unsnappy_to(out + hlen, pg.body_len, pg.raw_len, ip + hlen)) return false;
  const std::string_view body(reinterpret_cast<const char*>(ip + hlen), pg.raw_len);
  std::vector<PatchExtent> ext;
  std::vector<uint64_t> at;
  // B: the candidates' decompressed bodies, one after the other. A single
  // candidate the column's index kept (every page frame of pq-column) is
  // read where the index holds it; copying it was 1.4% of pq-column's build
  // (docs/BENCHMARKS.md, Dataset deltas run 18).
  std::string b_own;
  const uint8_t* b = nullptr;
  uint64_t bn = 0;
  // A page of 512 KiB or more whose anchors no base page holds a quarter
  // of is new rows: the votes it gets are common words, and its edit
  // against the candidates (up to 3 MiB) found no copy (pq-append's new-row
  // text pages: 15-18% shared, no copy in 1.1 MB each, 80 ms of index
  // look-ups; edited pages share 88% or more). It is coded without B (the
  // candidates only lent the literals a prefix, which frames of literals do
  // not try). Smaller pages keep theirs, cheap to edit: pq-append's new id
  // and score pages (187 KB) share 15% of anchors, yet copies cut the id
  // page's literals by a seventh.
  double shared = 0;
  std::vector<uint32_t> cand = pi.choose(pg, body, kPageBase, &shared);
  if (shared * 4 < 1 && body.size() >= (512u << 10)) cand.clear();
  if (cand.size() == 1 && (b = pi.kept_raw(cand[0]))) {
    const parquet::Page& bp = pi.pages()[cand[0]];
    bn = bp.raw_len;
    ext.push_back({bp.body, bp.body_len});
    at.push_back(0);
  } else {
    uint64_t sum = 0;
    for (uint32_t k : cand) sum += pi.pages()[k].raw_len;
    b_own.reserve(sum);
    for (uint32_t k : cand) {
      const parquet::Page& bp = pi.pages()[k];
      const size_t was = b_own.size();
      if (!pi.append_raw(k, b_own)) { b_own.resize(was); continue; }
      ext.push_back({bp.body, bp.body_len});
      at.push_back(was);
    }
    b = reinterpret_cast<const uint8_t*>(b_own.data());
    bn = b_own.size();
  }
  at.push_back(bn);
  OpList ol;
  encode_edit(ip, inner_len, b, bn, 0, false, ol);
  ol.finish();
  std::vector<PatchOp> ops;
  std::string lit;
  to_patch_ops(ol.ops, ip, [](uint64_t src) { return src; }, ops, lit);
  const PatchSnappy sn{static_cast<uint32_t>(inner_len), hlen};
  const bool prefix = literal_prefix_pays(lit.size(), bn);
  std::string payload = encode_patch(ext, ops, lit, b, bn, plevel, prefix, 0, 0, &sn);
  // The candidate pages no copy reads (most of a frame of new rows' B:
  // pq-append listed 15.0 MB of pages, copies read 0.96 MB) dropped. With B
  // as the literals' prefix (method bit 2) every page shapes the literal
  // stream: the frame is coded again over the pages kept and the smaller
  // payload kept.
  // The ops are not used after this: drop_unread_extents moves them in place.
  std::vector<PatchExtent> pext = ext;
  std::vector<size_t> kept;
  if (drop_unread_extents(pext, at, ops, &kept)) {
    // B of the pages kept, built once when needed (the coding again, then
    // the check).
    std::string pb;
    auto kept_b = [&]() -> std::string& {
      if (pb.empty())
        for (size_t k : kept) pb.append(reinterpret_cast<const char*>(b) + at[k], at[k + 1] - at[k]);
      return pb;
    };
    std::string q = patch_with_extents(payload, pext, ops, plevel);
    if (q.empty()) {
      const std::string& kb = kept_b();
      q = encode_patch(pext, ops, lit, reinterpret_cast<const uint8_t*>(kb.data()), kb.size(), plevel,
                       literal_prefix_pays(lit.size(), kb.size()), 0, 0, &sn);
    }
    if (q.size() <= payload.size()) {
      payload = std::move(q);
      ext = std::move(pext);
      b_own = std::move(kept_b());
      b = reinterpret_cast<const uint8_t*>(b_own.data());
      bn = b_own.size();
    }
  }
  if (payload.size() >= j.len) return false;
  Frame f;
  f.out_len = static_cast<uint32_t>(j.len);
  f.codec = Codec::patch;
  f.data_len = static_cast<uint32_t>(payload.size());
  f.base_file = ext.empty() ? kNoBase : base_idx;
  uint64_t lo = ~uint64_t(0), hi = 0;
  for (auto& e : ext) { lo = std::min(lo, e.offset); hi = std::max<uint64_t>(hi, e.offset + e.len); }
  if (!ext.empty() && hi - lo > 0xffffffffu) return false;
  f.base_offset = ext.empty() ? 0 : lo;
  f.base_len = ext.empty() ? 0 : static_cast<uint32_t>(hi - lo);
  // The decoder's own check of what a reader will rebuild, from the B
  // decompressed here (the extents' bytes, decompressed above: a second
  // decompression in the check was 6% of pq-column's build).
  // The extents' compressed bytes as a reader gets them, one after the
  // other: one extent is read where the base file is mapped.
  std::string braw;
  const uint8_t* rawp = ext.size() == 1 ? base->data() + ext[0].offset : nullptr;
  if (!rawp) {
    for (auto& e : ext) braw.append(reinterpret_cast<const char*>(base->data() + e.offset), e.len);
    rawp = reinterpret_cast<const uint8_t*>(braw.data());
  }
  thread_local Scratch<uint8_t> check;
  if (!decode_patch_expanded(f, reinterpret_cast<const uint8_t*>(payload.data()), rawp, b, bn, check.get(j.len))
           .ok() ||
      std::memcmp(check.data(), out, j.len) != 0)
    return false;
  r.e.codec = Codec::patch;
  r.e.payload = std::move(payload);
  r.base_file = f.base_file;
  r.base_off = f.base_offset;
  r.base_len = f.base_len;
  r.hash = xxh128(out, j.len);
  return true;
}

class Builder {
 public:
  explicit Builder(const DatasetBuildOptions& o) : opt_(o) {}

  Result<DatasetBuildReport> run(const std::string& base_path, const std::string& der_path, const std::string* out_dir) {
    auto t0 = std::chrono::steady_clock::now();
    TP_RETURN_IF_ERROR(list_files(base_path, base_));
    TP_RETURN_IF_ERROR(list_files(der_path, der_));
    m_.base_locations = opt_.base_locations;
    if (m_.base_locations.empty()) {
      std::error_code ec;
      fs::path bp = fs::absolute(base_path, ec);
      if (!ec && fs::is_regular_file(bp, ec)) bp = bp.parent_path();
      if (!ec) m_.base_locations.push_back(bp.lexically_normal().string());
    }
    for (auto& b : base_) m_.base_files.push_back({b.name, b.size(), {}});
    for (auto& d : der_) rep_.build.finetune_bytes += d.size();

    // Same-name base files first; otherwise the base file that most of a
    // sample of the derived file's records (or chunks) are found in.
    choose_bases();

    std::string staged;
    OutFileWriter data;
    if (out_dir) {
      TP_RETURN_IF_ERROR(stage(*out_dir, staged));
      Status st = data.open(staged + "/" + kDataFile);
      if (!st.ok()) { cleanup(staged); return st; }
    }
    data_ = out_dir ? &data : nullptr;
    for (uint32_t fi = 0; fi < der_.size(); ++fi) {
      Status st = build_file(fi);
      if (!st.ok()) {
        // The build error is what the caller needs; a close failure of the staged file it removes adds nothing.
        if (out_dir) { (void)data.close(); cleanup(staged); }
        return st;
      }
    }
    // sha256 of the base files the frames use (through the hash cache) and of every output.
    std::vector<bool> used(base_.size(), false);
    for (auto& f : m_.frames)
      if (f.base_file != kNoBase) used[f.base_file] = true;
    if (out_dir) {
      for (size_t i = 0; i < base_.size(); ++i) {
        auto h = sha256_of_local_file(base_[i].path);
        m_.base_files[i].sha256 = h.ok() ? *h : sha256(base_[i].data(), base_[i].size());
      }
      for (size_t i = 0; i < der_.size(); ++i) m_.out_files[i].sha256 = sha256(der_[i].data(), der_[i].size());
    }
    std::string idx = serialize_manifest(m_);
    rep_.build.index_bytes = idx.size();
    rep_.build.frames = m_.frames.size();
    if (out_dir) {
      Status st = data.close();
      if (st.ok()) {
        OutFileWriter iw;
        st = iw.open(staged + "/" + kIndexFile);
        if (st.ok()) st = iw.write(idx.data(), idx.size());
        if (st.ok()) st = iw.close();
      }
      if (st.ok()) st = commit(staged, *out_dir);
      if (!st.ok()) { cleanup(staged); return st; }
      rep_.build.delta_bytes = data_pos_ + idx.size();
    } else {
      double total = static_cast<double>(idx.size());
      double ratio = sampled_out_ ? static_cast<double>(sampled_delta_) / sampled_out_ : 1.0;
      total += ratio * static_cast<double>(rep_.build.finetune_bytes);
      rep_.build.delta_bytes = static_cast<uint64_t>(total);
      rep_.build.estimated = true;
    }
    rep_.build.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep_;
  }

 private:
  Status stage(const std::string& final_dir, std::string& staged) {
    std::error_code ec;
    std::string f = fs::path(final_dir).lexically_normal().string();
    while (f.size() > 1 && f.back() == '/') f.pop_back();
    if (fs::exists(f, ec) && (!fs::is_directory(f, ec) || !fs::is_empty(f, ec)))
      return {Errc::exists, f + ": already exists and is not an empty directory (refusing to overwrite)"};
    staged = f + ".tenpak-tmp-" + std::to_string(::getpid());
    fs::remove_all(staged, ec);
    fs::create_directories(staged, ec);
    if (ec) return {Errc::io, staged + ": cannot create: " + ec.message()};
    return Status::Ok();
  }
  static void cleanup(const std::string& staged) {
    std::error_code ec;
    if (!staged.empty()) fs::remove_all(staged, ec);
  }
  static Status commit(const std::string& staged, const std::string& final_dir) {
    std::error_code ec;
    std::string f = fs::path(final_dir).lexically_normal().string();
    while (f.size() > 1 && f.back() == '/') f.pop_back();
    if (fs::exists(f, ec)) fs::remove(f, ec);
    if (::rename(staged.c_str(), f.c_str()) != 0)
      return {Errc::io, f + ": cannot rename the staged output into place: " + std::strerror(errno)};
    return Status::Ok();
  }

  bool records_mode(const InFile& f) const { return looks_like_records(f.name, f.data(), f.size()); }

  void choose_bases() {
    choice_.assign(der_.size(), -1);
    for (size_t d = 0; d < der_.size(); ++d) {
      for (size_t b = 0; b < base_.size(); ++b)
        if (base_[b].name == der_[d].name) choice_[d] = static_cast<int>(b);
      if (choice_[d] < 0 && base_.size() == 1) choice_[d] = 0;
      if (choice_[d] >= 0 || base_.empty()) continue;
      // Vote with up to 64 pieces of 64 bytes sampled from the derived file.
      const InFile& df = der_[d];
      std::vector<int> score(base_.size(), 0);
      const uint64_t piece = 64;
      for (int k = 0; k < 64 && df.size() >= piece; ++k) {
        uint64_t o = (df.size() - piece) * k / 63;
        for (size_t b = 0; b < base_.size(); ++b) {
          auto* bb = base_[b].data();
          if (base_[b].size() >= piece &&
              std::search(bb, bb + base_[b].size(), std::boyer_moore_horspool_searcher(df.data() + o, df.data() + o + piece)) !=
                  bb + base_[b].size())
            ++score[b];
        }
      }
      int best = -1;
      for (size_t b = 0; b < base_.size(); ++b)
        if (score[b] > 0 && (best < 0 || score[b] > score[best])) best = static_cast<int>(b);
      // Nothing in common: the largest base file with the same extension still lends a dictionary.
      if (best < 0)
        for (size_t b = 0; b < base_.size(); ++b)
          if (fs::path(base_[b].name).extension() == fs::path(df.name).extension() &&
              (best < 0 || base_[b].size() > base_[best].size()))
            best = static_cast<int>(b);
      choice_[d] = best;
    }
  }

  // The base file's record index, or null where it has more records than
  // record matching numbers (counted first: their ends alone would be 8
  // bytes a record): its derived files go the chunk route.
  BaseIndex* record_index(uint32_t b, bool blocks) {
    auto key = std::make_pair(b, blocks);
    auto it = rec_idx_.find(key);
    if (it != rec_idx_.end()) return it->second.get();
    std::unique_ptr<BaseIndex> bi;
    const InFile& f = base_[b];
    if (records_fit(f.data(), f.size(), blocks, max_base_records())) {
      bi = std::make_unique<BaseIndex>();
      bi->f = &f;
      index_records(*bi, blocks);
    }
    return (rec_idx_[key] = std::move(bi)).get();
  }
  uint64_t max_base_records() const { return std::min(opt_.max_base_records, kMaxBaseRecords); }
  // The base's Parquet page index (null: the base is not Parquet here).
  const parquet::PageIndex* page_index(uint32_t b) {
    auto it = pq_idx_.find(b);
    if (it != pq_idx_.end()) return it->second.get();
    auto pi = std::make_unique<parquet::PageIndex>();
    if (!pi->build(base_[b].data(), base_[b].size())) pi.reset();
    return (pq_idx_[b] = std::move(pi)).get();
  }
  ChunkIndex& chunk_index(uint32_t b) {
    auto it = chunk_idx_.find(b);
    if (it != chunk_idx_.end()) return *it->second;
    auto ci = std::make_unique<ChunkIndex>();
    index_chunks(base_[b], *ci);
    return *(chunk_idx_[b] = std::move(ci));
  }

  Status build_file(uint32_t fi) {
    const InFile& d = der_[fi];
    OutFile of;
    of.name = d.name;
    of.size = d.size();
    of.mode = d.mode;
    of.first_frame = static_cast<uint32_t>(m_.frames.size());
    DatasetFileReport fr;
    fr.name = d.name;
    const int bsel = choice_[fi];
    const InFile* base = bsel >= 0 ? &base_[bsel] : nullptr;
    fr.base = base ? base->name : "";
    FileOut fo{fi, d, base, bsel, {}};
    BaseIndex* bi = nullptr;
    bool blocks = false;
    if (!base) {
      fr.mode = "new";
    } else if (records_mode(d) && records_mode(*base)) {
      blocks = looks_like_blocks(d.data(), d.size());
      if ((bi = record_index(bsel, blocks))) {
        fr.mode = blocks ? "records (blocks)" : "records (lines)";
      } else {
        // Left to the chunk route below, which takes any file.
        fr.note = "base file " + base->name + " has more than " + std::to_string(max_base_records()) +
                  " records (" + (blocks ? "blank-line blocks" : "lines") +
                  "), more than record matching numbers: coded as content-defined chunks";
        if (opt_.log) opt_.log(d.name + ": " + fr.note);
      }
    }
    if (bi) {
      // Window by window (DatasetBuildOptions::window_bytes): the record
      // ends, hashes, ops and frame jobs of one window at a time.
      RecordMatch st;
      std::vector<uint64_t> ends;
      for (uint64_t from = 0; from < d.size(); from = ends.back()) {
        split_records_window(d.data(), d.size(), blocks, from, window(), ends);
        std::vector<FrameJob> jobs;
        {
          // The window's ops released before its frames are encoded.
          OpList ol;
          encode_records(d, *bi, from, ends, st, ol, fr);
          ol.finish();
          jobs = cut_frames(ol, ends.back() - from);
        }
        for (auto& j : jobs) j.off += from;
        split_heavy(jobs, base);
        TP_RETURN_IF_ERROR(emit(fo, jobs));
      }
    } else {
      // The chunk route's state is a few dozen bytes per chunk of 16 KiB on
      // average (a page frame's per page): the file in one pass, its frames
      // encoded and written in batches of a window.
      OpList ol;
      if (!base) ol.literal(d.size());
      // Parquet with snappy pages on both sides: changed pages coded decompressed.
      std::vector<int64_t> plan;
      if (fr.mode.empty()) {
        fr.mode = "chunks";
        // The pages that become page frames, in file order and disjoint
        // (list_pages refuses overlapping pages): encode_chunks' skip list.
        std::vector<std::pair<uint64_t, uint64_t>> skip;
        if (parquet::list_pages(d.data(), d.size(), fo.pages) && (fo.pidx = page_index(bsel))) {
          plan = page_plan(fo.pages, *fo.pidx, d.data());
          for (size_t k = 0; k < fo.pages.size(); ++k)
            if (plan[k] == kPageFrame) skip.push_back({fo.pages[k].hdr, fo.pages[k].end()});
        }
        fo.cidx = &chunk_index(bsel);
        encode_chunks(d, *base, *fo.cidx, skip, ol, fr);
      }
      ol.finish();
      std::vector<FrameJob> jobs;
      // Every page skipped by the chunk pass is a page job (page_jobs makes a
      // page frame of each kPageFrame page whose ops hold a literal, and a
      // skipped page's ops are one literal), so without page jobs nothing was
      // skipped and ol holds the file's chunk ops.
      if (fo.pidx) jobs = page_jobs(ol, d.size(), fo.pages, plan, base, *fo.pidx, d.data());
      if (std::any_of(jobs.begin(), jobs.end(), [](const FrameJob& j) { return j.page >= 0; })) {
        fr.mode = "parquet pages";
      } else {
        jobs = cut_frames(ol, d.size());
        split_heavy(jobs, base);
      }
      TP_RETURN_IF_ERROR(emit(fo, jobs));
    }
    of.frame_count = static_cast<uint32_t>(m_.frames.size()) - of.first_frame;
    FileReport r;
    r.name = d.name;
    r.out_bytes = d.size();
    r.delta_bytes = fo.delta;
    r.frames = of.frame_count;
    rep_.build.files.push_back(r);
    rep_.files.push_back(fr);
    m_.out_files.push_back(std::move(of));
    return Status::Ok();
  }

  uint64_t window() const { return std::max<uint64_t>(opt_.window_bytes, 1); }

  // One derived file's frames as they are encoded: what a frame job needs
  // besides itself, and what the file's jobs so far added up to.
  struct FileOut {
    uint32_t fi;
    const InFile& d;
    const InFile* base;
    int bsel;
    std::vector<parquet::Page> pages;
    const parquet::PageIndex* pidx = nullptr;
    const ChunkIndex* cidx = nullptr;
    uint64_t delta = 0;  // payload bytes written
    size_t jobs = 0;     // frame jobs so far (which ones an estimate samples)
  };

  // Encodes the file's next frame jobs (in parallel) and writes them in
  // order, in batches of at most a window's output bytes (at least one job),
  // each batch's payloads released before the next is encoded.
  Status emit(FileOut& fo, std::vector<FrameJob>& jobs) {
    const InFile& d = fo.d;
    const InFile* base = fo.base;
    const int bsel = fo.bsel;
    if (opt_.sample_every > 1)
      for (size_t k = 0; k < jobs.size(); ++k) jobs[k].sampled = (fo.jobs + k) % opt_.sample_every == 0;
    fo.jobs += jobs.size();
    const unsigned threads = opt_.threads ? opt_.threads : std::max(1u, std::thread::hardware_concurrency());
    for (size_t lo = 0, hi; lo < jobs.size(); lo = hi) {
      uint64_t bytes = jobs[lo].len;
      for (hi = lo + 1; hi < jobs.size() && bytes + jobs[hi].len <= window(); ++hi) bytes += jobs[hi].len;
      std::vector<Encoded> enc(hi - lo);
      std::atomic<size_t> next{lo};
      auto work = [&] {
        for (size_t k; (k = next.fetch_add(1)) < hi;)
          if (jobs[k].sampled &&
              (jobs[k].page < 0 || !encode_page_job(jobs[k], d.data() + jobs[k].off, fo.pages[jobs[k].page], base,
                                                    static_cast<uint32_t>(bsel), *fo.pidx, opt_, enc[k - lo])))
          {
            if (jobs[k].page >= 0) {
              // A page job's page was skipped by the chunk pass (its ops one
              // literal): the page is chunked now, on its own (chunks from its
              // header on), for the usual frame (one: at most kMaxFrameOut bytes).
              FrameJob& pj = jobs[k];
              OpList t;
              DatasetFileReport unused;
              encode_chunk_range(d, *base, *fo.cidx, pj.off, pj.off + pj.len, t, unused);
              t.finish();
              pj.ops = std::move(t.ops);
              pj.ctx.clear();
              for (auto& c : t.ctx) pj.ctx.push_back({c.base_off, c.len});
            }
            enc[k - lo] = encode_job(jobs[k], d.data() + jobs[k].off, base, static_cast<uint32_t>(bsel), opt_);
          }
      };
      {
        std::vector<std::jthread> pool;
        for (unsigned t = 1; t < std::min<size_t>(threads, hi - lo); ++t) pool.emplace_back(work);
        work();
      }
      for (size_t k = lo; k < hi; ++k) {
        const Encoded& e = enc[k - lo];
        Frame f;
        f.file = fo.fi;
        f.out_offset = jobs[k].off;
        f.out_len = static_cast<uint32_t>(jobs[k].len);
        f.codec = e.e.codec;
        f.dtype = f.base_dtype = DType::U8;
        f.hash = e.hash;
        f.base_file = e.base_file;
        f.base_offset = e.base_off;
        f.base_len = static_cast<uint32_t>(e.base_len);
        f.data_offset = data_pos_;
        f.data_len = static_cast<uint32_t>(e.e.payload.size());
        if (data_) TP_RETURN_IF_ERROR(data_->write(e.e.payload.data(), e.e.payload.size()));
        data_pos_ += e.e.payload.size();
        fo.delta += e.e.payload.size();
        if (jobs[k].sampled) { sampled_out_ += jobs[k].len; sampled_delta_ += e.e.payload.size(); }
        m_.frames.push_back(f);
        done_ += jobs[k].len;
        if (opt_.progress) opt_.progress(done_, rep_.build.finetune_bytes);
        std::vector<Op>().swap(jobs[k].ops);
        std::vector<std::pair<uint64_t, uint64_t>>().swap(jobs[k].ctx);
      }
    }
    return Status::Ok();
  }

  DatasetBuildOptions opt_;
  std::vector<InFile> base_, der_;
  std::vector<int> choice_;
  std::map<std::pair<uint32_t, bool>, std::unique_ptr<BaseIndex>> rec_idx_;
  std::map<uint32_t, std::unique_ptr<ChunkIndex>> chunk_idx_;
  std::map<uint32_t, std::unique_ptr<parquet::PageIndex>> pq_idx_;
  Manifest m_;
  DatasetBuildReport rep_;
  OutFileWriter* data_ = nullptr;
  uint64_t data_pos_ = 0, done_ = 0, sampled_out_ = 0, sampled_delta_ = 0;
};

}  // namespace

Result<DatasetBuildReport> build_dataset_delta(const std::string& base, const std::string& derived,
                                               const std::string& out_dir, const DatasetBuildOptions& opt) {
  Builder b(opt);
  return b.run(base, derived, &out_dir);
}

Result<DatasetBuildReport> estimate_dataset_delta(const std::string& base, const std::string& derived,
                                                  const DatasetBuildOptions& opt) {
  DatasetBuildOptions o = opt;
  if (o.sample_every < 1) o.sample_every = 1;
  Builder b(o);
  return b.run(base, derived, nullptr);
}

}  // namespace tenpak
