// Codec 10 (patch), literal method "static words" (method bit 6): the tokens
// of method bit 4 (patch_words.h), each coded by its id with a STATIC model
// that writer and reader both derive from the same sample of B (nothing is
// transmitted), through two interleaved table-driven rANS states. docs/FORMAT.md
// ("Codec 10", "Static word-coded literals") is the normative description;
// the encoder (patch_wrans_encode.cc) and the decoder (patch_wrans.cc) share
// this model (private to codec/).
//
// Why: bit 4's adaptive binary decisions (~8 per token, each dependent on the
// last) decode ~60 MB of literals per CPU-second, too slow for a 500 MB/cpu-s
// rebuild of a data set with appended text; a static model decodes a token
// with one table lookup and one multiply in the common case (docs/BENCHMARKS.md,
// Dataset deltas). It is a few percent larger than bit 4, which adapts to the
// new text; encode_words (below) chooses between them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "patch_words.h"

namespace tenpak::patch_detail::wrans {

constexpr int kProb = 15;                  // every table's frequencies sum to 2^kProb
constexpr uint32_t kTotal = 1u << kProb;
constexpr uint32_t kLow = 1u << 23;        // the state lives in [kLow, 2^32)
constexpr uint32_t kMaxSyms = kTotal / 2;  // symbols in one table at most
constexpr int kCtx = words::kCtx;          // 16 contexts per kind (previous separator's id)
constexpr int kBucketBits = 12;            // decoder's slot -> symbol buckets per table
// A spelled byte's weight is 1 + kByteWeight x its count after the same byte
// in the vocabulary's tokens (ds-append: 4 -> +0.3%, 64 -> -0.1%).
constexpr uint64_t kByteWeight = 16;

// One static distribution: symbols in layout order, each with a value (an
// id, a bit length, a byte...), a frequency >= 1 and a cumulative start.
struct Table {
  // Per symbol: sf = start | freq << 16 (freq <= 2^15, start < 2^15) in the
  // low half, its value in the high half (one load for both while decoding).
  std::vector<uint64_t> e;
  uint32_t sf(uint32_t i) const { return static_cast<uint32_t>(e[i]); }
  std::vector<uint16_t> bucket;  // per 2^(15 - shift) slots: the first symbol whose range holds its first slot
  int shift = kProb - kBucketBits;
  uint32_t size() const { return static_cast<uint32_t>(e.size()); }
  // (value, weight) pairs in layout order, weights >= 1, 1 <= n <= kMaxSyms:
  // frequencies 1 + floor(w * (2^15 - n) / W), the rest of 2^15 to the first
  // symbol of largest weight (FORMAT.md).
  // bucket_bits: how many buckets the decoder's lookup uses (any; speed only).
  void build(const std::vector<std::pair<uint32_t, uint64_t>>& vw, int bucket_bits = kBucketBits);
  // The symbol whose range holds slot (< 2^15).
  uint32_t find(uint32_t slot) const {
    uint32_t j = bucket[slot >> shift];
    while ((sf(j) & 0xffff) + (sf(j) >> 16) <= slot) ++j;
    return j;
  }
};

// The model of one frame's literal stream: vocabularies as bit 4's priming
// orders them, and per kind the context tables, the fallback (escape or an
// id's bit length), the spelled length and the spelled bytes.
struct Model {
  explicit Model(bool index) { voc[0].set_index(index); voc[1].set_index(index); }
  words::Vocab voc[2];
  Table ctx_t[2][kCtx];  // [kind][min(prev, 15)]: value 0 the escape, else an id
  Table fall[2];   // values 0 (spell a new token), 1..32 (an id's bit length)
  Table len[2];    // values 0..64
  // Spelled bytes: [kind][previous byte of the token, 256 at its start],
  // values 0..255; each table built when first used (most never are: a few
  // tokens of a frame are spelled, and 514 tables cost a third of priming).
  const Table& byte(int kind, uint32_t pb) {
    if (!byte_built[kind][pb]) build_byte(kind, pb);
    return byte_t[kind][pb];
  }
  Table byte_t[2][257];
  bool byte_built[2][257];
  std::vector<uint32_t> byte_count[2];  // [pb * 256 + x]: x after pb in the tokens of V_t (from priming)
  void build_byte(int kind, uint32_t pb);
  // Per kind, [id * kCtx + c]: the id's symbol + 1 in ctx_t[kind][c], 0 when
  // absent (the encoder's lookup; priming counts in it first).
  std::vector<uint32_t> sym_of[2];
  void prime(const uint8_t* b, uint64_t n);
};

// The literal stream coded (method bit 6), given B. Appends to `out`.
void encode(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out);
// The literals word-coded for encode_patch: force 4 or 6 codes them with
// that method bit only; 0 codes both and keeps bit 6 when it is at most
// kMarginPct percent larger than bit 4 (it rebuilds several times faster),
// else the smaller (FORMAT.md states the rule). Returns whether bit 6 was kept.
constexpr uint64_t kMarginPct = 5;
bool encode_words(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out, int force);
// Decodes exactly n literal bytes into `out`; false when the stream is corrupt.
bool decode(const uint8_t* src, size_t sn, const uint8_t* b, uint64_t bn, uint8_t* out, size_t n);

}  // namespace tenpak::patch_detail::wrans
