// Codec 10 (patch), literal method "words" (method bit 4): the literal stream
// as tokens (alternating runs of word bytes and of other bytes), each coded
// by its id in an adaptive model primed from a sample of B, new tokens
// spelled byte by byte; all through the binary range coder of sub_ctx
// (range_coder.h). docs/FORMAT.md ("Codec 10", "Word-coded literals") is the
// normative description; the encoder (patch_words_encode.cc) and the decoder
// (patch_words.cc) share this model (private to codec/).
//
// Why: new records of a text data set are close to i.i.d. words, which an
// LZ coder (zstd) codes well above their entropy and a word model near it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "range_coder.h"

namespace tenpak::patch_detail::words {

constexpr uint32_t kMaxTok = 64;             // bytes per token at most
constexpr uint64_t kSampleMax = 256u << 10;  // bytes of B that prime the model
constexpr uint64_t kPiece = 4096;            // B sampled in pieces of this size when larger
constexpr int kCtx = 16;                     // contexts per token kind
constexpr int kDepth = 10;                   // tree bits under an id's leading one

// Word bytes: ASCII letters and digits, and every byte >= 0x80 (UTF-8
// sequences, valid or not, stay inside words).
constexpr bool word_byte_rule(uint8_t c) {
  return (c >= '0' && c <= '9') || (static_cast<uint8_t>((c | 0x20) - 'a') < 26) || c >= 0x80;
}
// word_byte_rule as a table: tokenizing reads it once per byte of B's sample.
struct WordTable {
  bool is[256];
  constexpr WordTable() : is{} {
    for (int c = 0; c < 256; ++c) is[c] = word_byte_rule(static_cast<uint8_t>(c));
  }
};
inline constexpr WordTable kWordTable{};
inline bool word_byte(uint8_t c) { return kWordTable.is[c]; }
// Length of the token of `kind` (0 word, 1 other) at p: the maximal run of
// bytes of that class, at most kMaxTok; may be 0.
inline uint32_t token_len(const uint8_t* p, const uint8_t* e, int kind) {
  const bool want = kind == 0;
  const uint32_t max = e - p < static_cast<ptrdiff_t>(kMaxTok) ? static_cast<uint32_t>(e - p) : kMaxTok;
  uint32_t n = 0;
  while (n < max && word_byte(p[n]) == want) ++n;
  return n;
}

// Tree nodes below the leading one of an id of bit length k (k >= 2).
constexpr int depth(int k) {
  const int d = k - 1 < kDepth ? k - 1 : 2 * kDepth + 1 - k;
  return d < 0 ? 0 : d;
}

// The probabilities that code one token id (0 = escape) in one context.
struct IdModel {
  rc::Prob klen[32];       // bit length of the id, a 5-bit tree (nodes 1..31)
  rc::Prob low[32][32];    // [k][bit] bits below the tree
  std::vector<rc::Prob> tree;  // per k, 2^depth(k) nodes at tree_off[k]
};

// Distinct tokens of one kind: id (from 1) -> bytes; bytes -> id (only with
// an index: the decoder never looks a token up, so its vocabularies keep none).
class Vocab {
 public:
  static constexpr uint32_t kPad = 16;  // readable bytes past any token's end (copy_token reads 16)
  explicit Vocab(bool index = true) : index_(index) { clear(); }
  void clear();
  void set_index(bool index) { index_ = index; clear(); }
  uint32_t size() const { return static_cast<uint32_t>(off_.size() - 1); }
  const uint8_t* data(uint32_t id) const { return bytes_.data() + off_[id - 1]; }
  uint32_t len(uint32_t id) const { return off_[id] - off_[id - 1]; }
  // The id of these bytes, 0 when absent (needs the index).
  uint32_t find(const uint8_t* p, uint32_t n) const;
  // Appends (ids are given in order); does not look for an existing copy.
  uint32_t add(const uint8_t* p, uint32_t n);
  // find, else add; sets `added`.
  uint32_t find_or_add(const uint8_t* p, uint32_t n, bool& added);
  void reserve(size_t ids, size_t bytes) { off_.reserve(ids + 1); bytes_.reserve(bytes + kPad); }

