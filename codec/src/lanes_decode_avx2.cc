// Codec 9 (sub_lanes) decoding with AVX2: 8 lanes per instruction, 2- and
// 4-byte elements. Same bytes and verdict as the scalar decoder in
// lanes_decode.cc (tests compare them); chosen there at run time.
#include <immintrin.h>

#include <cstring>

#include "lanes_internal.h"

namespace tenpak::lanes::detail {
namespace {

// ---- AVX2 decoding ----------------------------------------------------------
//
// For CPUs with AVX2 but not AVX-512 (AMD Zen 2/3, Intel client cores): the
// same steps as decode_simd16/32 with 8 lanes per instruction, 4 steps per
// group of 32. What AVX-512 has and AVX2 lacks:
// - expand (hand loaded words to the lanes that ask, in lane order): a table
//   of _mm256_permutevar8x32_epi32 indices per 8-bit lane mask (kExpand);
// - masked loads of 16-bit words: every load is full width (8 words), and a
//   position within one load of a stream's end reads from a zero-padded copy
//   of the stream's last bytes (PaddedStream), so nothing outside the
//   payload is read and the kernel runs to the last whole group;
// - 32-entry permutes (context -> table offset): two pshufb on the table
//   ranks (offset >> 11, below 33), selected by bit 4 of the context.
// Bit buffers stay 32-bit for w = 4 as well (see decode_avx2).

#define TP_AVX2 __attribute__((target("avx2,bmi,bmi2,popcnt")))

// W-byte loads at any position pos <= len of a stream [p, p + len) without
// reading outside it: positions with pos + W > len load from `tail`, a copy
// of the stream's last min(len, W) bytes followed by W zero bytes. The
// bytes past the stream's end only reach lanes that take no word (the
// callers check pos + taken words <= len first).
template <size_t W>
struct PaddedStream {
  const uint8_t* p;
  size_t direct;  // pos < direct: load from p + pos
  size_t toff;    // else from tail + (pos - toff)
  alignas(32) uint8_t tail[2 * W] = {};
  PaddedStream(const uint8_t* q, size_t len) : p(q) {
    const size_t m = len < W ? len : W;
    direct = len >= W ? len - W + 1 : 0;
    toff = len - m;
    if (m) std::memcpy(tail, q + toff, m);
  }
  const uint8_t* at(size_t pos) const { return pos < direct ? p + pos : tail + (pos - toff); }
};

// Decodes the whole groups of 32 elements with AVX2 (w = 2 or 4) and returns
// the elements done; the state in `st` (cursors, lane states, bit buffers)
// is then where decode_scalar goes on, or s.bad is set. Gives the bytes and
// the verdict of decode_scalar: lanes take words in lane order = element
// order, and a stream that runs short sets s.bad at the step whose lanes
// ask past its end. Lanes with freq 0 (scalar: immediate refusal) only set
// s.bad at the end; the garbage they decode meanwhile cannot read out of
// bounds (table indices stay in the table, stream reads stay checked).
//
// Bit buffers are 32-bit for both widths. A lane that needs more bits (cnt
// < r) gets word v: the field is the low r bits of buf | v << cnt (r <= 31,
// so bits of v shifted past bit 31 are not needed), and what remains, all
// from v as r > cnt, is v >> (r - cnt) with cnt + U - r < 32 bits (U = 16:
// at most 30, U = 32: at most 31). So buf never holds 32 bits, and equals
// the scalar's 64-bit buf at the handover.
template <class U, bool FL>
TP_AVX2 size_t decode_avx2(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                           uint8_t* out) {
  constexpr size_t w = sizeof(U);
  static_assert(w == 2 || w == 4, "AVX2 kernel for 2- and 4-byte elements");
  constexpr int unit = raw_unit(w);
  constexpr size_t rw = unit / 8;  // bytes per raw word
  // A local copy, as in decode_simd16 (stores to out may alias anything).
  State s = st;
  const int* T = reinterpret_cast<const int*>(dt.t.data());
  alignas(16) uint8_t rank[kCtx];
  for (int c = 0; c < kCtx; ++c) rank[c] = static_cast<uint8_t>(dt.off[c] >> kScaleBits);
  const __m256i rank_lo = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(rank)));
  const __m256i rank_hi = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(rank + 16)));
  const PaddedStream<16> ws(s.words, s.wlen);
  const PaddedStream<8 * rw> rs(s.raw, s.rlen);

  const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1), ones = _mm256_set1_epi32(-1);
  const __m256i m11 = _mm256_set1_epi32(kScale - 1), m12 = _mm256_set1_epi32(0xfff);
  const __m256i vunit = _mm256_set1_epi32(unit), c31 = _mm256_set1_epi32(31);
  const __m256i byte0 = _mm256_set1_epi32(int(0x80808000u));  // pshufb: zero bytes 1..3
  const __m128i eshift = _mm_cvtsi32_si128(ex.shift);
  const __m256i emask = _mm256_set1_epi32(static_cast<int>(ex.mask)), eoff = _mm256_set1_epi32(ex.off);
  __m256i x[4], buf[4], cnt[4];
  for (int h = 0; h < 4; ++h) {
    alignas(32) uint32_t tb[8];
    for (int l = 0; l < 8; ++l) tb[l] = static_cast<uint32_t>(s.buf[8 * h + l]);  // < 2^31, see above
    x[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.x + 8 * h));
    buf[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tb));
    cnt[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.cnt + 8 * h));
  }
  __m256i bad = zero;
  size_t i = 0;
  for (; i + kLanes <= count && !s.bad; i += kLanes) {
    __m256i a[4];
    for (int h = 0; h < 4; ++h) {
      const size_t i0 = i + 8 * h;
      const __m256i b =
          w == 2 ? _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + 2 * i0)))
                 : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 4 * i0));
      // Context (exponent bucket) -> table rank -> entry.
      __m256i q = _mm256_sub_epi32(_mm256_and_si256(_mm256_srl_epi32(b, eshift), emask), eoff);
      q = _mm256_min_epi32(_mm256_max_epi32(q, zero), c31);
      const __m256i ctl = _mm256_or_si256(q, byte0);
      const __m256i rk = _mm256_blendv_epi8(_mm256_shuffle_epi8(rank_lo, ctl), _mm256_shuffle_epi8(rank_hi, ctl),
                                            _mm256_slli_epi32(q, 3));  // bit 4 of q -> bit 7 of byte 0
      const __m256i e =
          _mm256_i32gather_epi32(T, _mm256_or_si256(_mm256_slli_epi32(rk, kScaleBits), _mm256_and_si256(x[h], m11)), 4);
      const __m256i f = _mm256_and_si256(e, m12);
      bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(f, zero));
      const __m256i bias = _mm256_and_si256(_mm256_srli_epi32(e, 12), m11);
      x[h] = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32(x[h], kScaleBits)), bias);
      // rANS refill of the lanes under 2^16, in lane order.
      const __m256i mr = _mm256_cmpeq_epi32(_mm256_srli_epi32(x[h], 16), zero);
      const unsigned mrb = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(mr)));
      const size_t nw = static_cast<size_t>(__builtin_popcount(mrb));
      if (s.wpos + 2 * nw > s.wlen) { s.bad = true; break; }
      __m256i wv = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws.at(s.wpos))));
      s.wpos += 2 * nw;
      wv = _mm256_permutevar8x32_epi32(wv, _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.idx[mrb])));
      x[h] = _mm256_blendv_epi8(x[h], _mm256_or_si256(_mm256_slli_epi32(x[h], 16), wv), mr);
      // Raw field: r = max(k - 1, 0) bits; lanes with cnt < r take a word, in lane order.
      const __m256i k = _mm256_srli_epi32(e, 24);
      const __m256i r = _mm256_max_epi32(_mm256_sub_epi32(k, one), zero);
      const __m256i mf = _mm256_cmpgt_epi32(r, cnt[h]);
      const unsigned mfb = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(mf)));
      const size_t nf = static_cast<size_t>(__builtin_popcount(mfb));
      if (s.rpos + rw * nf > s.rlen) { s.bad = true; break; }
      const uint8_t* rp = rs.at(s.rpos);
      __m256i rv = w == 2 ? _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rp)))
                          : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rp));
      s.rpos += rw * nf;
      rv = _mm256_and_si256(
          _mm256_permutevar8x32_epi32(rv, _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.idx[mfb]))), mf);
      const __m256i t = _mm256_or_si256(buf[h], _mm256_sllv_epi32(rv, cnt[h]));
      const __m256i val = _mm256_andnot_si256(_mm256_sllv_epi32(ones, r), t);
      buf[h] = _mm256_blendv_epi8(_mm256_srlv_epi32(buf[h], r), _mm256_srlv_epi32(rv, _mm256_sub_epi32(r, cnt[h])), mf);
      cnt[h] = _mm256_add_epi32(_mm256_sub_epi32(cnt[h], r), _mm256_and_si256(mf, vunit));
      // z, then a = unord(ord(b) + unzigzag(z)). k = 0: a shift by 2^32 - 1 gives 0.
      const __m256i z = _mm256_or_si256(_mm256_sllv_epi32(one, _mm256_sub_epi32(k, one)), val);
      const __m256i d = _mm256_xor_si256(_mm256_srli_epi32(z, 1), _mm256_sub_epi32(zero, _mm256_and_si256(z, one)));
      __m256i ob = b, av;
      if constexpr (w == 2) {
        if (FL) {  // ord: sign set -> ~b, else b | 0x8000 (16-bit)
          const __m256i sg = _mm256_srai_epi32(_mm256_slli_epi32(b, 16), 31);
          ob = _mm256_xor_si256(b, _mm256_or_si256(_mm256_set1_epi32(0x8000), _mm256_and_si256(sg, _mm256_set1_epi32(0x7fff))));
        }
        av = _mm256_add_epi32(ob, d);
        if (FL) {  // unord: top bit set -> clear it, else ~a
          const __m256i tp = _mm256_srai_epi32(_mm256_slli_epi32(av, 16), 31);
          av = _mm256_xor_si256(av, _mm256_xor_si256(_mm256_set1_epi32(0xffff), _mm256_and_si256(tp, _mm256_set1_epi32(0x7fff))));
        }
        a[h] = _mm256_and_si256(av, _mm256_set1_epi32(0xffff));
      } else {
        if (FL) {
          const __m256i sg = _mm256_srai_epi32(b, 31);
          ob = _mm256_xor_si256(b, _mm256_or_si256(_mm256_set1_epi32(int(0x80000000u)), _mm256_and_si256(sg, _mm256_set1_epi32(0x7fffffff))));
        }
        av = _mm256_add_epi32(ob, d);
        if (FL) {
          const __m256i tp = _mm256_srai_epi32(av, 31);
          av = _mm256_xor_si256(av, _mm256_xor_si256(ones, _mm256_and_si256(tp, _mm256_set1_epi32(0x7fffffff))));
        }
        a[h] = av;
      }
    }
    if (s.bad) break;
    if constexpr (w == 2) {
      for (int p = 0; p < 2; ++p) {  // packus interleaves 128-bit halves; permute4x64 restores the order
        const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(a[2 * p], a[2 * p + 1]), 0xd8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * (i + 16 * p)), pk);
      }
    } else {
      for (int h = 0; h < 4; ++h) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * (i + 8 * h)), a[h]);
    }
  }
  if (!_mm256_testz_si256(bad, bad)) s.bad = true;
  for (int h = 0; h < 4; ++h) {
    alignas(32) uint32_t tb[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.x + 8 * h), x[h]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tb), buf[h]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.cnt + 8 * h), cnt[h]);
    for (int l = 0; l < 8; ++l) s.buf[8 * h + l] = tb[l];
  }
  st = s;
  return i;
}

}  // namespace

size_t decode_groups_avx2(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                          uint8_t* out, size_t w, bool fl) {
  if (w == 2) return fl ? decode_avx2<uint16_t, true>(st, dt, ex, base, count, out)
                        : decode_avx2<uint16_t, false>(st, dt, ex, base, count, out);
  return fl ? decode_avx2<uint32_t, true>(st, dt, ex, base, count, out)
            : decode_avx2<uint32_t, false>(st, dt, ex, base, count, out);
}

}  // namespace tenpak::lanes::detail
