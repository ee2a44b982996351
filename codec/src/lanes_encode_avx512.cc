// Codec 9 (sub_lanes) encoding with AVX-512 F/BW/VL/DQ + CD: the forward
// and backward passes, 16 lanes per instruction, 2- and 4-byte elements.
// Same bytes as the scalar passes in lanes_encode.cc (tests compare them).
#include <immintrin.h>

#include <cstring>

#include "lanes_internal.h"

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_epi32 as
// a pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tenpak::lanes::detail {
namespace {

// ---- SIMD encoding (AVX-512 F/BW/VL/DQ + CD for lzcnt) ---------------------

#define TP_AVX512_ENC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,popcnt")))

// Forward pass, 16 lanes per step: the scalar forward_scalar's arithmetic
// lane-parallel. New slots go to the lanes that ask, in lane order (expand of
// 0, 1, 2, ... into the asking lanes); completed words are scattered to
// their lanes' pending slots through a WriteLog.
// w = 2: 16-bit words, bit buffers fit 32-bit lanes. Returns the elements done.
// One half (16 lanes) of a forward_simd16 step.
template <bool FL>
TP_AVX512_ENC __attribute__((always_inline)) inline void fwd16_half(const uint8_t* out, const uint8_t* base, size_t i0,
                                                                   const Expo& ex, uint16_t* cell, WriteLog& wl,
                                                                   uint32_t& slots, __m512i& acc, __m512i& nb,
                                                                   __m512i& have, __m512i& pend) {
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i m16 = _mm512_set1_epi32(0xffff), u16 = _mm512_set1_epi32(16);
  const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 2 * i0)));
  const __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + 2 * i0)));
  __m512i ob = b, oa = a;
  if (FL) {  // ord: sign set -> ~x, else x | 0x8000 (16-bit)
    const __m512i sb = _mm512_srai_epi32(_mm512_slli_epi32(b, 16), 31);
    const __m512i sa = _mm512_srai_epi32(_mm512_slli_epi32(a, 16), 31);
    const __m512i top = _mm512_set1_epi32(0x8000), low = _mm512_set1_epi32(0x7fff);
    ob = _mm512_xor_si512(b, _mm512_or_si512(top, _mm512_and_si512(sb, low)));
    oa = _mm512_xor_si512(a, _mm512_or_si512(top, _mm512_and_si512(sa, low)));
  }
  const __m512i d = _mm512_sub_epi32(oa, ob);
  const __m512i sd = _mm512_srai_epi32(_mm512_slli_epi32(d, 16), 31);
  const __m512i z = _mm512_and_si512(_mm512_xor_si512(_mm512_slli_epi32(d, 1), sd), m16);
  const __m512i k = _mm512_sub_epi32(_mm512_set1_epi32(32), _mm512_lzcnt_epi32(z));
  const __m512i c = _mm512_add_epi32(_mm512_mullo_epi32(bucket16(b, ex), _mm512_set1_epi32(kMaxSym)), k);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(cell + i0), _mm512_cvtepi32_epi16(c));
  const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
  const __m512i v = _mm512_andnot_si512(_mm512_sllv_epi32(ones, r), z);
  const __mmask16 need = _mm512_cmplt_epu32_mask(have, r);
  const __m512i slot = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(slots)), _mm512_maskz_expand_epi32(need, iota));
  slots += static_cast<uint32_t>(__builtin_popcount(need));
  acc = _mm512_or_si512(acc, _mm512_sllv_epi32(v, nb));
  nb = _mm512_add_epi32(nb, r);
  const __mmask16 full = _mm512_cmpge_epu32_mask(nb, u16);
  _mm512_storeu_si512(wl.slot + wl.n, _mm512_maskz_compress_epi32(full, pend));
  _mm512_storeu_si512(wl.word + wl.n, _mm512_maskz_compress_epi32(full, _mm512_and_si512(acc, m16)));
  wl.n += static_cast<uint32_t>(__builtin_popcount(full));
  acc = _mm512_mask_srli_epi32(acc, full, acc, 16);
  nb = _mm512_mask_sub_epi32(nb, full, nb, u16);
  pend = _mm512_mask_mov_epi32(pend, need, slot);
  have = _mm512_sub_epi32(_mm512_mask_add_epi32(have, need, have, u16), r);
}

