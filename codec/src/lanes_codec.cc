// Codec 9, sub_lanes. docs/FORMAT.md ("codec 9") is the normative text; the
// names here follow it. Per element i (base b, output a, w-byte words):
//   z_i = zigzag(ord(a) - ord(b))     the ulp difference, as sub_planes
//   k_i = bit length of z_i (0..8w)   the symbol, rANS coded in lane i mod 32
//   r_i = max(k_i - 1, 0) raw bits of z_i under its leading one, read from
//         lane i mod 32's own bit buffer
// The symbol's context is the exponent bucket of b_i alone. Nothing depends
// on an earlier element, so a SIMD decoder runs 16 lanes per instruction:
// gather the table entries, update the states, and refill only the lanes
// that need a word with one load + expand (words are stored in the
// order lanes ask for them).
#include "lanes_codec.h"

#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "element_ops.h"
#include "freq_table.h"

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_epi32 as
// a pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tenpak::lanes {
namespace {

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

// ---- encoding ---------------------------------------------------------------
//
// Two passes over the frame. Forward: per element its symbol and context
// (one u16 "cell" = context * kMaxSym + symbol) and its raw bits, written
// straight into the raw area (below). Then the counts give the tables, and a
// backward pass codes the cells with rANS. Both passes have a scalar form
// (any width, and the tails) and an AVX-512 form (w = 2 and 4) that produce
// the same bytes.
//
// Raw area without a second pass: the decoder asks for lane l's next word
// when it holds fewer bits than the element needs (cnt_l < r). At that
// moment the encoder hands the lane a slot (the next index of the raw area)
// and fills it when the lane's word is complete. A lane has at most one
// incomplete word (r < unit), so one pending slot per lane suffices: a word
// completes during the element that asks for the next one, or earlier.

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

void make_tables(const uint32_t* cnt, int ns, Tables& t) {
  for (int c = 0; c < kCtx; ++c) {
    uint32_t* f = t.freq + c * kMaxSym;
    freq::normalise(cnt + c * kMaxSym, ns, kScale, f);
    t.n[c] = freq::used_symbols(f, ns);
    uint32_t acc = 0;
    for (int s = 0; s < t.n[c]; ++s) {
      const int j = c * kMaxSym + s;
      t.cum[j] = acc;
      acc += f[s];
      if (f[s]) {
        t.rcp[j] = ((uint64_t(1) << 43) + f[s] - 1) / f[s];
        t.inv[j] = 1.0 / f[s];
      }
      t.fc[j] = f[s] | t.cum[j] << 16;
    }
  }
}

// Forward-pass state, shared by the scalar and SIMD forms.
struct RawState {
  uint64_t acc[kLanes] = {};   // the lane's incomplete word, LSB first
  uint32_t nb[kLanes] = {};    // bits in it
  uint32_t have[kLanes] = {};  // bits the decoder holds for the lane
  uint32_t pend[kLanes] = {};  // slot of the incomplete word
  uint32_t slots = 0;          // slots handed out so far
};

// Scratch of one encode, reused by the thread.
struct EncodeScratch {
  std::vector<uint16_t> cell;   // per element
  std::vector<uint32_t> raw;    // per slot (low `unit` bits), + 1 dummy
  std::vector<uint16_t> words;  // rANS words, filled from the end
};

// Elements [from, to): cells and raw bits. Branch-free: whether a word
// completes is data, not control flow (it is unpredictable, and a
// mispredicted branch costs more than the work); writes of lanes that
// complete nothing go to the dummy slot raw[dummy].
template <class U, bool FL>
void forward_scalar(const uint8_t* out, const uint8_t* base, size_t from, size_t to, const Expo& ex, RawState& st,
                    uint16_t* cell, uint32_t* raw, size_t dummy) {
  constexpr size_t w = sizeof(U);
  constexpr uint32_t unit = raw_unit(w);
  for (size_t i = from; i < to; ++i) {
    const int l = static_cast<int>(i % kLanes);
    const U b = load<U>(base + i * w), a = load<U>(out + i * w);
    const U z = zigzag(U((FL ? f_ord(a) : a) - (FL ? f_ord(b) : b)));
    const int k = bit_length(z);
    cell[i] = static_cast<uint16_t>(bucket(b, ex) * kMaxSym + k);
    const uint32_t r = k > 1 ? k - 1 : 0;
    const uint32_t need = st.have[l] < r;
    const uint32_t slot = st.slots;
    st.slots += need;
    st.acc[l] |= (uint64_t(z) & ((uint64_t(1) << r) - 1)) << st.nb[l];
    st.nb[l] += r;
    const uint32_t full = st.nb[l] >= unit;
    raw[full ? st.pend[l] : dummy] = static_cast<uint32_t>(st.acc[l] & ((uint64_t(1) << unit) - 1));
    st.acc[l] >>= unit * full;
    st.nb[l] -= unit * full;
    st.pend[l] = need ? slot : st.pend[l];
    st.have[l] += unit * need - r;
  }
}

// Elements [from, to) backwards: rANS states x, words stored downwards from
// words[wpos] (so they end up in the order the decoder reads them).
inline void backward_scalar(const uint16_t* cell, size_t from, size_t to, const Tables& t, uint32_t* x,
                            uint16_t* words, size_t& wpos) {
  for (size_t i = to; i-- > from;) {
    const int j = cell[i];
    const uint32_t f = t.freq[j], start = t.cum[j];
    uint32_t xs = x[i % kLanes];
    // Emit when coding would leave [kLow, 2^32) (branch-free, as above).
    const uint32_t emit = uint64_t(xs) >= (uint64_t(f) << (32 - kScaleBits));
    words[wpos - 1] = static_cast<uint16_t>(xs);
    wpos -= emit;
    xs >>= 16 * emit;
    const uint32_t qd = static_cast<uint32_t>((static_cast<unsigned __int128>(xs) * t.rcp[j]) >> 43);
    x[i % kLanes] = (qd << kScaleBits) + (xs - qd * f) + start;
  }
}

// ---- decoding ---------------------------------------------------------------

// Table entry per (context, slot): freq | (slot - cum) << 12 | symbol << 24.
// Context slots of absent contexts point at table 0, all zero (freq 0 marks
// corruption: such an element cannot have been encoded).
struct DecodeTables {
  std::vector<uint32_t> t;
  int32_t off[kCtx] = {};
};

bool read_tables(const uint8_t* p, size_t len, size_t& pos, int ns, DecodeTables& dt) {
  const uint32_t mask = get_u32(p + 8);
  int used = __builtin_popcount(mask);
  dt.t.assign(size_t(used + 1) << kScaleBits, 0);
  int next = 1;
  for (int c = 0; c < kCtx; ++c) {
    if (!(mask >> c & 1)) continue;
    uint32_t f[kMaxSym];
    int n = 0;
    if (!freq::get_table(p, len, pos, ns, kScale, f, n) || n == 0) return false;
    dt.off[c] = next << kScaleBits;
    uint32_t* e = &dt.t[size_t(next) << kScaleBits];
    ++next;
    uint32_t at = 0;
    for (int s = 0; s < n; ++s)
      for (uint32_t j = 0; j < f[s]; ++j) e[at++] = f[s] | (j << 12) | (uint32_t(s) << 24);
  }
  return true;
}

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

template <class U, bool FL>
void decode_scalar(State& s, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t from, size_t count,
                   uint8_t* out) {
  constexpr size_t w = sizeof(U);
  constexpr int unit = raw_unit(w);
  const uint32_t* T = dt.t.data();
  for (size_t i = from; i < count; ++i) {
    const int l = static_cast<int>(i % kLanes);
    const U b = load<U>(base + i * w);
    const uint32_t e = T[dt.off[bucket(b, ex)] + (s.x[l] & (kScale - 1))];
    const uint32_t f = e & 0xfff;
    if (f == 0) { s.bad = true; return; }
    const int k = static_cast<int>(e >> 24);
    uint32_t xs = f * (s.x[l] >> kScaleBits) + ((e >> 12) & 0x7ff);
    if (xs < kLow) {
      if (s.wpos + 2 > s.wlen) { s.bad = true; return; }
      xs = (xs << 16) | s.words[s.wpos] | (uint32_t(s.words[s.wpos + 1]) << 8);
      s.wpos += 2;
    }
    s.x[l] = xs;
    const uint32_t r = k > 1 ? k - 1 : 0;
    if (s.cnt[l] < r) {
      if (s.rpos + unit / 8 > s.rlen) { s.bad = true; return; }
      const uint64_t v = unit == 16 ? uint64_t(s.raw[s.rpos] | (s.raw[s.rpos + 1] << 8)) : get_u32(s.raw + s.rpos);
      s.rpos += unit / 8;
      s.buf[l] |= v << s.cnt[l];
      s.cnt[l] += unit;
    }
    const uint64_t val = s.buf[l] & ((uint64_t(1) << r) - 1);
    s.buf[l] >>= r;
    s.cnt[l] -= r;
    const uint64_t z = k ? (uint64_t(1) << (k - 1)) | val : 0;
    const U bo = FL ? f_ord(b) : b;
    const U ao = U(bo + unzigzag(U(z)));
    store<U>(out + i * w, FL ? f_unord(ao) : ao);
  }
}

#define TP_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt")))

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

// Exponent bucket of 16 base elements held in 32-bit lanes.
TP_AVX512 inline __m512i bucket16(__m512i b, const Expo& ex) {
  __m512i q = _mm512_and_si512(_mm512_srlv_epi32(b, _mm512_set1_epi32(ex.shift)), _mm512_set1_epi32(static_cast<int>(ex.mask)));
  q = _mm512_sub_epi32(q, _mm512_set1_epi32(ex.off));
  return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(31));
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

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return ok;
}

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
constexpr ExpandTable kExpand = make_expand();

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

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
                         __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  return ok;
}

