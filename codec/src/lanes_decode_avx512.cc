// Codec 9 (sub_lanes) decoding with AVX-512 F/BW/VL/DQ: 16 lanes per
// instruction, 2- and 4-byte elements. Same bytes and verdict as the scalar
// decoder in lanes_decode.cc (tests compare them); chosen there at run time.
#include <immintrin.h>

#include <cstring>

#include "lanes_internal.h"

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_epi32 as
// a pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tenpak::lanes::detail {
namespace {

// One 16-lane rANS step: gathers the entries, updates the states, refills
// the lanes that fell under kLow from the word stream (in lane order).
// Returns the symbols (bit lengths); `bad` collects lanes with freq 0, and
// wpos past the stream sets s.bad (the caller stops).
TP_AVX512 inline __m512i rans_step(__m512i& x, __m512i q, __m512i offlo, __m512i offhi, const uint32_t* T, State& s,
                                   __mmask16& bad) {
  const __m512i m11 = _mm512_set1_epi32(kScale - 1);
  const __m512i tb = _mm512_permutex2var_epi32(offlo, q, offhi);
  const __m512i e = _mm512_i32gather_epi32(_mm512_add_epi32(tb, _mm512_and_si512(x, m11)), T, 4);
  const __m512i f = _mm512_and_si512(e, _mm512_set1_epi32(0xfff));
  bad |= _mm512_cmpeq_epi32_mask(f, _mm512_setzero_si512());
  const __m512i bias = _mm512_and_si512(_mm512_srli_epi32(e, 12), m11);
  x = _mm512_add_epi32(_mm512_mullo_epi32(f, _mm512_srli_epi32(x, kScaleBits)), bias);
  const __mmask16 mr = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(kLow));
  const unsigned nw = static_cast<unsigned>(__builtin_popcount(mr));
  if (s.wpos + 2 * nw > s.wlen) {
    s.bad = true;
    return _mm512_setzero_si512();
  }
  // A full 32-byte load where the stream has room: its address depends on
  // the previous steps only, so it issues before this step's mask is known
  // (a load masked by nw would sit on the state's dependency chain).
  const __m256i wl = s.wpos + 32 <= s.wlen
                         ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.words + s.wpos))
                         : _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << nw) - 1), s.words + s.wpos);
  const __m512i wv = _mm512_cvtepu16_epi32(wl);
  s.wpos += 2 * nw;
  x = _mm512_mask_or_epi32(x, mr, _mm512_slli_epi32(x, 16), _mm512_maskz_expand_epi32(mr, wv));
  return _mm512_srli_epi32(e, 24);
}

// z from the symbol and its raw field.
TP_AVX512 inline __m512i make_z(__m512i k, __m512i val) {
  const __m512i one = _mm512_set1_epi32(1);
  return _mm512_or_si512(_mm512_sllv_epi32(one, _mm512_sub_epi32(k, one)), val);  // k = 0: shift by 2^32-1 gives 0
}

// One half (16 lanes, elements i0..i0+15) of a decode_simd16 step. False
// when a stream ran out (s.bad set: the caller stops).
template <bool FL>
TP_AVX512 __attribute__((always_inline)) inline bool dec16_half(State& s, const uint32_t* T, __m512i offlo,
                                                                __m512i offhi, const Expo& ex, const uint8_t* base,
                                                                size_t i0, uint8_t* out, __m512i& x, __m512i& buf,
                                                                __m512i& cnt, __mmask16& bad) {
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 2 * i0)));
  const __m512i k = rans_step(x, bucket16(b, ex), offlo, offhi, T, s, bad);
  if (s.bad) return false;
  const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
  const __mmask16 mf = _mm512_cmplt_epu32_mask(cnt, r);
  const unsigned nf = static_cast<unsigned>(__builtin_popcount(mf));
  if (s.rpos + 2 * nf > s.rlen) {
    s.bad = true;
    return false;
  }
  __m512i rv = _mm512_cvtepu16_epi32(
      s.rpos + 32 <= s.rlen ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.raw + s.rpos))
                            : _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << nf) - 1), s.raw + s.rpos));
  s.rpos += 2 * nf;
  rv = _mm512_maskz_expand_epi32(mf, rv);
  buf = _mm512_or_si512(buf, _mm512_sllv_epi32(rv, cnt));
  cnt = _mm512_mask_add_epi32(cnt, mf, cnt, _mm512_set1_epi32(16));
  const __m512i val = _mm512_andnot_si512(_mm512_sllv_epi32(ones, r), buf);
  buf = _mm512_srlv_epi32(buf, r);
  cnt = _mm512_sub_epi32(cnt, r);
  const __m512i z = make_z(k, val);
  const __m512i d = _mm512_xor_si512(_mm512_srli_epi32(z, 1), _mm512_sub_epi32(zero, _mm512_and_si512(z, one)));
  __m512i ob = b;
  if (FL) {  // ord: sign set -> ~b, else b | 0x8000 (16-bit)
    const __m512i sg = _mm512_srai_epi32(_mm512_slli_epi32(b, 16), 31);
    ob = _mm512_xor_si512(b, _mm512_or_si512(_mm512_set1_epi32(0x8000), _mm512_and_si512(sg, _mm512_set1_epi32(0x7fff))));
  }
  __m512i a = _mm512_add_epi32(ob, d);
  if (FL) {  // unord: top bit set -> clear it, else ~a
    const __m512i tp = _mm512_srai_epi32(_mm512_slli_epi32(a, 16), 31);
    a = _mm512_xor_si512(a, _mm512_xor_si512(_mm512_set1_epi32(0xffff), _mm512_and_si512(tp, _mm512_set1_epi32(0x7fff))));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i0), _mm512_cvtepi32_epi16(a));
  return true;
}

