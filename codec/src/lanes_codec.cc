// Codec 9, sub_lanes. docs/FORMAT.md ("codec 9") is the normative text; the
// names here follow it. Per element i (base b, output a, w-byte words):
//   z_i = zigzag(ord(a) - ord(b))     the ulp difference, as sub_planes
//   k_i = bit length of z_i (0..8w)   the symbol, rANS coded in lane i mod 32
//   r_i = max(k_i - 1, 0) raw bits of z_i under its leading one, read from
//         lane i mod 32's own bit buffer
// The symbol's context is the exponent bucket of b_i alone. Nothing depends
// on an earlier element, so a SIMD decoder runs 16 lanes per instruction:
// gather the table entries, update the states, and refill only the lanes
// that need a word with one masked load + expand (words are stored in the
// order lanes ask for them).
#include "lanes_codec.h"

#include <immintrin.h>

#include <cstring>
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

// ---- analysis ---------------------------------------------------------------

// Symbols, contexts and counts of a frame; per-lane raw-bit totals.
struct Analysis {
  std::vector<uint16_t> sc;  // per element: context << 8 | symbol
  uint32_t cnt[kCtx][kMaxSym] = {};
  uint64_t lane_bits[kLanes] = {};
};

// One pass over the frame. Counting goes to four interleaved histograms
// (consecutive elements often hit the same counter: one histogram would
// serialise on store-to-load forwarding).
template <class U, bool FL>
void analyse(const uint8_t* out, const uint8_t* base, size_t count, const Expo& ex, Analysis& an) {
  constexpr size_t w = sizeof(U);
  an.sc.resize(count);
  std::vector<uint32_t> h(4 * kCtx * kMaxSym, 0);
  uint32_t lb[kLanes] = {};
  for (size_t i = 0; i < count; ++i) {
    const U b = load<U>(base + i * w), a = load<U>(out + i * w);
    const U z = zigzag(U((FL ? f_ord(a) : a) - (FL ? f_ord(b) : b)));
    const int k = bit_length(z);
    const int q = bucket(b, ex);
    ++h[(i & 3) * (kCtx * kMaxSym) + q * kMaxSym + k];
    lb[i % kLanes] += k > 1 ? k - 1 : 0;
    an.sc[i] = static_cast<uint16_t>(q << 8 | k);
  }
  for (int c = 0; c < kCtx; ++c)
    for (int k = 0; k < kMaxSym; ++k)
      an.cnt[c][k] = h[c * kMaxSym + k] + h[kCtx * kMaxSym + c * kMaxSym + k] +
                     h[2 * kCtx * kMaxSym + c * kMaxSym + k] + h[3 * kCtx * kMaxSym + c * kMaxSym + k];
  for (int l = 0; l < kLanes; ++l) an.lane_bits[l] = lb[l];
}

struct Tables {
  uint32_t freq[kCtx][kMaxSym] = {};
  uint32_t cum[kCtx][kMaxSym] = {};
  // x div f as (x * rcp) >> 43, exact for x < 2^32 and f <= 2^11 (the error
  // of the rounded-up reciprocal stays under 1/f).
  uint64_t rcp[kCtx][kMaxSym] = {};
  int n[kCtx] = {};
};
void make_tables(const Analysis& an, int ns, Tables& t) {
  for (int c = 0; c < kCtx; ++c) {
    freq::normalise(an.cnt[c], ns, kScale, t.freq[c]);
    t.n[c] = freq::used_symbols(t.freq[c], ns);
    uint32_t acc = 0;
    for (int s = 0; s < t.n[c]; ++s) {
      t.cum[c][s] = acc;
      acc += t.freq[c][s];
      if (t.freq[c][s]) t.rcp[c][s] = ((uint64_t(1) << 43) + t.freq[c][s] - 1) / t.freq[c][s];
    }
  }
}
size_t raw_bytes(const Analysis& an, size_t w) {
  const uint64_t unit = raw_unit(w);
  uint64_t words = 0;
  for (int l = 0; l < kLanes; ++l) words += (an.lane_bits[l] + unit - 1) / unit;
  return static_cast<size_t>(words * unit / 8);
}