// ---- SIMD encoding (AVX-512 F/BW/VL/DQ + CD for lzcnt) ---------------------

#define TP_AVX512_ENC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,popcnt")))

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

bool cpu_has_avx512_enc() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512cd");
  return ok;
}

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
constexpr size_t kWordSlack = 8;

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

// The encoder's tables, one set per thread, on the heap: a thread_local
// Tables in encode_t would be static TLS, one 29 KB copy per template
// instance (~180 KB) in every thread of the process, zeroed when the thread
// starts: the mount's FUSE threads, which never encode, paid 45 page faults
// each.
Tables& thread_tables() {
  thread_local std::unique_ptr<Tables> t;
  if (!t) t = std::make_unique<Tables>();
  return *t;
}

template <class U, bool FL>
void encode_t(const uint8_t* out, const uint8_t* base, size_t count, DType dt, std::string& payload, Path path) {
  constexpr size_t w = sizeof(U);
  constexpr int unit = raw_unit(w);
  const int ns = static_cast<int>(8 * w) + 1;
  const Expo ex = expo(dt);
  const bool simd = path == Path::avx512 && (w == 2 || w == 4);
  const bool avx2 = path == Path::avx2 && (w == 2 || w == 4);
  thread_local EncodeScratch sc;
  sc.cell.resize(count);
  // At most one slot per element, plus the dummy.
  sc.raw.resize(count + 1);
  const size_t dummy = count;

  // Forward: cells and raw words.
  RawState st;
  size_t done = 0;
  if (simd) {
    if constexpr (w == 2) done = forward_simd16<FL>(out, base, count, ex, st, sc.cell.data(), sc.raw.data());
    if constexpr (w == 4) done = forward_simd32<FL>(out, base, count, ex, st, sc.cell.data(), sc.raw.data());
  }
  if (avx2) {
    if constexpr (w == 2) done = forward_avx2_16<FL>(out, base, count, ex, st, sc.cell.data(), sc.raw.data());
    if constexpr (w == 4) done = forward_avx2_32<FL>(out, base, count, ex, st, sc.cell.data(), sc.raw.data());
  }
  forward_scalar<U, FL>(out, base, done, count, ex, st, sc.cell.data(), sc.raw.data(), dummy);
  for (int l = 0; l < kLanes; ++l)
    if (st.nb[l] > 0) sc.raw[st.pend[l]] = static_cast<uint32_t>(st.acc[l]);  // zero-padded last word

  // Counts (four interleaved histograms: consecutive elements often hit
  // the same counter, and one histogram would serialise on
  // store-to-load forwarding), then the tables.
  uint32_t h[4][kCtx * kMaxSym] = {};
  const uint16_t* cell = sc.cell.data();
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    ++h[0][cell[i]];
    ++h[1][cell[i + 1]];
    ++h[2][cell[i + 2]];
    ++h[3][cell[i + 3]];
  }
  for (; i < count; ++i) ++h[0][cell[i]];
  for (int j = 0; j < kCtx * kMaxSym; ++j) h[0][j] += h[1][j] + h[2][j] + h[3][j];
  Tables& t = thread_tables();
  t = Tables{};
  make_tables(h[0], ns, t);

  // Backward: rANS. The tail (past the last whole group of 32) is coded
  // first, as the decoder meets it last.
  uint32_t x[kLanes];
  for (auto& v : x) v = kLow;
  // At most one word per element; words[0] stays spare, and kWordSlack more
  // below it for the AVX2 pass's full-width stores.
  sc.words.resize(count + 2 + kWordSlack);
  size_t wpos = sc.words.size();
  const size_t groups = simd || avx2 ? count / kLanes : 0;
  backward_scalar(cell, groups * kLanes, count, t, x, sc.words.data(), wpos);
  if (groups && simd) backward_simd(cell, groups, t, x, sc.words.data(), wpos);
  if (groups && avx2) backward_avx2(cell, groups, t, x, sc.words.data(), wpos);
  const size_t nw = sc.words.size() - wpos;

  const size_t raw_len = size_t(st.slots) * (unit / 8);
  put_u32(payload, static_cast<uint32_t>(2 * nw));
  put_u32(payload, static_cast<uint32_t>(raw_len));
  uint32_t mask = 0;
  for (int c = 0; c < kCtx; ++c)
    if (t.n[c]) mask |= 1u << c;
  put_u32(payload, mask);
  for (int c = 0; c < kCtx; ++c)
    if (t.n[c]) freq::put_table(payload, t.freq + c * kMaxSym, t.n[c]);
  for (int l = 0; l < kLanes; ++l) put_u32(payload, x[l]);
  // Words, then raw words, little-endian, laid out in place in the scratch
  // arrays and appended (no zero-filled resize of the payload first).
  payload.reserve(payload.size() + 2 * nw + raw_len);
  uint8_t* wb = reinterpret_cast<uint8_t*>(sc.words.data() + wpos);
  for (size_t j = 0; j < nw; ++j) {
    const uint16_t v = sc.words[wpos + j];
    wb[2 * j] = static_cast<uint8_t>(v & 0xff);
    wb[2 * j + 1] = static_cast<uint8_t>(v >> 8);
  }
  payload.append(reinterpret_cast<const char*>(wb), 2 * nw);
  // Raw word j (4 bytes at 4j) goes to bytes [j * unit/8, (j + 1) * unit/8),
  // never past 4j + 4: each is read before anything is written over it.
  uint8_t* rb = reinterpret_cast<uint8_t*>(sc.raw.data());
  for (size_t j = 0; j < st.slots; ++j) {
    const uint32_t v = sc.raw[j];
    for (int b = 0; b < unit / 8; ++b) rb[j * (unit / 8) + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  payload.append(reinterpret_cast<const char*>(rb), raw_len);
}


template <class U, bool FL>
bool decode_t(const uint8_t* p, size_t len, const uint8_t* base, size_t count, DType dtype, uint8_t* out,
              Path path) {
  constexpr size_t w = sizeof(U);
  const int ns = static_cast<int>(8 * w) + 1;
  if (len < kHeader) return false;
  const uint64_t A = get_u32(p), B = get_u32(p + 4);
  size_t pos = kHeader;
  thread_local DecodeTables dt;
  std::memset(dt.off, 0, sizeof dt.off);
  if (!read_tables(p, len, pos, ns, dt)) return false;
  if (A % 2 || B % (raw_unit(w) / 8) || uint64_t(len - pos) != kStates + A + B) return false;
  State s;
  for (int l = 0; l < kLanes; ++l) {
    s.x[l] = get_u32(p + pos + 4 * l);
    if (s.x[l] < kLow) return false;
  }
  s.words = p + pos + kStates;
  s.wlen = A;
  s.raw = s.words + A;
  s.rlen = B;
  const Expo ex = expo(dtype);
  size_t done = 0;
  if constexpr (w == 2 || w == 4) {
    if (path == Path::avx512) done = w == 2 ? decode_simd16<FL>(s, dt, ex, base, count, out)
                                            : decode_simd32<FL>(s, dt, ex, base, count, out);
    if (path == Path::avx2) done = decode_avx2<U, FL>(s, dt, ex, base, count, out);
  }
  if (!s.bad) decode_scalar<U, FL>(s, dt, ex, base, done, count, out);
  if (s.bad || s.wpos != s.wlen || s.rpos != s.rlen) return false;
  for (int l = 0; l < kLanes; ++l)
    if (s.x[l] != kLow || s.buf[l] != 0) return false;  // final states, zero padding
  return true;
}

}  // namespace

