// Codec 9 (sub_lanes) encoding with AVX2: the forward and backward passes,
// 8 lanes per instruction, 2- and 4-byte elements. Same bytes as the scalar
// passes in lanes_encode.cc (tests compare them).
#include <immintrin.h>

#include <cstring>

#include "lanes_internal.h"

namespace tenpak::lanes::detail {
namespace {

// ---- AVX2 encoding (w = 2 and 4) ---------------------------------------------
//
// For CPUs with AVX2 but not AVX-512: the forward passes and backward_simd
// with 8 lanes per instruction, 4 steps per group of 32, for 2- and 4-byte
// elements (1-byte ones take the portable loops). The same bytes (tests
// compare every path). What AVX2 lacks, and instead:
// - lzcnt: a bit length is the exponent of the value converted to float
//   (w = 2: values below 2^16, exact) or double (w = 4), less the bias;
// - expand: kExpand hands new slots to the asking lanes in lane order;
// - compress: kCompress moves the lanes that completed a word (to the
//   WriteLog) or emit one (to the word stream) together, in lane order;
// - masked 16-bit stores: emitted words are moved to the top of a vector
//   and 8 are stored ending at the old write position; the entries below
//   the new position are garbage that later (lower) steps overwrite (the
//   8 elements of a step are not yet coded, so the store never reaches
//   below words[2]; kWordSlack spare entries keep a margin all the same);
// - the 14-bit float reciprocal: x div f in double precision, from
//   Tables::inv (1/f): x/f is below 2^21 after the emit, a non-integer
//   quotient is at least 1/f from the next integer, and the product's
//   error is far smaller, so the truncation is exact or one low (in any
//   rounding mode), which the remainder corrects.

#define TP_AVX2_ENC __attribute__((target("avx2,bmi,bmi2,popcnt")))

// kCompress.lo[m]: indices of the lanes of 8-bit mask m in lane order, then
// anything; kCompress.hi[m]: the same ending at lane 7.
struct CompressTable {
  alignas(32) uint32_t lo[256][8];
  alignas(32) uint32_t hi[256][8];
};
constexpr CompressTable make_compress() {
  CompressTable t{};
  for (int m = 0; m < 256; ++m) {
    int n = 0;
    for (int l = 0; l < 8; ++l)
      if ((m >> l) & 1) t.lo[m][n++] = static_cast<uint32_t>(l);
    for (int j = 0; j < n; ++j) t.hi[m][8 - n + j] = t.lo[m][j];
  }
  return t;
}
constexpr CompressTable kCompress = make_compress();

// Steps shared by the two AVX2 forward passes, 8 lanes each.
// Cells: context (the exponent bucket of base element b) * kMaxSym + k.
TP_AVX2_ENC __attribute__((always_inline)) inline void cells8(uint16_t* cell, __m256i b, __m256i k, const Expo& ex) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i q = _mm256_sub_epi32(_mm256_and_si256(_mm256_srl_epi32(b, _mm_cvtsi32_si128(ex.shift)),
                                                _mm256_set1_epi32(static_cast<int>(ex.mask))),
                               _mm256_set1_epi32(ex.off));
  q = _mm256_min_epi32(_mm256_max_epi32(q, zero), _mm256_set1_epi32(31));
  const __m256i c = _mm256_add_epi32(_mm256_mullo_epi32(q, _mm256_set1_epi32(kMaxSym)), k);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(cell), _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)));
}
// New slots for the lanes that ask (r > have), in lane order: returns the
// mask of those lanes, their slots in `slot`.
TP_AVX2_ENC __attribute__((always_inline)) inline __m256i slots8(__m256i r, __m256i have, uint32_t& slots, __m256i& slot) {
  const __m256i need = _mm256_cmpgt_epi32(r, have);
  const unsigned nm = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
  slot = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(slots)),
                          _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.idx[nm])));
  slots += static_cast<uint32_t>(__builtin_popcount(nm));
  return need;
}
// The completed words (lanes `full`) and their slots into the log.
TP_AVX2_ENC __attribute__((always_inline)) inline void log8(WriteLog& wl, __m256i full, __m256i pend, __m256i word) {
  const unsigned fm = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(full)));
  const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress.lo[fm]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(wl.slot + wl.n), _mm256_permutevar8x32_epi32(pend, perm));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(wl.word + wl.n), _mm256_permutevar8x32_epi32(word, perm));
  wl.n += static_cast<uint32_t>(__builtin_popcount(fm));
}

