// Codec 10 (patch), static word-coded literals (method bit 6): the model
// both sides derive from B's sample, and the decoder. patch_wrans.h
// describes it; docs/FORMAT.md ("Static word-coded literals") is normative.
#include "patch_wrans.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

namespace tenpak::patch_detail::wrans {

void Table::build(const std::vector<std::pair<uint32_t, uint64_t>>& vw, int bucket_bits) {
  const uint32_t n = static_cast<uint32_t>(vw.size());
  e.resize(n);
  uint64_t w = 0;
  uint32_t big = 0;
  for (uint32_t i = 0; i < n; ++i) {
    w += vw[i].second;
    if (vw[i].second > vw[big].second) big = i;
  }
  const uint64_t room = kTotal - n;
  uint32_t sum = 0;
  for (uint32_t i = 0; i < n; ++i) {
    e[i] = 1 + vw[i].second * room / w;  // the frequency, for now
    sum += static_cast<uint32_t>(e[i]);
  }
  e[big] += kTotal - sum;
  uint32_t start = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t f = static_cast<uint32_t>(e[i]);
    e[i] = (start | f << 16) | static_cast<uint64_t>(vw[i].first) << 32;
    start += f;
  }
  uint32_t j = 0;
  shift = kProb - bucket_bits;
  bucket.resize(size_t(1) << bucket_bits);
  for (uint32_t b = 0; b < (1u << bucket_bits); ++b) {
    const uint32_t slot = b << shift;
    while ((sf(j) & 0xffff) + (sf(j) >> 16) <= slot) ++j;
    bucket[b] = static_cast<uint16_t>(j);
  }
}

namespace {

// A context's escape weight: its ids seen once (at least 1), the
// Good-Turing estimate of how often a token not seen there comes. (ds-append:
// 0.3 x its distinct ids cost 0.2% more, half of them 0.1% more.)
uint64_t escape_weight(uint64_t singles) { return singles ? singles : 1; }

}  // namespace

void Model::prime(const uint8_t* b, uint64_t n) {
  voc[0].clear();
  voc[1].clear();
  // The sample and its tokens: exactly bit 4's.
  thread_local std::vector<uint32_t> tid;
  thread_local words::Vocab first[2];
  std::vector<uint32_t> count[2];
  words::sample_tokens(b, n, tid, first, count);
  // Ids as bit 4 numbers them.
  std::vector<uint32_t> remap[2];
  for (int kind = 0; kind < 2; ++kind) words::number_by_count(first[kind], count[kind], voc[kind], remap[kind]);
  // Counts per kind, id and context: [kind][id * kCtx + c].
  const uint32_t nv[2] = {voc[0].size(), voc[1].size()};
  std::vector<uint32_t>* cc = sym_of;
  for (int kind = 0; kind < 2; ++kind) cc[kind].assign((static_cast<size_t>(nv[kind]) + 1) * kCtx, 0);
  uint32_t prev = 0;
  for (uint32_t x : tid) {
    if (x == ~0u) { prev = 0; continue; }
    const int kind = static_cast<int>(x & 1);
    const uint32_t id = remap[kind][x >> 1];
    ++cc[kind][static_cast<size_t>(id) * kCtx + std::min<uint32_t>(prev, kCtx - 1)];
    if (kind == 1) prev = id;
  }
  std::vector<std::pair<uint32_t, uint64_t>> vw;
  thread_local std::vector<std::pair<uint32_t, uint64_t>> vws[kCtx];  // per context: (id, count), ids ascending
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<uint64_t> singles_by_len(33, 0);
    uint64_t singles[kCtx] = {};
    std::vector<uint32_t>& c = cc[kind];
    for (auto& v : vws) v.assign(1, {0, 0});  // the escape first; its weight below
    uint64_t once = 0;
    std::vector<uint64_t> lens(words::kMaxTok + 1, 1);
    std::vector<uint32_t>& bytes = byte_count[kind];
    bytes.assign(257 * 256, 0);
    std::fill(std::begin(byte_built[kind]), std::end(byte_built[kind]), false);
    // One pass over the ids (a row of kCtx counts each), not one per
    // context: 32 strided passes over the counts were most of priming.
    for (uint32_t id = 1; id <= nv[kind]; ++id) {
      uint32_t* row = c.data() + static_cast<size_t>(id) * kCtx;
      uint64_t total = 0;
      for (int ctx = 0; ctx < kCtx; ++ctx) {
        const uint32_t k = row[ctx];
        if (!k) continue;
        total += k;
        if (k == 1) { ++singles[ctx]; ++singles_by_len[std::bit_width(id)]; }
        // The count read, the row now holds the id's symbol + 1 (0: not in the table).
        row[ctx] = 0;
        if (vws[ctx].size() < kMaxSyms) {
          row[ctx] = static_cast<uint32_t>(vws[ctx].size()) + 1;
          vws[ctx].push_back({id, k});
        }
      }
      once += total == 1;
      const uint8_t* p = voc[kind].data(id);
      const uint32_t l = voc[kind].len(id);
      ++lens[l];
      uint32_t prev_byte = 256;
      for (uint32_t i = 0; i < l; ++i) { ++bytes[prev_byte * 256 + p[i]]; prev_byte = p[i]; }
    }
    for (int ctx = 0; ctx < kCtx; ++ctx) {
      std::vector<std::pair<uint32_t, uint64_t>>& v = vws[ctx];
      v[0].second = escape_weight(singles[ctx]);
      ctx_t[kind][ctx].build(v);
    }
    // The fallback: a new token, or the bit length of a known id.
    vw.clear();
    vw.push_back({0, std::max<uint64_t>(1, once)});
    for (uint32_t k = 1; k <= 32; ++k) vw.push_back({k, 1 + singles_by_len[k]});
    fall[kind].build(vw);
    vw.clear();
    for (uint32_t l = 0; l <= words::kMaxTok; ++l) vw.push_back({l, lens[l]});
    len[kind].build(vw);

  }
}