bool supports(DType dt) {
  const size_t w = dtype_size(dt);
  return w == 1 || w == 2 || w == 4;
}

bool path_available(Path p) {
  switch (p) {
    case Path::best:
    case Path::scalar: return true;
    case Path::avx512: return cpu_has_avx512();
    case Path::avx2: return cpu_has_avx2();
  }
  return false;
}

namespace {
// TENPAK_SIMD=avx2|scalar (or avx512) caps what `best` may use: to measure
// the paths of other CPUs on this one, or to step around a SIMD path.
// Unset, empty or unknown: no cap. A path this CPU lacks is never chosen.
Path simd_cap() {
  static const Path cap = [] {
    const char* v = std::getenv("TENPAK_SIMD");
    const std::string s = v ? v : "";
    return s == "scalar" ? Path::scalar : s == "avx2" ? Path::avx2 : Path::avx512;
  }();
  return cap;
}
}  // namespace

Path best_path() {
  static const Path p = cpu_has_avx512() && simd_cap() == Path::avx512 ? Path::avx512
                        : cpu_has_avx2() && simd_cap() != Path::scalar ? Path::avx2
                                                                        : Path::scalar;
  return p;
}

void encode(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::string& payload, Path path) {
  // The encoder's AVX-512 needs CD (lzcnt) besides what the decoder's needs.
  const Path fs = path == Path::best     ? (cpu_has_avx512_enc() && simd_cap() == Path::avx512 ? Path::avx512
                                            : cpu_has_avx2() && simd_cap() != Path::scalar   ? Path::avx2
                                                                                             : Path::scalar)
                  : path == Path::avx512 ? (cpu_has_avx512_enc() ? path : Path::scalar)
                  : path == Path::avx2   ? (cpu_has_avx2() ? path : Path::scalar)
                                         : Path::scalar;
  elem::with_element_type<4>(dt, false, [&]<class U, bool FL>() {  // 8 bytes: not supported (see supports())
    encode_t<U, FL>(out, base, n / sizeof(U), dt, payload, fs);
    return true;
  });
}

bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out, Path path) {
  const Path p = path == Path::best ? best_path() : path_available(path) ? path : Path::scalar;
  return elem::with_element_type<4>(dt, false, [&]<class U, bool FL>() {
    return decode_t<U, FL>(payload, len, base, n / sizeof(U), dt, out, p);
  });
}

}  // namespace tenpak::lanes