template <bool FL>
TP_AVX512_ENC size_t forward_simd16(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex,
                                    RawState& st, uint16_t* cell, uint32_t* raw) {
  uint32_t a32[kLanes];
  for (int l = 0; l < kLanes; ++l) a32[l] = static_cast<uint32_t>(st.acc[l]);
  // Two named sets of registers (not arrays indexed by the half: GCC then
  // keeps them in memory).
  __m512i acc0 = _mm512_loadu_si512(a32), acc1 = _mm512_loadu_si512(a32 + 16);
  __m512i nb0 = _mm512_loadu_si512(st.nb), nb1 = _mm512_loadu_si512(st.nb + 16);
  __m512i have0 = _mm512_loadu_si512(st.have), have1 = _mm512_loadu_si512(st.have + 16);
  __m512i pend0 = _mm512_loadu_si512(st.pend), pend1 = _mm512_loadu_si512(st.pend + 16);
  uint32_t slots = st.slots;
  size_t i = 0;
  WriteLog wl;
  for (; i + kLanes <= count; i += kLanes) {
    fwd16_half<FL>(out, base, i, ex, cell, wl, slots, acc0, nb0, have0, pend0);
    fwd16_half<FL>(out, base, i + 16, ex, cell, wl, slots, acc1, nb1, have1, pend1);
    if (wl.n > WriteLog::kCap - kLanes) wl.flush(raw);
  }
  wl.flush(raw);
  _mm512_storeu_si512(a32, acc0);
  _mm512_storeu_si512(a32 + 16, acc1);
  for (int l = 0; l < kLanes; ++l) st.acc[l] = a32[l];
  _mm512_storeu_si512(st.nb, nb0);
  _mm512_storeu_si512(st.nb + 16, nb1);
  _mm512_storeu_si512(st.have, have0);
  _mm512_storeu_si512(st.have + 16, have1);
  _mm512_storeu_si512(st.pend, pend0);
  _mm512_storeu_si512(st.pend + 16, pend1);
  st.slots = slots;
  return i;
}

