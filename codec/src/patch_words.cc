// Codec 10 (patch), word-coded literals (method bit 4): the model shared with
// the encoder (priming from B) and the decoder. patch_words.h describes it.
#include "patch_words.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace tenpak::patch_detail::words {

void Vocab::clear() {
  off_.assign(1, 0);
  bytes_.assign(kPad, 0);
  slot_.assign(index_ ? 1024 : 0, 0);
  mask_ = slot_.empty() ? 0 : slot_.size() - 1;
}

namespace {
inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// The bytes [p, p + n) for n <= 8 as a number, without reading outside them
// (a token of B's sample may end B): any function of the bytes will do, as
// long as it differs for different strings of the same length.
inline uint64_t short_value(const uint8_t* p, uint32_t n) {
  if (n >= 4) return load32(p) | static_cast<uint64_t>(load32(p + n - 4)) << 32;
  if (n) return p[0] | static_cast<uint32_t>(p[n >> 1]) << 8 | static_cast<uint32_t>(p[n - 1]) << 16;
  return 0;
}
}  // namespace

uint64_t Vocab::hash(const uint8_t* p, uint32_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  if (n > 8) {
    uint32_t i = 0;
    for (; i + 8 < n; i += 8) {
      h = (h ^ load64(p + i)) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
    }
    h ^= load64(p + n - 8);
  } else {
    h ^= short_value(p, n);
  }
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 29);
}

bool Vocab::equal(uint32_t id, const uint8_t* p, uint32_t n) const {
  if (len(id) != n) return false;
  const uint8_t* q = data(id);
  if (n <= 8) return short_value(q, n) == short_value(p, n);
  if (n <= 16) return load64(q) == load64(p) && load64(q + n - 8) == load64(p + n - 8);
  return std::memcmp(q, p, n) == 0;
}

uint32_t Vocab::find(const uint8_t* p, uint32_t n) const {
  for (uint64_t s = hash(p, n) & mask_;; s = (s + 1) & mask_) {
    const uint32_t id = slot_[s];
    if (!id) return 0;
    if (equal(id, p, n)) return id;
  }
}

void Vocab::grow() {
  std::vector<uint32_t> old(slot_.size() * 2, 0);
  old.swap(slot_);
  mask_ = slot_.size() - 1;
  for (uint32_t id : old) {
    if (!id) continue;
    uint64_t s = hash(data(id), len(id)) & mask_;
    while (slot_[s]) s = (s + 1) & mask_;
    slot_[s] = id;
  }
}

void Vocab::append_bytes(const uint8_t* p, uint32_t n) {
  const size_t at = bytes_.size() - kPad;
  bytes_.resize(bytes_.size() + n);
  std::memcpy(bytes_.data() + at, p, n);
  std::memset(bytes_.data() + at + n, 0, kPad);
  off_.push_back(static_cast<uint32_t>(at + n));
}

uint32_t Vocab::add(const uint8_t* p, uint32_t n) {
  append_bytes(p, n);
  const uint32_t id = size();
  if (!index_) return id;
  if (2 * (static_cast<uint64_t>(id) + 1) > slot_.size()) grow();
  uint64_t s = hash(p, n) & mask_;
  while (slot_[s]) s = (s + 1) & mask_;
  slot_[s] = id;
  return id;
}

uint32_t Vocab::find_or_add(const uint8_t* p, uint32_t n, bool& added) {
  if (2 * (static_cast<uint64_t>(size()) + 2) > slot_.size()) grow();
  uint64_t s = hash(p, n) & mask_;
  for (;; s = (s + 1) & mask_) {
    const uint32_t id = slot_[s];
    if (!id) break;
    if (equal(id, p, n)) { added = false; return id; }
  }
  append_bytes(p, n);
  const uint32_t id = size();
  slot_[s] = id;
  added = true;
  return id;
}