// Per-lane raw bit sequences, LSB first, cut into words of `unit` bits.
// Branch-free: whether a word completes is data, not control flow (it is
// unpredictable, and a mispredicted branch costs more than the work).
struct LaneWriter {
  std::vector<uint32_t> words;  // sized by the caller: bits / unit + 2
  size_t nw = 0;
  uint64_t acc = 0;
  int nb = 0;
  inline void put(uint32_t v, int k, int unit) {  // k < unit
    acc |= uint64_t(v) << nb;
    nb += k;
    const int full = nb >= unit;
    words[nw] = static_cast<uint32_t>(unit == 32 ? acc : acc & 0xffff);
    nw += full;
    acc >>= unit * full;
    nb -= unit * full;
  }
  void flush() {
    if (nb > 0) words[nw++] = static_cast<uint32_t>(acc);
    acc = 0;
    nb = 0;
  }
};

template <class U, bool FL>
void encode_t(const uint8_t* out, const uint8_t* base, size_t count, DType dt, std::string& payload) {
  constexpr size_t w = sizeof(U);
  constexpr int unit = raw_unit(w);
  const int ns = static_cast<int>(8 * w) + 1;
  const Expo ex = expo(dt);
  Analysis an;
  analyse<U, FL>(out, base, count, ex, an);
  Tables t;
  make_tables(an, ns, t);

  // Raw bits: each lane's sequence, then the words in the order a decoder
  // asks for them (lane l refills when its buffer holds fewer bits than the
  // element needs; elements in order, so lanes in order within a step).
  LaneWriter lw[kLanes];
  for (int l = 0; l < kLanes; ++l) lw[l].words.resize(an.lane_bits[l] / unit + 2);
  thread_local std::vector<uint8_t> order;  // lane of each refill, in read order
  order.resize(raw_bytes(an, w) / (unit / 8) + 1);
  size_t no = 0;
  uint32_t have[kLanes] = {};
  for (size_t i = 0; i < count; ++i) {
    const int k = an.sc[i] & 0xff;
    const int l = static_cast<int>(i % kLanes);
    const U b = load<U>(base + i * w), a = load<U>(out + i * w);
    const U z = zigzag(U((FL ? f_ord(a) : a) - (FL ? f_ord(b) : b)));
    const uint32_t r = static_cast<uint32_t>(k > 1 ? k - 1 : 0);
    lw[l].put(static_cast<uint32_t>(uint64_t(z) & ((uint64_t(1) << r) - 1)), static_cast<int>(r), unit);
    const uint32_t need = have[l] < r;
    order[no] = static_cast<uint8_t>(l);
    no += need;
    have[l] += unit * need - r;
  }
  for (auto& x : lw) x.flush();

  // rANS, backwards: the decoder (forwards) sees the exact reverse.
  uint32_t x[kLanes];
  for (auto& v : x) v = kLow;
  thread_local std::vector<uint16_t> words;
  words.resize(count + kLanes);  // at most one word per element
  size_t nw = 0;
  for (size_t i = count; i-- > 0;) {
    const int c = an.sc[i] >> 8, s = an.sc[i] & 0xff;
    const uint32_t f = t.freq[c][s], start = t.cum[c][s];
    uint32_t xs = x[i % kLanes];
    // Emit when coding would leave [kLow, 2^32) (branch-free, as above).
    const uint32_t emit = uint64_t(xs) >= (uint64_t(f) << (32 - kScaleBits));
    words[nw] = static_cast<uint16_t>(xs);
    nw += emit;
    xs >>= 16 * emit;
    const uint32_t qd = static_cast<uint32_t>((static_cast<unsigned __int128>(xs) * t.rcp[c][s]) >> 43);
    x[i % kLanes] = (qd << kScaleBits) + (xs - qd * f) + start;
  }

  const size_t raw_len = no * (unit / 8);
  put_u32(payload, static_cast<uint32_t>(2 * nw));
  put_u32(payload, static_cast<uint32_t>(raw_len));
  uint32_t mask = 0;
  for (int c = 0; c < kCtx; ++c)
    if (t.n[c]) mask |= 1u << c;
  put_u32(payload, mask);
  for (int c = 0; c < kCtx; ++c)
    if (t.n[c]) freq::put_table(payload, t.freq[c], t.n[c]);
  for (int l = 0; l < kLanes; ++l) put_u32(payload, x[l]);
  size_t at = payload.size();
  payload.resize(at + 2 * nw + raw_len);
  char* p = payload.data() + at;
  for (size_t j = 0; j < nw; ++j) {
    const uint16_t v = words[nw - 1 - j];
    p[2 * j] = static_cast<char>(v & 0xff);
    p[2 * j + 1] = static_cast<char>(v >> 8);
  }
  p += 2 * nw;
  size_t next[kLanes] = {};
  for (size_t j = 0; j < no; ++j) {
    const int l = order[j];
    const uint32_t v = lw[l].words[next[l]++];
    for (int b = 0; b < unit / 8; ++b) *p++ = static_cast<char>(v >> (8 * b));
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
  const __m512i wv = _mm512_cvtepu16_epi32(
      _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << nw) - 1), s.words + s.wpos));
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