void Model::build_byte(int kind, uint32_t pb) {
  std::vector<std::pair<uint32_t, uint64_t>> vw(256);
  for (uint32_t x = 0; x < 256; ++x) vw[x] = {x, 1 + kByteWeight * byte_count[kind][pb * 256 + x]};
  byte_t[kind][pb].build(vw, 6);
  byte_built[kind][pb] = true;
}

namespace {

// The rANS decoder over [p, e): two states used in turn, symbol by symbol
// (x decodes the next one, y the one after), so that the CPU overlaps two
// symbols' table lookups; `bad` once it would read past e.
struct Dec {
  const uint8_t* p;
  const uint8_t* e;
  uint32_t x = 0, y = 0;
  bool bad = false;
  uint32_t get(const Table& t) {
    const uint32_t slot = x & (kTotal - 1);
    const uint64_t e = t.e[t.find(slot)];
    const uint32_t sf = static_cast<uint32_t>(e);
    x = (sf >> 16) * (x >> kProb) + slot - (sf & 0xffff);
    renorm_and_swap();
    return static_cast<uint32_t>(e >> 32);
  }
  // b <= 8 bits, uniform.
  uint32_t bits(int b) {
    const uint32_t slot = x & (kTotal - 1);
    const uint32_t v = slot >> (kProb - b);
    x = (1u << (kProb - b)) * (x >> kProb) + (slot & ((1u << (kProb - b)) - 1));
    renorm_and_swap();
    return v;
  }
  void renorm_and_swap() {
    while (x < kLow) {
      if (p == e) { bad = true; x = kLow; break; }
      x = x << 8 | *p++;
    }
    std::swap(x, y);
  }
};

inline void copy_token(uint8_t* d, const uint8_t* s, uint32_t n, size_t room) {
  if (n <= 16 && room >= 16) {
    std::memcpy(d, s, 16);
  } else if (room >= words::kMaxTok) {
    for (uint32_t i = 0; i < n; i += 16) std::memcpy(d + i, s + i, 16);
  } else {
    std::memcpy(d, s, n);
  }
}

template <int kind>
inline bool decode_token(Dec& d, Model& m, uint32_t& prev, uint8_t* out, size_t& pos, size_t n) {
  words::Vocab& v = m.voc[kind];
  uint32_t id = d.get(m.ctx_t[kind][prev < static_cast<uint32_t>(kCtx) ? prev : kCtx - 1]);
  if (id == 0) {
    const uint32_t k = d.get(m.fall[kind]);
    if (k == 0) {
      const uint32_t len = d.get(m.len[kind]);
      if (len > n - pos) return false;
      uint32_t pb = 256;
      for (uint32_t i = 0; i < len; ++i) {
        pb = d.get(m.byte(kind, pb));
        out[pos + i] = static_cast<uint8_t>(pb);
      }
      id = v.add(out + pos, len);
      pos += len;
      if (kind == 1) prev = id;
      return !d.bad;
    }
    id = 1;
    for (int left = static_cast<int>(k) - 1; left > 0;) {
      const int b = (left - 1) % 8 + 1;
      id = id << b | d.bits(b);
      left -= b;
    }
    if (d.bad || id > v.size()) return false;
  }
  const uint32_t len = v.len(id);
  if (len > n - pos) return false;
  copy_token(out + pos, v.data(id), len, n - pos);
  pos += len;
  if (kind == 1) prev = id;
  return !d.bad;
}

}  // namespace

bool decode(const uint8_t* src, size_t sn, const uint8_t* b, uint64_t bn, uint8_t* out, size_t n) {
  if (sn < 8) return false;
  auto be32 = [](const uint8_t* q) {
    return static_cast<uint32_t>(q[0]) << 24 | static_cast<uint32_t>(q[1]) << 16 | static_cast<uint32_t>(q[2]) << 8 | q[3];
  };
  Dec d{src + 8, src + sn};
  d.x = be32(src);
  d.y = be32(src + 4);
  if (d.x < kLow || d.y < kLow) return false;
  thread_local Model m(false);
  m.prime(b, bn);
  size_t pos = 0;
  uint32_t prev = 0;
  while (pos < n) {
    if (!decode_token<0>(d, m, prev, out, pos, n)) return false;
    if (pos >= n) break;
    if (!decode_token<1>(d, m, prev, out, pos, n)) return false;
  }
  return !d.bad && d.p == d.e && d.x == kLow && d.y == kLow;
}

}  // namespace tenpak::patch_detail::wrans