template <bool FL>
TP_AVX2_ENC size_t forward_avx2_16(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                                   uint16_t* cell, uint32_t* raw) {
  const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1), ones = _mm256_set1_epi32(-1);
  const __m256i m16 = _mm256_set1_epi32(0xffff), u16 = _mm256_set1_epi32(16), c15 = _mm256_set1_epi32(15);
  const __m256i c126 = _mm256_set1_epi32(126);
  alignas(32) uint32_t acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = static_cast<uint32_t>(st.acc[l]);  // < 2^16 for w = 2
  uint32_t slots = st.slots;
  WriteLog wl;
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    for (int h = 0; h < 4; ++h) {
      const size_t i0 = i + 8 * h;
      const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + 2 * i0)));
      const __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(out + 2 * i0)));
      __m256i ob = b, oa = a;
      if (FL) {  // ord: sign set -> ~x, else x | 0x8000 (16-bit)
        const __m256i top = _mm256_set1_epi32(0x8000), low = _mm256_set1_epi32(0x7fff);
        ob = _mm256_xor_si256(b, _mm256_or_si256(top, _mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(b, 16), 31), low)));
        oa = _mm256_xor_si256(a, _mm256_or_si256(top, _mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(a, 16), 31), low)));
      }
      const __m256i d = _mm256_sub_epi32(oa, ob);
      const __m256i sd = _mm256_srai_epi32(_mm256_slli_epi32(d, 16), 31);
      const __m256i z = _mm256_and_si256(_mm256_xor_si256(_mm256_slli_epi32(d, 1), sd), m16);
      const __m256i k = _mm256_max_epi32(
          _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(z)), 23), c126), zero);
      cells8(cell + i0, b, k, ex);
      const __m256i r = _mm256_max_epi32(_mm256_sub_epi32(k, one), zero);
      const __m256i v = _mm256_andnot_si256(_mm256_sllv_epi32(ones, r), z);
      __m256i* accp = reinterpret_cast<__m256i*>(acc + 8 * h);
      __m256i av = _mm256_load_si256(accp);
      __m256i nb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.nb + 8 * h));
      __m256i have = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.have + 8 * h));
      __m256i pend = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.pend + 8 * h));
      __m256i slot;
      const __m256i need = slots8(r, have, slots, slot);
      av = _mm256_or_si256(av, _mm256_sllv_epi32(v, nb));
      nb = _mm256_add_epi32(nb, r);
      const __m256i full = _mm256_cmpgt_epi32(nb, c15);
      log8(wl, full, pend, _mm256_and_si256(av, m16));
      av = _mm256_blendv_epi8(av, _mm256_srli_epi32(av, 16), full);
      nb = _mm256_sub_epi32(nb, _mm256_and_si256(full, u16));
      pend = _mm256_blendv_epi8(pend, slot, need);
      have = _mm256_sub_epi32(_mm256_add_epi32(have, _mm256_and_si256(need, u16)), r);
      _mm256_store_si256(accp, av);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.nb + 8 * h), nb);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.have + 8 * h), have);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.pend + 8 * h), pend);
    }
    if (wl.n > WriteLog::kCap - kLanes) wl.flush(raw);
  }
  wl.flush(raw);
  for (int l = 0; l < kLanes; ++l) st.acc[l] = acc[l];
  st.slots = slots;
  return i;
}