// w = 2 (BF16, F16, 16-bit ints): 16-bit raw words, 32-bit bit buffers.
template <bool FL>
TP_AVX512 size_t decode_simd16(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                               uint8_t* out) {
  // A local copy: through the reference, every store to `out` (uint8_t*,
  // may alias anything) would force the stream cursors back to memory.
  State s = st;
  const uint32_t* T = dt.t.data();
  const __m512i offlo = _mm512_loadu_si512(dt.off), offhi = _mm512_loadu_si512(dt.off + 16);
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  __m512i x[2], buf[2] = {zero, zero}, cnt[2] = {zero, zero};
  x[0] = _mm512_loadu_si512(s.x);
  x[1] = _mm512_loadu_si512(s.x + 16);
  __mmask16 bad = 0;
  size_t i = 0;
  for (; i + kLanes <= count && !s.bad; i += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const size_t i0 = i + 16 * h;
      const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 2 * i0)));
      const __m512i k = rans_step(x[h], bucket16(b, ex), offlo, offhi, T, s, bad);
      if (s.bad) break;
      const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
      const __mmask16 mf = _mm512_cmplt_epu32_mask(cnt[h], r);
      const unsigned nf = static_cast<unsigned>(__builtin_popcount(mf));
      if (s.rpos + 2 * nf > s.rlen) { s.bad = true; break; }
      __m512i rv = _mm512_cvtepu16_epi32(
          _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << nf) - 1), s.raw + s.rpos));
      s.rpos += 2 * nf;
      rv = _mm512_maskz_expand_epi32(mf, rv);
      buf[h] = _mm512_or_si512(buf[h], _mm512_sllv_epi32(rv, cnt[h]));
      cnt[h] = _mm512_mask_add_epi32(cnt[h], mf, cnt[h], _mm512_set1_epi32(16));
      const __m512i val = _mm512_andnot_si512(_mm512_sllv_epi32(ones, r), buf[h]);
      buf[h] = _mm512_srlv_epi32(buf[h], r);
      cnt[h] = _mm512_sub_epi32(cnt[h], r);
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
    }
  }
  if (bad) s.bad = true;
  _mm512_storeu_si512(s.x, x[0]);
  _mm512_storeu_si512(s.x + 16, x[1]);
  uint32_t tb[16], tc[16];
  for (int h = 0; h < 2; ++h) {
    _mm512_storeu_si512(tb, buf[h]);
    _mm512_storeu_si512(tc, cnt[h]);
    for (int l = 0; l < 16; ++l) {
      s.buf[16 * h + l] = tb[l];
      s.cnt[16 * h + l] = tc[l];
    }
  }
  st = s;
  return i;
}