// w = 2 (BF16, F16, 16-bit ints): 16-bit raw words, 32-bit bit buffers.
// Two named sets of state registers (arrays indexed by the half would be
// kept in memory by GCC, a store and a load per step).
template <bool FL>
TP_AVX512 size_t decode_simd16(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                               uint8_t* out) {
  // A local copy: through the reference, every store to `out` (uint8_t*,
  // may alias anything) would force the stream cursors back to memory.
  State s = st;
  const uint32_t* T = dt.t.data();
  const __m512i offlo = _mm512_loadu_si512(dt.off), offhi = _mm512_loadu_si512(dt.off + 16);
  const __m512i zero = _mm512_setzero_si512();
  __m512i x0 = _mm512_loadu_si512(s.x), x1 = _mm512_loadu_si512(s.x + 16);
  __m512i buf0 = zero, buf1 = zero, cnt0 = zero, cnt1 = zero;
  __mmask16 bad = 0;
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    if (!dec16_half<FL>(s, T, offlo, offhi, ex, base, i, out, x0, buf0, cnt0, bad)) break;
    if (!dec16_half<FL>(s, T, offlo, offhi, ex, base, i + 16, out, x1, buf1, cnt1, bad)) break;
  }
  if (bad) s.bad = true;
  _mm512_storeu_si512(s.x, x0);
  _mm512_storeu_si512(s.x + 16, x1);
  uint32_t tb[kLanes], tc[kLanes];
  _mm512_storeu_si512(tb, buf0);
  _mm512_storeu_si512(tb + 16, buf1);
  _mm512_storeu_si512(tc, cnt0);
  _mm512_storeu_si512(tc + 16, cnt1);
  for (int l = 0; l < kLanes; ++l) {
    s.buf[l] = tb[l];
    s.cnt[l] = tc[l];
  }
  st = s;
  return i;
}