void sample_tokens(const uint8_t* b, uint64_t n, std::vector<uint32_t>& tid, Vocab first[2],
                   std::vector<uint32_t> count[2]) {
  std::vector<std::pair<uint64_t, uint64_t>> pieces;
  if (n && n <= kSampleMax) {
    pieces.push_back({0, n});
  } else if (n) {
    const uint64_t k = kSampleMax / kPiece;
    for (uint64_t i = 0; i < k; ++i) pieces.push_back({i * (n - kPiece) / (k - 1), kPiece});
  }
  tid.clear();
  tid.reserve(std::min(n, kSampleMax) / 2 + 2 * pieces.size());
  for (int kind = 0; kind < 2; ++kind) {
    first[kind].clear();
    count[kind].assign(1, 0);
  }
  for (auto [o, len] : pieces) {
    const uint8_t* p = b + o;
    const uint8_t* e = p + len;
    int kind = 0;
    while (p < e) {
      const uint32_t l = token_len(p, e, kind);
      bool added;
      const uint32_t id = first[kind].find_or_add(p, l, added);
      if (added) count[kind].push_back(0);
      ++count[kind][id];
      tid.push_back(id << 1 | static_cast<uint32_t>(kind));
      p += l;
      kind ^= 1;
    }
    tid.push_back(~0u);
  }
}

std::vector<uint32_t> number_by_count(const Vocab& first, const std::vector<uint32_t>& count, Vocab& voc,
                                      std::vector<uint32_t>& remap) {
  std::vector<uint32_t> order(first.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i + 1;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t c) { return count[a] > count[c]; });
  remap.assign(order.size() + 1, 0);
  voc.reserve(order.size() + 4096, 0);
  for (uint32_t id : order) remap[id] = voc.add(first.data(id), first.len(id));
  return order;
}

namespace {
// code_id with the Trainer, its loops split where code_id tests per bit.
inline void train_id(IdModel& m, uint32_t v) {
  const int k = std::bit_width(v);
  uint32_t node = 1;
  for (int i = 4; i >= 0; --i) {
    const int b = (k >> i) & 1;
    m.klen[node].update(b);
    node = 2 * node + static_cast<uint32_t>(b);
  }
  if (k < 2) return;
  rc::Prob* t = m.tree.data() + kTreeOffsets[k];
  const int d = depth(k);
  int j = k - 2;
  node = 1;
  for (const int stop = j - d; j > stop; --j) {
    const int b = (v >> j) & 1;
    t[node].update(b);
    node = 2 * node + static_cast<uint32_t>(b);
  }
  for (; j >= 0; --j) m.low[k][j].update((v >> j) & 1);
}
}  // namespace

void Model::reset_and_prime(const uint8_t* b, uint64_t n) {
  const uint32_t tree_size = kTreeOffsets[32];
  ids.resize(2 * kCtx);
  for (auto& im : ids) {
    std::fill(std::begin(im.klen), std::end(im.klen), rc::Prob{});
    for (auto& row : im.low) std::fill(std::begin(row), std::end(row), rc::Prob{});
    im.tree.assign(tree_size, rc::Prob{});
  }
  spell.assign(2 * 257 * 256, rc::Prob{});
  for (auto& s : slen) std::fill(std::begin(s), std::end(s), rc::Prob{});
  voc[0].clear();
  voc[1].clear();
  prev_other = 0;
  if (!n) return;
  thread_local std::vector<uint32_t> tid;
  thread_local Vocab first[2];
  std::vector<uint32_t> count[2];
  sample_tokens(b, n, tid, first, count);
  std::vector<uint32_t> remap[2];
  for (int kind = 0; kind < 2; ++kind) {
    const Vocab& f = first[kind];
    Trainer tr;
    for (uint32_t id : number_by_count(f, count[kind], voc[kind], remap[kind]))
      code_spelling(tr, *this, kind, f.data(id), f.len(id));
  }
  for (uint32_t x : tid) {
    if (x == ~0u) { prev_other = 0; continue; }
    const int kind = static_cast<int>(x & 1);
    const uint32_t id = remap[kind][x >> 1];
    train_id(id_model(kind), id);
    if (kind == 1) prev_other = id;
  }
  prev_other = 0;
}