// w = 4 (F32, 32-bit ints): 32-bit raw words, 64-bit bit buffers (8 lanes
// per register, so a 16-lane step refills in two halves, low lanes first).
template <bool FL>
TP_AVX512 size_t decode_simd32(State& st, const DecodeTables& dt, const Expo& ex, const uint8_t* base, size_t count,
                               uint8_t* out) {
  // A local copy: through the reference, every store to `out` (uint8_t*,
  // may alias anything) would force the stream cursors back to memory.
  State s = st;
  const uint32_t* T = dt.t.data();
  const __m512i offlo = _mm512_loadu_si512(dt.off), offhi = _mm512_loadu_si512(dt.off + 16);
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), ones = _mm512_set1_epi32(-1);
  __m512i x[2], buf[4] = {zero, zero, zero, zero}, cnt[4] = {zero, zero, zero, zero};
  x[0] = _mm512_loadu_si512(s.x);
  x[1] = _mm512_loadu_si512(s.x + 16);
  __mmask16 bad = 0;
  size_t i = 0;
  for (; i + kLanes <= count && !s.bad; i += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const size_t i0 = i + 16 * h;
      const __m512i b = _mm512_loadu_si512(base + 4 * i0);
      const __m512i k = rans_step(x[h], bucket16(b, ex), offlo, offhi, T, s, bad);
      if (s.bad) break;
      const __m512i r = _mm512_max_epi32(_mm512_sub_epi32(k, one), zero);
      __m256i v32[2];
      for (int j = 0; j < 2; ++j) {
        const int g = 2 * h + j;
        const __m512i rj = _mm512_cvtepu32_epi64(j ? _mm512_extracti64x4_epi64(r, 1) : _mm512_castsi512_si256(r));
        const __mmask8 mf = _mm512_cmplt_epu64_mask(cnt[g], rj);
        const unsigned nf = static_cast<unsigned>(__builtin_popcount(mf));
        if (s.rpos + 4 * nf > s.rlen) { s.bad = true; break; }
        __m512i rv = _mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(static_cast<__mmask8>((1u << nf) - 1), s.raw + s.rpos));
        s.rpos += 4 * nf;
        rv = _mm512_maskz_expand_epi64(mf, rv);
        buf[g] = _mm512_or_si512(buf[g], _mm512_sllv_epi64(rv, cnt[g]));
        cnt[g] = _mm512_mask_add_epi64(cnt[g], mf, cnt[g], _mm512_set1_epi64(32));
        v32[j] = _mm512_cvtepi64_epi32(_mm512_andnot_si512(_mm512_sllv_epi64(ones, rj), buf[g]));
        buf[g] = _mm512_srlv_epi64(buf[g], rj);
        cnt[g] = _mm512_sub_epi64(cnt[g], rj);
      }
      if (s.bad) break;
      const __m512i val = _mm512_inserti64x4(_mm512_castsi256_si512(v32[0]), v32[1], 1);
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
    }
  }
  if (bad) s.bad = true;
  _mm512_storeu_si512(s.x, x[0]);
  _mm512_storeu_si512(s.x + 16, x[1]);
  uint64_t tb[8], tc[8];
  for (int g = 0; g < 4; ++g) {
    _mm512_storeu_si512(tb, buf[g]);
    _mm512_storeu_si512(tc, cnt[g]);
    for (int l = 0; l < 8; ++l) {
      s.buf[8 * g + l] = tb[l];
      s.cnt[8 * g + l] = static_cast<uint32_t>(tc[l]);
    }
  }
  st = s;
  return i;
}

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return ok;
}

template <class U, bool FL>
bool decode_t(const uint8_t* p, size_t len, const uint8_t* base, size_t count, DType dtype, uint8_t* out,
              bool force_scalar) {
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
  if (!force_scalar && cpu_has_avx512()) {
    if constexpr (w == 2) done = decode_simd16<FL>(s, dt, ex, base, count, out);
    if constexpr (w == 4) done = decode_simd32<FL>(s, dt, ex, base, count, out);
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

bool simd_available() { return cpu_has_avx512(); }

void encode(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::string& payload) {
  const bool fl = dtype_is_float(dt);
  switch (dtype_size(dt)) {
    case 1: fl ? encode_t<uint8_t, true>(out, base, n, dt, payload) : encode_t<uint8_t, false>(out, base, n, dt, payload); break;
    case 2: fl ? encode_t<uint16_t, true>(out, base, n / 2, dt, payload) : encode_t<uint16_t, false>(out, base, n / 2, dt, payload); break;
    case 4: fl ? encode_t<uint32_t, true>(out, base, n / 4, dt, payload) : encode_t<uint32_t, false>(out, base, n / 4, dt, payload); break;
    default: break;  // not supported (see supports())
  }
}

bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out,
            bool force_scalar) {
  const bool fl = dtype_is_float(dt);
  switch (dtype_size(dt)) {
    case 1: return fl ? decode_t<uint8_t, true>(payload, len, base, n, dt, out, force_scalar) : decode_t<uint8_t, false>(payload, len, base, n, dt, out, force_scalar);
    case 2: return fl ? decode_t<uint16_t, true>(payload, len, base, n / 2, dt, out, force_scalar) : decode_t<uint16_t, false>(payload, len, base, n / 2, dt, out, force_scalar);
    case 4: return fl ? decode_t<uint32_t, true>(payload, len, base, n / 4, dt, out, force_scalar) : decode_t<uint32_t, false>(payload, len, base, n / 4, dt, out, force_scalar);
    default: return false;
  }
}

}  // namespace tenpak::lanes
