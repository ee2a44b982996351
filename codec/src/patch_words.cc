// Codec 10 (patch), word-coded literals (method bit 4): the model shared with
// the encoder (priming from B) and the decoder. patch_words.h describes it.
#include "patch_words.h"

#include <algorithm>
#include <cstring>

namespace tenpak::patch_detail::words {

void Vocab::clear() {
  off_.assign(1, 0);
  bytes_.clear();
  slot_.assign(1024, 0);
  mask_ = slot_.size() - 1;
}

uint64_t Vocab::hash(const uint8_t* p, uint32_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  uint64_t v = 0;
  std::memcpy(&v, p + i, n - i);
  h = (h ^ v) * 0x94D049BB133111EBull;
  return h ^ (h >> 29);
}

uint32_t Vocab::find(const uint8_t* p, uint32_t n) const {
  for (uint64_t s = hash(p, n) & mask_;; s = (s + 1) & mask_) {
    const uint32_t id = slot_[s];
    if (!id) return 0;
    if (len(id) == n && (n == 0 || std::memcmp(data(id), p, n) == 0)) return id;
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

uint32_t Vocab::add(const uint8_t* p, uint32_t n) {
  bytes_.append(reinterpret_cast<const char*>(p), n);
  off_.push_back(static_cast<uint32_t>(bytes_.size()));
  const uint32_t id = size();
  if (2 * (static_cast<uint64_t>(id) + 1) > slot_.size()) grow();
  uint64_t s = hash(p, n) & mask_;
  while (slot_[s]) s = (s + 1) & mask_;
  slot_[s] = id;
  return id;
}

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
  // The sample: B whole when small, else kSampleMax / kPiece pieces spread
  // evenly over it (first at 0, last ending at |B|).
  std::vector<std::pair<uint64_t, uint64_t>> pieces;
  if (n <= kSampleMax) {
    pieces.push_back({0, n});
  } else {
    const uint64_t count = kSampleMax / kPiece;
    for (uint64_t k = 0; k < count; ++k) pieces.push_back({k * (n - kPiece) / (count - 1), kPiece});
  }
  // Tokens of the sample per kind: distinct ones in order of first
  // appearance with their counts; then ids by count, descending (stable).
  struct Tok { const uint8_t* p; uint32_t len; uint32_t kind; };
  std::vector<Tok> toks;
  for (auto [o, len] : pieces) {
    const uint8_t* p = b + o;
    const uint8_t* e = p + len;
    int kind = 0;
    while (p < e) {
      const uint32_t l = token_len(p, e, kind);
      toks.push_back({p, l, static_cast<uint32_t>(kind)});
      p += l;
      kind ^= 1;
    }
    toks.push_back({nullptr, 0, 2});  // piece end: the context restarts
  }
  std::vector<uint32_t> tid(toks.size(), 0);
  for (int kind = 0; kind < 2; ++kind) {
    Vocab first;  // distinct tokens, first-appearance order
    std::vector<uint32_t> count{0};
    for (size_t i = 0; i < toks.size(); ++i) {
      if (toks[i].kind != static_cast<uint32_t>(kind)) continue;
      uint32_t id = first.find(toks[i].p, toks[i].len);
      if (!id) { id = first.add(toks[i].p, toks[i].len); count.push_back(0); }
      ++count[id];
      tid[i] = id;
    }
    std::vector<uint32_t> order(first.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i + 1;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t c) { return count[a] > count[c]; });
    std::vector<uint32_t> remap(order.size() + 1, 0);
    Trainer tr;
    for (uint32_t r = 0; r < order.size(); ++r) {
      const uint32_t id = order[r];
      remap[id] = voc[kind].add(first.data(id), first.len(id));
      code_spelling(tr, *this, kind, first.data(id), first.len(id));
    }
    for (size_t i = 0; i < toks.size(); ++i)
      if (toks[i].kind == static_cast<uint32_t>(kind)) tid[i] = remap[tid[i]];
  }
  Trainer tr;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (toks[i].kind == 2) { prev_other = 0; continue; }
    const int kind = static_cast<int>(toks[i].kind);
    code_id(tr, id_model(kind), tid[i]);
    if (kind == 1) prev_other = tid[i];
  }
  prev_other = 0;
}

namespace {

template <int nbits>
uint32_t decode_tree(rc::Decoder& d, rc::Prob* t) {
  uint32_t node = 1;
  uint16_t p = t[1].p;
  for (int i = 0; i + 1 < nbits; ++i) {
    const uint16_t p0 = t[2 * node].p, p1 = t[2 * node + 1].p;
    const int b = d.bit(t[node], p);
    node = 2 * node + static_cast<uint32_t>(b);
    p = b ? p1 : p0;
  }
  node = 2 * node + static_cast<uint32_t>(d.bit(t[node], p));
  return node - (1u << nbits);
}

uint32_t decode_id(rc::Decoder& d, IdModel& m) {
  const int k = static_cast<int>(decode_tree<5>(d, m.klen));
  if (k < 2) return static_cast<uint32_t>(k);
  rc::Prob* t = m.tree.data() + kTreeOffsets[k];
  const int dd = depth(k);
  uint32_t node = 1;
  if (dd) {
    uint16_t p = t[1].p;
    for (int pos = 0; pos + 1 < dd; ++pos) {
      const uint16_t p0 = t[2 * node].p, p1 = t[2 * node + 1].p;
      const int b = d.bit(t[node], p);
      node = 2 * node + static_cast<uint32_t>(b);
      p = b ? p1 : p0;
    }
    node = 2 * node + static_cast<uint32_t>(d.bit(t[node], p));
  }
  uint32_t v = node;  // the leading one and the tree's bits
  for (int j = k - 2 - dd; j >= 0; --j) v = 2 * v + static_cast<uint32_t>(d.bit(m.low[k][j]));
  return v;
}

// memcpy of n <= kMaxTok bytes, inline: most tokens are a few bytes, and a
// call per token cost 5% of decoding.
inline void copy_token(uint8_t* d, const uint8_t* s, uint32_t n) {
  if (n >= 16) {
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) std::memcpy(d + i, s + i, 16);
    if (i < n) std::memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(d, s, 8);
    std::memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(d, s, 4);
    std::memcpy(d + n - 4, s + n - 4, 4);
  } else {
    for (uint32_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

}  // namespace

bool decode(const uint8_t* src, size_t sn, const uint8_t* b, uint64_t bn, uint8_t* out, size_t n) {
  thread_local Model m;
  m.reset_and_prime(b, bn);
  rc::Decoder d(src, sn);
  size_t pos = 0;
  int kind = 0;
  while (pos < n) {
    uint32_t id = decode_id(d, m.id_model(kind));
    Vocab& v = m.voc[kind];
    if (id == 0) {
      const uint32_t len = decode_tree<7>(d, m.slen[kind]);
      if (len > kMaxTok || len > n - pos) return false;
      uint32_t prev = 256;
      for (uint32_t i = 0; i < len; ++i) {
        out[pos + i] = static_cast<uint8_t>(
            decode_tree<8>(d, m.spell.data() + (static_cast<size_t>(kind) * 257 + prev) * 256));
        prev = out[pos + i];
      }
      id = v.add(out + pos, len);
      pos += len;
    } else {
      if (id > v.size()) return false;
      const uint32_t len = v.len(id);
      if (len > n - pos) return false;
      copy_token(out + pos, v.data(id), len);
      pos += len;
    }
    if (kind == 1) m.prev_other = id;
    kind ^= 1;
    if (d.overrun()) return false;
  }
  return d.exact_end();
}

}  // namespace tenpak::patch_detail::words