namespace {

// Decodes `depth` (>= 1) bits down the binary tree of probabilities rooted
// at t[1]; returns the leaf, 2^depth + the bits (first bit most
// significant). Both children's probabilities are read before each bit is
// decoded, so the next step does not wait on this one's branch.
__attribute__((always_inline)) inline uint32_t walk_tree(rc::Decoder& d, rc::Prob* t, int depth) {
  uint32_t node = 1;
  uint16_t p = t[1].p;
  for (int i = 0; i + 1 < depth; ++i) {
    const uint16_t p0 = t[2 * node].p, p1 = t[2 * node + 1].p;
    const int b = d.bit_branchy(t[node], p);
    node = 2 * node + static_cast<uint32_t>(b);
    p = b ? p1 : p0;
  }
  return 2 * node + static_cast<uint32_t>(d.bit_branchy(t[node], p));
}

template <int nbits>
uint32_t decode_tree(rc::Decoder& d, rc::Prob* t) {
  return walk_tree(d, t, nbits) - (1u << nbits);
}

uint32_t decode_id(rc::Decoder& d, IdModel& m) {
  const int k = static_cast<int>(decode_tree<5>(d, m.klen));
  if (k < 2) return static_cast<uint32_t>(k);
  const int dd = depth(k);
  uint32_t v = dd ? walk_tree(d, m.tree.data() + kTreeOffsets[k], dd) : 1;  // the leading one and the tree's bits
  for (int j = k - 2 - dd; j >= 0; --j) v = 2 * v + static_cast<uint32_t>(d.bit_branchy(m.low[k][j]));
  return v;
}

// A token of n <= kMaxTok bytes from a vocabulary (readable for 16 bytes
// past its end, Vocab::kPad) to out, which has `room` writable bytes (n <=
// room): 16 bytes at once when there is room, as almost always; a call to
// memcpy per token cost 5% of decoding, a branch per size class more.
inline void copy_token(uint8_t* d, const uint8_t* s, uint32_t n, size_t room) {
  if (n <= 16 && room >= 16) {
    std::memcpy(d, s, 16);
  } else if (room >= kMaxTok) {
    for (uint32_t i = 0; i < n; i += 16) std::memcpy(d + i, s + i, 16);
  } else {
    std::memcpy(d, s, n);
  }
}

// One token of `kind` at out[pos]; false when corrupt.
template <int kind>
inline bool decode_token(rc::Decoder& d, Model& m, uint8_t* out, size_t& pos, size_t n) {
  uint32_t id = decode_id(d, m.id_model(kind));
  Vocab& v = m.voc[kind];
  if (id == 0) {
    const uint32_t len = decode_tree<7>(d, m.slen[kind]);
    if (len > kMaxTok || len > n - pos) return false;
    rc::Prob* y = m.spell.data() + static_cast<size_t>(kind) * 257 * 256;
    uint32_t prev = 256;
    for (uint32_t i = 0; i < len; ++i) {
      prev = decode_tree<8>(d, y + prev * 256);
      out[pos + i] = static_cast<uint8_t>(prev);
    }
    id = v.add(out + pos, len);
    pos += len;
  } else {
    if (id > v.size()) return false;
    const uint32_t len = v.len(id);
    if (len > n - pos) return false;
    copy_token(out + pos, v.data(id), len, n - pos);
    pos += len;
  }
  if (kind == 1) m.prev_other = id;
  return !d.overrun();
}

}  // namespace

bool decode(const uint8_t* src, size_t sn, const uint8_t* b, uint64_t bn, uint8_t* out, size_t n) {
  thread_local Model m(false);
  m.reset_and_prime(b, bn);
  rc::Decoder d(src, sn);
  size_t pos = 0;
  // Tokens alternate kinds, word first: one loop turn per pair, so each
  // kind's branches are predicted apart.
  while (pos < n) {
    if (!decode_token<0>(d, m, out, pos, n)) return false;
    if (pos >= n) break;
    if (!decode_token<1>(d, m, out, pos, n)) return false;
  }
  return d.exact_end();
}

}  // namespace tenpak::patch_detail::words