// w = 4: 32-bit raw words, so bit buffers take 64-bit lanes (two registers
// per 8 lanes); bit lengths (up to 32) from the exponent of the value
// converted to double, exact for any 32-bit value.
template <bool FL>
TP_AVX2_ENC size_t forward_avx2_32(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                                   uint16_t* cell, uint32_t* raw) {
  const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1), ones = _mm256_set1_epi32(-1);
  const __m256i u32 = _mm256_set1_epi32(32), c31 = _mm256_set1_epi32(31);
  const __m256i c1022 = _mm256_set1_epi32(1022), bias = _mm256_set1_epi32(int(0x80000000u));
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  // low halves of 4 64-bit lanes
  const __m256d two31 = _mm256_set1_pd(2147483648.0);
  // The low 32 bits of 8 64-bit lanes (lo: lanes 0-3, hi: 4-7) as 8 lanes.
  auto low32 = [&](__m256i lo, __m256i hi) __attribute__((always_inline)) TP_AVX2_ENC {
    return _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(lo, even), _mm256_permutevar8x32_epi32(hi, even), 0x20);
  };
  uint32_t slots = st.slots;
  WriteLog wl;
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    for (int h = 0; h < 4; ++h) {
      const size_t i0 = i + 8 * h;
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 4 * i0));
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + 4 * i0));
      __m256i ob = b, oa = a;
      if (FL) {  // ord: sign set -> ~x, else x | 0x80000000
        const __m256i low = _mm256_set1_epi32(0x7fffffff);
        ob = _mm256_xor_si256(b, _mm256_or_si256(bias, _mm256_and_si256(_mm256_srai_epi32(b, 31), low)));
        oa = _mm256_xor_si256(a, _mm256_or_si256(bias, _mm256_and_si256(_mm256_srai_epi32(a, 31), low)));
      }
      const __m256i d = _mm256_sub_epi32(oa, ob);
      const __m256i z = _mm256_xor_si256(_mm256_slli_epi32(d, 1), _mm256_srai_epi32(d, 31));
      // Bit length: z (unsigned) as a double, exponent - 1022 (z = 0: 0).
      // The sign bit is masked off: z = 0 gives -2^31 + 2^31 = -0.0 when
      // the rounding mode rounds downward.
      const __m256i zb = _mm256_xor_si256(z, bias);
      const __m256d z0 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(zb)), two31);
      const __m256d z1 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(zb, 1)), two31);
      const __m256i ez = _mm256_and_si256(
          low32(_mm256_srli_epi64(_mm256_castpd_si256(z0), 52), _mm256_srli_epi64(_mm256_castpd_si256(z1), 52)),
          _mm256_set1_epi32(0x7ff));
      const __m256i k = _mm256_max_epi32(_mm256_sub_epi32(ez, c1022), zero);
      cells8(cell + i0, b, k, ex);
      const __m256i r = _mm256_max_epi32(_mm256_sub_epi32(k, one), zero);
      const __m256i v = _mm256_andnot_si256(_mm256_sllv_epi32(ones, r), z);  // r <= 31
      __m256i nb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.nb + 8 * h));
      __m256i have = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.have + 8 * h));
      __m256i pend = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.pend + 8 * h));
      __m256i* accp = reinterpret_cast<__m256i*>(st.acc + 8 * h);
      __m256i a0 = _mm256_loadu_si256(accp), a1 = _mm256_loadu_si256(accp + 1);
      __m256i slot;
      const __m256i need = slots8(r, have, slots, slot);
      a0 = _mm256_or_si256(a0, _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(v)),
                                                 _mm256_cvtepu32_epi64(_mm256_castsi256_si128(nb))));
      a1 = _mm256_or_si256(a1, _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(v, 1)),
                                                 _mm256_cvtepu32_epi64(_mm256_extracti128_si256(nb, 1))));
      nb = _mm256_add_epi32(nb, r);
      const __m256i full = _mm256_cmpgt_epi32(nb, c31);
      log8(wl, full, pend, low32(a0, a1));
      a0 = _mm256_blendv_epi8(a0, _mm256_srli_epi64(a0, 32), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(full)));
      a1 = _mm256_blendv_epi8(a1, _mm256_srli_epi64(a1, 32), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(full, 1)));
      nb = _mm256_sub_epi32(nb, _mm256_and_si256(full, u32));
      pend = _mm256_blendv_epi8(pend, slot, need);
      have = _mm256_sub_epi32(_mm256_add_epi32(have, _mm256_and_si256(need, u32)), r);
      _mm256_storeu_si256(accp, a0);
      _mm256_storeu_si256(accp + 1, a1);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.nb + 8 * h), nb);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.have + 8 * h), have);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.pend + 8 * h), pend);
    }
    if (wl.n > WriteLog::kCap - kLanes) wl.flush(raw);
  }
  wl.flush(raw);
  st.slots = slots;
  return i;
}