// w = 4: 32-bit words, so bit buffers take 64-bit lanes (two registers of
// 8 per 16 elements); the rest as forward_simd16.
template <bool FL>
TP_AVX512_ENC size_t forward_simd32(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex,
                                    RawState& st, uint16_t* cell, uint32_t* raw) {
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i u32 = _mm512_set1_epi32(32);
  __m512i acc[4], nb[2], have[2], pend[2];
  for (int g = 0; g < 4; ++g) acc[g] = _mm512_loadu_si512(st.acc + 8 * g);
  for (int h = 0; h < 2; ++h) {
    nb[h] = _mm512_loadu_si512(st.nb + 16 * h);
    have[h] = _mm512_loadu_si512(st.have + 16 * h);
    pend[h] = _mm512_loadu_si512(st.pend + 16 * h);
  }
  uint32_t slots = st.slots;
  size_t i = 0;
  WriteLog wl;
  for (; i + kLanes <= count; i += kLanes) {
    if (wl.n > WriteLog::kCap - kLanes) wl.flush(raw);
    for (int h = 0; h < 2; ++h) {
      const size_t i0 = i + 16 * h;
      const __m512i b = _mm512_loadu_si512(base + 4 * i0);
      const __m512i a = _mm512_loadu_si512(out + 4 * i0);
      __m512i ob = b, oa = a;
      if (FL) {
        const __m512i top = _mm512_set1_epi32(int(0x80000000u)), low = _mm512_set1_epi32(0x7fffffff);
        ob = _mm512_xor_si512(b, _mm512_or_si512(top, _mm512_and_si512(_mm512_srai_epi32(b, 31), low)));
        oa = _mm512_xor_si512(a, _mm512_or_si512(top, _mm512_and_si512(_mm512_srai_epi32(a, 31), low)));
      }
      const __m512i d = _mm512_sub_epi32(oa, ob);
      const __m512i z = _mm512_xor_si512(_mm512_slli_epi32(d, 1), _mm512_srai_epi32(d, 31));
      const __m512i k = _mm512_sub_epi32(u32, _mm512_lzcnt_epi32(z));
      const __m512i c = _mm512_add_epi32(_mm512_mullo_epi32(bucket16(b, ex), _mm512_set1_epi32(kMaxSym)), k);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(cell + i0), _mm512_cvtepi32_epi16(c));
      const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
      const __m512i v = _mm512_andnot_si512(_mm512_sllv_epi32(ones, r), z);  // r <= 31
      const __mmask16 need = _mm512_cmplt_epu32_mask(have[h], r);
      const __m512i slot = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(slots)), _mm512_maskz_expand_epi32(need, iota));
      slots += static_cast<uint32_t>(__builtin_popcount(need));
      const __m512i nb0 = nb[h];
      nb[h] = _mm512_add_epi32(nb[h], r);
      const __mmask16 full = _mm512_cmpge_epu32_mask(nb[h], u32);
      __m256i wd[2];
      for (int j = 0; j < 2; ++j) {
        const int g = 2 * h + j;
        const __m512i v64 = _mm512_cvtepu32_epi64(j ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v));
        const __m512i n64 = _mm512_cvtepu32_epi64(j ? _mm512_extracti64x4_epi64(nb0, 1) : _mm512_castsi512_si256(nb0));
        acc[g] = _mm512_or_si512(acc[g], _mm512_sllv_epi64(v64, n64));
        wd[j] = _mm512_cvtepi64_epi32(acc[g]);
        acc[g] = _mm512_mask_srli_epi64(acc[g], static_cast<__mmask8>(j ? full >> 8 : full), acc[g], 32);
      }
      const __m512i word = _mm512_inserti64x4(_mm512_castsi256_si512(wd[0]), wd[1], 1);
      _mm512_storeu_si512(wl.slot + wl.n, _mm512_maskz_compress_epi32(full, pend[h]));
      _mm512_storeu_si512(wl.word + wl.n, _mm512_maskz_compress_epi32(full, word));
      wl.n += static_cast<uint32_t>(__builtin_popcount(full));
      nb[h] = _mm512_mask_sub_epi32(nb[h], full, nb[h], u32);
      pend[h] = _mm512_mask_mov_epi32(pend[h], need, slot);
      have[h] = _mm512_sub_epi32(_mm512_mask_add_epi32(have[h], need, have[h], u32), r);
    }
  }
  wl.flush(raw);
  for (int g = 0; g < 4; ++g) _mm512_storeu_si512(st.acc + 8 * g, acc[g]);
  for (int h = 0; h < 2; ++h) {
    _mm512_storeu_si512(st.nb + 16 * h, nb[h]);
    _mm512_storeu_si512(st.have + 16 * h, have[h]);
    _mm512_storeu_si512(st.pend + 16 * h, pend[h]);
  }
  st.slots = slots;
  return i;
}

// x div f, x mod f without a divide (f <= 2^11): x < f * 2^21 (after the emit), so x / f is
// below 2^21; its single-precision estimate (x rounded to 24 bits, 1/f from
// rcp14 and one Newton step, three roundings: relative error under 2^-22)
// is within 1/2 of it, so truncation gives the quotient or one off, and the
// remainder (exact, in 32-bit integers) corrects either way.
// (Checked against integer division for every f and x at and around every
// multiple of f, and the 2^32 end.)
TP_AVX512_ENC __attribute__((always_inline)) inline void divmod16(__m512i x, __m512i f, __m512i& q, __m512i& rem) {
  const __m512 ff = _mm512_cvtepu32_ps(f);
  const __m512 r0 = _mm512_rcp14_ps(ff);
  const __m512 r1 = _mm512_mul_ps(r0, _mm512_fnmadd_ps(ff, r0, _mm512_set1_ps(2.0f)));
  q = _mm512_cvttps_epu32(_mm512_mul_ps(_mm512_cvtepu32_ps(x), r1));
  rem = _mm512_sub_epi32(x, _mm512_mullo_epi32(q, f));
  const __mmask16 lo = _mm512_cmplt_epi32_mask(rem, _mm512_setzero_si512());
  q = _mm512_mask_sub_epi32(q, lo, q, _mm512_set1_epi32(1));
  rem = _mm512_mask_add_epi32(rem, lo, rem, f);
  const __mmask16 hi = _mm512_cmpge_epi32_mask(rem, f);
  q = _mm512_mask_add_epi32(q, hi, q, _mm512_set1_epi32(1));
  rem = _mm512_mask_sub_epi32(rem, hi, rem, f);
}