// One half (16 lanes, elements i0..i0+15) of a decode_simd32 step; bit
// buffers b0/c0 for its low 8 lanes, b1/c1 for the high 8. False when a
// stream ran out (s.bad set: the caller stops).
template <bool FL>
TP_AVX512 __attribute__((always_inline)) inline bool dec32_half(State& s, const uint32_t* T, __m512i offlo,
                                                                __m512i offhi, const Expo& ex, const uint8_t* base,
                                                                size_t i0, uint8_t* out, __m512i& x, __m512i& b0,
                                                                __m512i& c0, __m512i& b1, __m512i& c1,
                                                                __mmask16& bad) {
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  const __m512i b = _mm512_loadu_si512(base + 4 * i0);
  const __m512i k = rans_step(x, bucket16(b, ex), offlo, offhi, T, s, bad);
  if (s.bad) return false;
  const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
  // Low 8 lanes then high 8 (the raw stream's order).
  auto refill = [&](__m512i& buf, __m512i& cnt, __m256i r8, __m256i& v32) __attribute__((always_inline)) TP_AVX512 {
    const __m512i rj = _mm512_cvtepu32_epi64(r8);
    const __mmask8 mf = _mm512_cmplt_epu64_mask(cnt, rj);
    const unsigned nf = static_cast<unsigned>(__builtin_popcount(mf));
    if (s.rpos + 4 * nf > s.rlen) {
      s.bad = true;
      return false;
    }
    __m512i rv = _mm512_cvtepu32_epi64(
        s.rpos + 32 <= s.rlen ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.raw + s.rpos))
                              : _mm256_maskz_loadu_epi32(static_cast<__mmask8>((1u << nf) - 1), s.raw + s.rpos));
    s.rpos += 4 * nf;
    rv = _mm512_maskz_expand_epi64(mf, rv);
    buf = _mm512_or_si512(buf, _mm512_sllv_epi64(rv, cnt));
    cnt = _mm512_mask_add_epi64(cnt, mf, cnt, _mm512_set1_epi64(32));
    v32 = _mm512_cvtepi64_epi32(_mm512_andnot_si512(_mm512_sllv_epi64(_mm512_set1_epi64(-1), rj), buf));
    buf = _mm512_srlv_epi64(buf, rj);
    cnt = _mm512_sub_epi64(cnt, rj);
    return true;
  };
  __m256i v0, v1;
  if (!refill(b0, c0, _mm512_castsi512_si256(r), v0) || !refill(b1, c1, _mm512_extracti64x4_epi64(r, 1), v1))
    return false;
  const __m512i val = _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
  const __m512i z = make_z(k, val);
  const __m512i d = _mm512_xor_si512(_mm512_srli_epi32(z, 1), _mm512_sub_epi32(zero, _mm512_and_si512(z, one)));
  __m512i ob = b;
  if (FL) {
    const __m512i sg = _mm512_srai_epi32(b, 31);
    ob = _mm512_xor_si512(b, _mm512_or_si512(_mm512_set1_epi32(int(0x80000000u)), _mm512_and_si512(sg, _mm512_set1_epi32(0x7fffffff))));
  }
  __m512i a = _mm512_add_epi32(ob, d);
  if (FL) {
    const __m512i tp = _mm512_srai_epi32(a, 31);
    a = _mm512_xor_si512(a, _mm512_xor_si512(ones, _mm512_and_si512(tp, _mm512_set1_epi32(0x7fffffff))));
  }
  _mm512_storeu_si512(out + 4 * i0, a);
  return true;
}

// w = 4 (F32, 32-bit ints): 32-bit raw words, 64-bit bit buffers (8 lanes
// per register, so a 16-lane step refills in two halves, low lanes first).
// Named state registers, as in decode_simd16.
template <bool FL>
TP_AVX512 size_t decode_simd32(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                               uint8_t* out) {
  State s = st;  // a local copy, as in decode_simd16
  const uint32_t* T = dt.t.data();
  const __m512i offlo = _mm512_loadu_si512(dt.off), offhi = _mm512_loadu_si512(dt.off + 16);
  const __m512i zero = _mm512_setzero_si512();
  __m512i x0 = _mm512_loadu_si512(s.x), x1 = _mm512_loadu_si512(s.x + 16);
  __m512i b0 = zero, b1 = zero, b2 = zero, b3 = zero, c0 = zero, c1 = zero, c2 = zero, c3 = zero;
  __mmask16 bad = 0;
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    if (!dec32_half<FL>(s, T, offlo, offhi, ex, base, i, out, x0, b0, c0, b1, c1, bad)) break;
    if (!dec32_half<FL>(s, T, offlo, offhi, ex, base, i + 16, out, x1, b2, c2, b3, c3, bad)) break;
  }
  if (bad) s.bad = true;
  _mm512_storeu_si512(s.x, x0);
  _mm512_storeu_si512(s.x + 16, x1);
  uint64_t tb[kLanes], tc[kLanes];
  _mm512_storeu_si512(tb, b0);
  _mm512_storeu_si512(tb + 8, b1);
  _mm512_storeu_si512(tb + 16, b2);
  _mm512_storeu_si512(tb + 24, b3);
  _mm512_storeu_si512(tc, c0);
  _mm512_storeu_si512(tc + 8, c1);
  _mm512_storeu_si512(tc + 16, c2);
  _mm512_storeu_si512(tc + 24, c3);
  for (int l = 0; l < kLanes; ++l) {
    s.buf[l] = tb[l];
    s.cnt[l] = static_cast<uint32_t>(tc[l]);
  }
  st = s;
  return i;
}

}  // namespace

size_t decode_groups_avx512(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                            uint8_t* out, size_t w, bool fl) {
  if (w == 2) return fl ? decode_simd16<true>(st, dt, ex, base, count, out) : decode_simd16<false>(st, dt, ex, base, count, out);
  return fl ? decode_simd32<true>(st, dt, ex, base, count, out) : decode_simd32<false>(st, dt, ex, base, count, out);
}

}  // namespace tenpak::lanes::detail