// One 8-lane step of backward_avx2 (see backward_simd); fc and inv hold the
// 8 elements' table entries.
TP_AVX2_ENC __attribute__((always_inline)) inline void back8(const uint32_t* fc, const double* inv, __m256i& x,
                                                             uint16_t* words, size_t& wp) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(fc));
  const __m256i f = _mm256_and_si256(e, _mm256_set1_epi32(0xffff));
  const __m256i start = _mm256_srli_epi32(e, 16);
  // Emit when x >= f * 2^21 (both sides of the comparison below 2^12).
  const __m256i keep = _mm256_cmpgt_epi32(f, _mm256_srli_epi32(x, 32 - kScaleBits));
  const unsigned em = ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep))) & 0xffu;
  const unsigned ne = static_cast<unsigned>(__builtin_popcount(em));
  // The emitting lanes' low 16 bits, in lane order, at the top of 8 words
  // stored to end at the old write position.
  const __m256i top = _mm256_permutevar8x32_epi32(x, _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress.hi[em])));
  const __m256i lo16 = _mm256_shuffle_epi8(top, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                  0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(words + wp - 8),
                   _mm256_castsi256_si128(_mm256_permute4x64_epi64(lo16, 0x08)));
  wp -= ne;
  const __m256i xv = _mm256_blendv_epi8(_mm256_srli_epi32(x, 16), x, keep);
  // q = xv div f: in double (xv is unsigned: biased by 2^31 to convert).
  const __m256i xb = _mm256_xor_si256(xv, _mm256_set1_epi32(int(0x80000000u)));
  const __m256d two31 = _mm256_set1_pd(2147483648.0);
  const __m256d d0 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(xb)), two31);
  const __m256d d1 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(xb, 1)), two31);
  const __m128i q0 = _mm256_cvttpd_epi32(_mm256_mul_pd(d0, _mm256_loadu_pd(inv)));
  const __m128i q1 = _mm256_cvttpd_epi32(_mm256_mul_pd(d1, _mm256_loadu_pd(inv + 4)));
  __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
  __m256i rem = _mm256_sub_epi32(xv, _mm256_mullo_epi32(q, f));
  const __m256i under = _mm256_cmpgt_epi32(zero, rem);  // one too many
  q = _mm256_add_epi32(q, under);
  rem = _mm256_add_epi32(rem, _mm256_and_si256(under, f));
  const __m256i over = _mm256_xor_si256(_mm256_cmpgt_epi32(f, rem), _mm256_set1_epi32(-1));  // rem >= f: one too few
  q = _mm256_sub_epi32(q, over);
  rem = _mm256_sub_epi32(rem, _mm256_and_si256(over, f));
  x = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, kScaleBits), rem), start);
}

TP_AVX2_ENC void backward_avx2(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                               size_t& wpos) {
  constexpr size_t kBlock = 64;  // groups per lookup block
  alignas(32) uint32_t fc[kBlock * kLanes];
  alignas(32) double inv[kBlock * kLanes];
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 8));
  __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 16));
  __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 24));
  size_t wp = wpos;
  for (size_t end = groups; end > 0;) {
    const size_t begin = end > kBlock ? end - kBlock : 0;
    const uint16_t* c = cell + begin * kLanes;
    const size_t n = (end - begin) * kLanes;
    for (size_t i = 0; i < n; ++i) {
      fc[i] = t.fc[c[i]];
      inv[i] = t.inv[c[i]];
    }
    for (size_t g = end - begin; g-- > 0;) {
      back8(fc + g * kLanes + 24, inv + g * kLanes + 24, x3, words, wp);
      back8(fc + g * kLanes + 16, inv + g * kLanes + 16, x2, words, wp);
      back8(fc + g * kLanes + 8, inv + g * kLanes + 8, x1, words, wp);
      back8(fc + g * kLanes, inv + g * kLanes, x0, words, wp);
    }
    end = begin;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + 8), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + 16), x2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + 24), x3);
  wpos = wp;
}

}  // namespace

size_t forward_groups_avx2(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, RawState& st,
                           uint16_t* cell, uint32_t* raw, size_t w, bool fl) {
  if (w == 2) return fl ? forward_avx2_16<true>(out, base, count, ex, st, cell, raw)
                        : forward_avx2_16<false>(out, base, count, ex, st, cell, raw);
  return fl ? forward_avx2_32<true>(out, base, count, ex, st, cell, raw)
            : forward_avx2_32<false>(out, base, count, ex, st, cell, raw);
}

void backward_groups_avx2(const uint16_t* cell, size_t groups, const Tables& t, uint32_t* xs, uint16_t* words,
                          size_t& wpos) {
  backward_avx2(cell, groups, t, xs, words, wpos);
}

}  // namespace tenpak::lanes::detail