// One 16-lane step of the backward pass; `fc` holds t.fc[cell] of the 16
// elements (looked up beforehand: see backward_simd).
TP_AVX512_ENC __attribute__((always_inline)) inline void back16(const uint32_t* fc, __m512i& x, uint16_t* words,
                                                                size_t& wp) {
  const __m512i e = _mm512_loadu_si512(fc);
  const __m512i f = _mm512_and_si512(e, _mm512_set1_epi32(0xffff));
  const __m512i start = _mm512_srli_epi32(e, 16);
  // x >= f * 2^21, without the overflow of f << 21 at f = 2^11.
  const __mmask16 emit = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x, 32 - kScaleBits), f);
  const unsigned ne = static_cast<unsigned>(__builtin_popcount(emit));
  wp -= ne;
  _mm256_mask_storeu_epi16(words + wp, static_cast<__mmask16>((1u << ne) - 1),
                           _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(emit, x)));
  const __m512i xv = _mm512_mask_srli_epi32(x, emit, x, 16);
  __m512i q, rem;
  divmod16(xv, f, q, rem);
  x = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(q, kScaleBits), rem), start);
}

// Backward rANS pass over the whole groups [0, groups * 32), 16 lanes per
// step, last group first, upper half first (the scalar order reversed per
// 16 lanes: emitted words are stored in lane order below words[wpos]).
// Two named states (an array indexed by the half lands in memory). The
// table lookups are done first, a block at a time, by plain loads: a
// 16-lane gather costs more than the rest of the step on the CPUs measured.
TP_AVX512_ENC void backward_simd(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                                 size_t& wpos) {
  constexpr size_t kBlock = 64;  // groups per lookup block (8 KiB of entries)
  alignas(64) uint32_t fc[kBlock * kLanes];
  __m512i x0 = _mm512_loadu_si512(xs), x1 = _mm512_loadu_si512(xs + 16);
  size_t wp = wpos;
  for (size_t end = groups; end > 0;) {
    const size_t begin = end > kBlock ? end - kBlock : 0;
    const uint16_t* c = cell + begin * kLanes;
    const size_t n = (end - begin) * kLanes;
    for (size_t i = 0; i < n; ++i) fc[i] = t.fc[c[i]];
    for (size_t g = end - begin; g-- > 0;) {
      back16(fc + g * kLanes + 16, x1, words, wp);
      back16(fc + g * kLanes, x0, words, wp);
    }
    end = begin;
  }
  _mm512_storeu_si512(xs, x0);
  _mm512_storeu_si512(xs + 16, x1);
  wpos = wp;
}

}  // namespace

size_t forward_groups_avx512(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                             uint16_t* cell, uint32_t* raw, size_t w, bool fl) {
  if (w == 2) return fl ? forward_simd16<true>(out, base, count, ex, st, cell, raw)
                        : forward_simd16<false>(out, base, count, ex, st, cell, raw);
  return fl ? forward_simd32<true>(out, base, count, ex, st, cell, raw)
            : forward_simd32<false>(out, base, count, ex, st, cell, raw);
}

void backward_groups_avx512(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                            size_t& wpos) {
  backward_simd(cell, groups, t, xs, words, wpos);
}

}  // namespace tenpak::lanes::detail
