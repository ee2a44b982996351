// Codec 9, sub_lanes: the encoder (tenpak_codec_encode). The model is
// described in lanes_decode.cc and docs/FORMAT.md ("codec 9"); the SIMD
// passes are in lanes_encode_avx512.cc and lanes_encode_avx2.cc.
#include <memory>
#include <string>
#include <vector>

#include "freq_table.h"
#include "lanes_internal.h"

namespace tenpak::lanes {
namespace detail {
namespace {

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

bool cpu_has_avx512_enc() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512cd");
  return ok;
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
  if (simd) done = forward_groups_avx512(out, base, count, ex, st, sc.cell.data(), sc.raw.data(), w, FL);
  if (avx2) done = forward_groups_avx2(out, base, count, ex, st, sc.cell.data(), sc.raw.data(), w, FL);
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
  if (groups && simd) backward_groups_avx512(cell, groups, t, x, sc.words.data(), wpos);
  if (groups && avx2) backward_groups_avx2(cell, groups, t, x, sc.words.data(), wpos);
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

}  // namespace
}  // namespace detail

using namespace detail;

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

}  // namespace tenpak::lanes
