// Codec 9, sub_lanes: what its encoder and decoder files share (private to
// codec/). docs/FORMAT.md ("codec 9") is the normative text; lanes_decode.cc
// describes the model. One file per instruction-set path and direction:
//   lanes_decode.cc          payload parsing, the scalar decoder, the run-time
//                            choice of path (decode, best_path)
//   lanes_decode_avx512.cc   16-lane kernels (AVX-512 F/BW/VL/DQ)
//   lanes_decode_avx2.cc     8-lane kernels (AVX2, BMI1/2)
//   lanes_encode.cc          tables, the scalar passes, payload layout (encode)
//   lanes_encode_avx512.cc   forward and backward passes (AVX-512 + CD)
//   lanes_encode_avx2.cc     forward and backward passes (AVX2, BMI1/2)
// The decoder files go into tenpak_codec_decode (the mount links them), the
// encoder files into tenpak_codec_encode. Each SIMD file exposes plain
// (non-target) entry points that run its kernels over the whole groups of
// 32 elements; callers reach them only after path_available() said yes.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "element_ops.h"
#include "lanes_codec.h"

namespace tenpak::lanes::detail {

using namespace elem;

constexpr int kLanes = 32;
constexpr int kScaleBits = 11;
constexpr uint32_t kScale = 1u << kScaleBits;  // every table's frequencies sum to this
constexpr uint32_t kLow = 1u << 16;            // states live in [kLow, 2^32)
constexpr int kCtx = 32;                       // contexts: exponent buckets 0..31
constexpr int kMaxSym = 33;                    // bit lengths 0..32
constexpr size_t kHeader = 12;                 // A, B, M
constexpr size_t kStates = 4 * kLanes;

// Exponent buckets (Expo, expo, bucket): element_ops.h.
// Raw words are 16 bits for w <= 2 (fields <= 15 bits), 32 for w = 4.
constexpr int raw_unit(size_t w) { return w <= 2 ? 16 : 32; }

struct Tables {
  uint32_t freq[kCtx * kMaxSym] = {};  // by cell
  uint32_t cum[kCtx * kMaxSym] = {};
  // x div f as (x * rcp) >> 43, exact for x < 2^32 and f <= 2^11 (the error
  // of the rounded-up reciprocal stays under 1/f).
  uint64_t rcp[kCtx * kMaxSym] = {};
  uint32_t fc[kCtx * kMaxSym] = {};  // freq | cum << 16 (the SIMD pass)
  double inv[kCtx * kMaxSym] = {};   // 1.0 / freq (the SIMD pass)
  int n[kCtx] = {};
};

// Forward-pass state, shared by the scalar and SIMD forms.
struct RawState {
  uint64_t acc[kLanes] = {};   // the lane's incomplete word, LSB first
  uint32_t nb[kLanes] = {};    // bits in it
  uint32_t have[kLanes] = {};  // bits the decoder holds for the lane
  uint32_t pend[kLanes] = {};  // slot of the incomplete word
  uint32_t slots = 0;          // slots handed out so far
};

// Table entry per (context, slot): freq | (slot - cum) << 12 | symbol << 24.
// Context slots of absent contexts point at table 0, all zero (freq 0 marks
// corruption: such an element cannot have been encoded).
struct DecodeTables {
  std::vector<uint32_t> t;
  int32_t off[kCtx] = {};
};

// Where decoding stands; the SIMD kernels hand over to the scalar loop.
struct State {
  uint32_t x[kLanes];
  uint64_t buf[kLanes] = {};
  uint32_t cnt[kLanes] = {};
  const uint8_t* words;  // rANS u16 words
  size_t wlen, wpos = 0;
  const uint8_t* raw;    // raw words
  size_t rlen, rpos = 0;
  bool bad = false;
};

// kExpand.idx[m][l] = popcount(m & ((1 << l) - 1)): permuting a vector of
// words 0..7 by it gives lane l of mask m the next unread word in lane order
// (lanes outside m get some word; callers blend or mask them away).
struct ExpandTable {
  alignas(32) uint32_t idx[256][8];
};
constexpr ExpandTable make_expand() {
  ExpandTable t{};
  for (int m = 0; m < 256; ++m) {
    uint32_t n = 0;
    for (int l = 0; l < 8; ++l) {
      t.idx[m][l] = n;
      n += (m >> l) & 1;
    }
  }
  return t;
}
inline constexpr ExpandTable kExpand = make_expand();

// Completed raw words of a forward SIMD pass, (slot, word) pairs in the
// order completed, written to their slots by flush(). Appending the lanes'
// words with two register compresses and plain stores costs less than a
// scatter (slow on the AMD CPUs measured); the slots are distinct, so when
// they are written does not matter as long as it is before the raw words
// are read.
struct WriteLog {
  static constexpr uint32_t kCap = 1024;  // flush when fewer than 32 entries are left
  alignas(64) uint32_t slot[kCap + 16];
  alignas(64) uint32_t word[kCap + 16];
  uint32_t n = 0;
  void flush(uint32_t* raw) {
    for (uint32_t j = 0; j < n; ++j) raw[slot[j]] = word[j];
    n = 0;
  }
};

// AVX-512 helpers both directions use (lanes_decode_avx512.cc, lanes_encode_avx512.cc).
#define TP_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt")))

// Exponent bucket of 16 base elements held in 32-bit lanes.
TP_AVX512 inline __m512i bucket16(__m512i b, const Expo& ex) {
  __m512i q = _mm512_and_si512(_mm512_srlv_epi32(b, _mm512_set1_epi32(ex.shift)), _mm512_set1_epi32(static_cast<int>(ex.mask)));
  q = _mm512_sub_epi32(q, _mm512_set1_epi32(ex.off));
  return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(31));
}

// Spare entries below the encoder's word stream (the AVX2 backward pass's
// full-width stores; see lanes_encode_avx2.cc).
constexpr size_t kWordSlack = 8;

// CPU features (lanes_decode.cc). The encoder's AVX-512 also needs CD.
bool cpu_has_avx512();
bool cpu_has_avx2();
// TENPAK_SIMD's cap on what `best` may use (lanes_decode.cc).
Path simd_cap();

// The SIMD kernels over the whole groups of 32 elements (w = 2 or 4; FL:
// float ordering). Each returns the elements done; decode_scalar /
// forward_scalar go on from there with the state they leave.
size_t decode_groups_avx512(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                            uint8_t* out, size_t w, bool fl);
size_t decode_groups_avx2(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                          uint8_t* out, size_t w, bool fl);
size_t forward_groups_avx512(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                             uint16_t* cell, uint32_t* raw, size_t w, bool fl);
size_t forward_groups_avx2(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                           uint16_t* cell, uint32_t* raw, size_t w, bool fl);
void backward_groups_avx512(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                            size_t& wpos);
void backward_groups_avx2(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                          size_t& wpos);

}  // namespace tenpak::lanes::detail
