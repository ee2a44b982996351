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
//
// This file: payload parsing, the portable decoder (every path ends with it)
// and the run-time choice of path; the SIMD kernels are in
// lanes_decode_avx512.cc and lanes_decode_avx2.cc (lanes_internal.h).
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "freq_table.h"
#include "lanes_internal.h"

namespace tenpak::lanes {
namespace detail {
namespace {

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
    if (path == Path::avx512) done = decode_groups_avx512(s, dt, ex, base, count, out, w, FL);
    if (path == Path::avx2) done = decode_groups_avx2(s, dt, ex, base, count, out, w, FL);
  }
  if (!s.bad) decode_scalar<U, FL>(s, dt, ex, base, done, count, out);
  if (s.bad || s.wpos != s.wlen || s.rpos != s.rlen) return false;
  for (int l = 0; l < kLanes; ++l)
    if (s.x[l] != kLow || s.buf[l] != 0) return false;  // final states, zero padding
  return true;
}

}  // namespace

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return ok;
}

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
                         __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  return ok;
}

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

}  // namespace detail

using namespace detail;

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

Path best_path() {
  static const Path p = cpu_has_avx512() && simd_cap() == Path::avx512 ? Path::avx512
                        : cpu_has_avx2() && simd_cap() != Path::scalar ? Path::avx2
                                                                        : Path::scalar;
  return p;
}

bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out, Path path) {
  const Path p = path == Path::best ? best_path() : path_available(path) ? path : Path::scalar;
  return elem::with_element_type<4>(dt, false, [&]<class U, bool FL>() {
    return decode_t<U, FL>(payload, len, base, n / sizeof(U), dt, out, p);
  });
}

}  // namespace tenpak::lanes