 private:
  static uint64_t hash(const uint8_t* p, uint32_t n);
  bool equal(uint32_t id, const uint8_t* p, uint32_t n) const;
  void grow();
  void append_bytes(const uint8_t* p, uint32_t n);
  std::vector<uint32_t> off_;   // id i: bytes_[off_[i-1], off_[i])
  std::vector<uint8_t> bytes_;  // the tokens, then kPad zero bytes
  std::vector<uint32_t> slot_;  // open addressing: id or 0
  uint64_t mask_ = 0;
  bool index_ = true;
};

// B's sample tokenised, as method bits 4 and 6 both prime from it: B whole
// when at most kSampleMax, else kSampleMax / kPiece pieces spread evenly over
// it (first at 0, last ending at |B|). tid gets, per token, (its id in
// first-appearance order) << 1 | kind, and ~0u at each piece end (the
// context restarts); first[kind] the distinct tokens (ids from 1),
// count[kind][id] how often each occurs (count[kind][0] = 0).
void sample_tokens(const uint8_t* b, uint64_t n, std::vector<uint32_t>& tid, Vocab first[2],
                   std::vector<uint32_t> count[2]);

// Numbers the distinct tokens of one kind of B's sample: `first` holds them
// in order of first appearance (ids from 1), count[id] how often each occurs.
// Appends them to `voc` by count, most first, ties by first appearance, and
// sets remap[first id] = id in `voc` (remap[0] = 0). Method bits 4 and 6 both
// number their vocabulary this way (docs/FORMAT.md: bit 6 uses bit 4's
// order), so they agree. Returns the first ids in their new order.
std::vector<uint32_t> number_by_count(const Vocab& first, const std::vector<uint32_t>& count, Vocab& voc,
                                      std::vector<uint32_t>& remap);

// The whole model of one frame's literal stream.
struct Model {
  // index: whether the vocabularies can look tokens up (the encoder's need).
  explicit Model(bool index = true) { voc[0].set_index(index); voc[1].set_index(index); }
  Vocab voc[2];                   // [kind]
  std::vector<IdModel> ids;       // [kind * kCtx + ctx]
  std::vector<rc::Prob> spell;    // [kind][prev byte or 256][256 tree nodes]
  rc::Prob slen[2][128];          // [kind] 7-bit tree over a spelled token's length
  uint32_t prev_other = 0;        // id of the last token of kind 1 (0 at the start)
  // Fresh probabilities and vocabularies, then primed from B (see FORMAT.md).
  void reset_and_prime(const uint8_t* b, uint64_t n);
  // Contexts (measured on ds-append: order-0 349 KB, this 297 KB; a
  // separator coded after the previous word instead: 304 KB): both kinds
  // are coded in the context of the previous separator token's id, the ids
  // from kCtx - 1 on sharing one.
  int ctx(int) const { return static_cast<int>(prev_other < static_cast<uint32_t>(kCtx) ? prev_other : kCtx - 1); }
  IdModel& id_model(int kind) { return ids[kind * kCtx + ctx(kind)]; }
};

// Tree offsets of IdModel::tree per bit length (index 32 = total size); a
// constant table, not a function-local static: it is read once per token.
struct TreeOffsets {
  uint32_t at[33];
  constexpr TreeOffsets() : at{} {
    uint32_t acc = 0;
    for (int k = 0; k < 32; ++k) {
      at[k] = acc;
      if (k >= 2) acc += 1u << depth(k);
    }
    at[32] = acc;
  }
  constexpr uint32_t operator[](int k) const { return at[k]; }
};
inline constexpr TreeOffsets kTreeOffsets{};

// The coding steps, for the range Encoder, Decoder, or Trainer (updates only).
struct Trainer {
  void bit(rc::Prob& p, int b) { p.update(b); }
};

template <class C>
void code_bits_tree(C& c, rc::Prob* t, int nbits, uint32_t v) {  // encode v in an nbits tree
  uint32_t node = 1;
  for (int i = nbits - 1; i >= 0; --i) {
    const int b = (v >> i) & 1;
    c.bit(t[node], b);
    node = 2 * node + b;
  }
}
template <class C>
void code_id(C& c, IdModel& m, uint32_t v) {
  int k = 0;
  while (k < 32 && (v >> k)) ++k;
  code_bits_tree(c, m.klen, 5, static_cast<uint32_t>(k));
  if (k < 2) return;
  rc::Prob* t = m.tree.data() + kTreeOffsets[k];
  const int d = depth(k);
  uint32_t node = 1;
  for (int j = k - 2, pos = 0; j >= 0; --j, ++pos) {
    const int b = (v >> j) & 1;
    if (pos < d) {
      c.bit(t[node], b);
      node = 2 * node + b;
    } else {
      c.bit(m.low[k][j], b);
    }
  }
}
template <class C>
void code_spelling(C& c, Model& m, int kind, const uint8_t* p, uint32_t n) {
  code_bits_tree(c, m.slen[kind], 7, n);
  uint32_t prev = 256;
  for (uint32_t i = 0; i < n; ++i) {
    code_bits_tree(c, m.spell.data() + (static_cast<size_t>(kind) * 257 + prev) * 256, 8, p[i]);
    prev = p[i];
  }
}

// The literal stream coded (method bit 4), given B. Appends to `out`.
void encode(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out);
// Decodes exactly n literal bytes into `out`; false when the stream is corrupt.
bool decode(const uint8_t* src, size_t sn, const uint8_t* b, uint64_t bn, uint8_t* out, size_t n);

}  // namespace tenpak::patch_detail::words
