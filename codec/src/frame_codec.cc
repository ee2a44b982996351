#include "tenpak/frame_codec.h"

#include <zstd.h>

#include "element_ops.h"
#include "range_coder.h"
#include "lanes_codec.h"
#include "rans_codec.h"
#include "scratch.h"
#include "tenpak/approx_codec.h"
#include "tenpak/patch_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tenpak {
namespace {

// ---- zstd helpers -------------------------------------------------------
// One compression/decompression context per thread: creating them per call
// costs more than compressing a small frame.
ZSTD_CCtx* cctx() {
  thread_local struct C { ZSTD_CCtx* c = ZSTD_createCCtx(); ~C() { ZSTD_freeCCtx(c); } } t;
  return t.c;
}
ZSTD_DCtx* dctx() {
  thread_local struct D { ZSTD_DCtx* d = ZSTD_createDCtx(); ~D() { ZSTD_freeDCtx(d); } } t;
  return t.d;
}

void zstd_append(std::string& dst, const uint8_t* src, size_t n, int level) {
  size_t cap = ZSTD_compressBound(n);
  size_t old = dst.size();
  dst.resize(old + cap);
  size_t r = ZSTD_compressCCtx(cctx(), dst.data() + old, cap, src, n, level);
  if (ZSTD_isError(r)) { dst.resize(old); dst.append(reinterpret_cast<const char*>(src), n); return; }
  dst.resize(old + r);
}

// Decompresses exactly `n` bytes; anything else is corruption.
bool zstd_exact(const uint8_t* src, size_t sn, uint8_t* dst, size_t n) {
  size_t r = ZSTD_decompressDCtx(dctx(), dst, n, src, sn);
  return !ZSTD_isError(r) && r == n;
}

// ---- element transforms ---------------------------------------------------
using namespace elem;  // load/store, f_ord/f_unord, zigzag/unzigzag, bit_length

// d[i] = zigzag(ord(out[i]) - ord(base[i])) (ord = identity for integers)
template <class U>
void sub_forward(const uint8_t* out, const uint8_t* base, size_t count, bool is_float, U* d) {
  for (size_t i = 0; i < count; ++i) {
    U a = load<U>(out + i * sizeof(U)), b = load<U>(base + i * sizeof(U));
    if (is_float) { a = f_ord(a); b = f_ord(b); }
    d[i] = zigzag(U(a - b));
  }
}
template <class U>
void sub_inverse(const U* d, const uint8_t* base, size_t count, bool is_float, uint8_t* out) {
  for (size_t i = 0; i < count; ++i) {
    U b = load<U>(base + i * sizeof(U));
    if (is_float) b = f_ord(b);
    U a = U(b + unzigzag(d[i]));
    store<U>(out + i * sizeof(U), is_float ? f_unord(a) : a);
  }
}

// Byte planes: plane k (most significant first) holds byte (w-1-k) of every element.
void to_planes(const uint8_t* src, size_t n, size_t w, uint8_t* dst) {
  size_t count = n / w;
  if (w == 2) {
    uint8_t* hi = dst; uint8_t* lo = dst + count;
    for (size_t i = 0; i < count; ++i) { lo[i] = src[2 * i]; hi[i] = src[2 * i + 1]; }
    return;
  }
  for (size_t k = 0; k < w; ++k) {
    uint8_t* pl = dst + k * count;
    size_t byte = w - 1 - k;
    for (size_t i = 0; i < count; ++i) pl[i] = src[i * w + byte];
  }
}
void from_planes(const uint8_t* src, size_t n, size_t w, uint8_t* dst) {
  size_t count = n / w;
  if (w == 2) {
    const uint8_t* hi = src; const uint8_t* lo = src + count;
    for (size_t i = 0; i < count; ++i) { dst[2 * i] = lo[i]; dst[2 * i + 1] = hi[i]; }
    return;
  }
  for (size_t k = 0; k < w; ++k) {
    const uint8_t* pl = src + k * count;
    size_t byte = w - 1 - k;
    for (size_t i = 0; i < count; ++i) dst[i * w + byte] = pl[i];
  }
}

// Order-0 entropy (in bytes) of a byte stream: what a Huffman/FSE stage
// would roughly cost. Used to choose a codec without compressing every one.
double entropy_bytes(const uint8_t* p, size_t n) {
  if (n == 0) return 0;
  uint32_t h[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) { ++h[0][p[i]]; ++h[1][p[i + 1]]; ++h[2][p[i + 2]]; ++h[3][p[i + 3]]; }
  for (; i < n; ++i) ++h[0][p[i]];
  double bits = 0;
  const double dn = static_cast<double>(n);
  for (int s = 0; s < 256; ++s) {
    uint32_t c = h[0][s] + h[1][s] + h[2][s] + h[3][s];
    if (c) bits -= c * std::log2(c / dn);
  }
  return bits / 8 + 64;  // + a rough table cost
}

// Split the low bytes of 16-bit words by whether their high byte is zero:
// the low byte of a small difference is distributed very differently from
// the low byte of a large one. Streams: H (high bytes), L0, L1.
struct Split16 { std::vector<uint8_t> h, l0, l1; };
void split16(const uint16_t* d, size_t count, Split16& s) {
  s.h.resize(count); s.l0.clear(); s.l1.clear();
  s.l0.reserve(count); s.l1.reserve(count / 4);
  for (size_t i = 0; i < count; ++i) {
    uint8_t hi = static_cast<uint8_t>(d[i] >> 8), lo = static_cast<uint8_t>(d[i]);
    s.h[i] = hi;
    (hi ? s.l1 : s.l0).push_back(lo);
  }
}


void diff_words(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::vector<uint8_t>& d) {
  d.resize(n);
  size_t w = dtype_size(dt);
  bool fl = dtype_is_float(dt);
  size_t count = n / w;
  switch (w) {
    case 1: sub_forward<uint8_t>(out, base, count, fl, d.data()); break;
    case 2: sub_forward<uint16_t>(out, base, count, fl, reinterpret_cast<uint16_t*>(d.data())); break;
    case 4: sub_forward<uint32_t>(out, base, count, fl, reinterpret_cast<uint32_t*>(d.data())); break;
    default: sub_forward<uint64_t>(out, base, count, fl, reinterpret_cast<uint64_t*>(d.data())); break;
  }
}

// ---- sub_ctx: predicted, context-modelled ulp differences --------------------
// docs/FORMAT.md ("codec 7") is the normative description; the names below
// follow it. Per element i (base b, output a, w-byte words U):
//   d_i = sext(ord(a) - ord(b))                 the ulp difference, signed w-bit
//   p_i = linear prediction of d_i from the already decoded differences of
//         its left, upper and upper-left neighbours inside a kernel window
//         (conv weights: fine-tuning moves the taps of one kernel together),
//         each rescaled from its base's exponent to b's exponent
//   r_i = (d_i - p_i) mod 2^(8w), coded as z = zigzag(r_i):
//         k = bit length of z through a binary tree whose probabilities depend
//         on b's exponent bucket and on a running average of recent (k + bucket)
//         (update sizes are locally similar in absolute terms), then the k-2
//         bits under the leading one (per (k, position)), then bit 0 (the sign
//         of r) with the base's sign and the previous sign as context.
// Everything is integer arithmetic so every implementation decodes alike.
// Header: u8 kw; when kw != 0: u8 area, u8 phase, 3 x i16 coefficients.
constexpr size_t kCtxHeaderMax = 9;
constexpr int kCoefBits = 8;         // coefficients are fixed point with 8 fraction bits
constexpr int kCoefMax = 1024;       // |coefficient| <= 4.0
constexpr int kMaxUpShift = 16;      // a larger neighbour's difference is scaled up by at most 2^16

struct CtxParams {
  uint32_t kw = 1, area = 1, phase = 0;
  int32_t c[3] = {0, 0, 0};  // left, up, up-left
  CtxParams() = default;
  // A layout the header cannot hold (or an inconsistent one) means "no kernel".
  explicit CtxParams(const FrameLayout& l) {
    if (l.kw >= 1 && l.area >= l.kw && l.area <= 255 && l.area % l.kw == 0) {
      kw = l.kw;
      area = l.area;
      phase = l.phase % l.area;
    }
  }
};

template <class U>
struct CtxModel {
  static constexpr int kBits = sizeof(U) * 8;
  // Levels of the bit-length tree: k ranges over 0..kBits.
  static constexpr int kLevels = sizeof(U) == 1 ? 4 : sizeof(U) == 2 ? 5 : sizeof(U) == 4 ? 6 : 7;
  static constexpr int kPredCtx = 40;  // 0..38 predicted k, 39 = no history yet
  std::vector<rc::Prob> kp = std::vector<rc::Prob>(size_t(32 * kPredCtx) << kLevels);
  std::vector<rc::Prob> mp = std::vector<rc::Prob>(size_t(kBits + 1) * kBits);
  rc::Prob sp[4];
  DType dt;
  int avg = -1;      // running average of 8*(k + bucket), -1 before the first element
  int prev_sign = 0; // bit 0 of z of the last element with k >= 2
  explicit CtxModel(DType d) : dt(d) {}

  // Exponent field of a base element (0 for integer types).
  uint64_t efield(U b) const {
    switch (dt) {
      case DType::F16: return (uint64_t(b) >> 10) & 31;
      case DType::BF16: return (uint64_t(b) >> 7) & 0xff;
      case DType::F32: return (uint64_t(b) >> 23) & 0xff;
      case DType::F64: return (uint64_t(b) >> 52) & 0x7ff;
      case DType::F8_E4M3: return (uint64_t(b) >> 3) & 15;
      case DType::F8_E5M2: return (uint64_t(b) >> 2) & 31;
      default: return 0;
    }
  }
  // Scale exponent: the base's ulp is 2^(xs - const); subnormals share e=1's ulp.
  int scale(U b) const {
    if (!dtype_is_float(dt)) return 0;
    uint64_t e = efield(b);
    return e ? static_cast<int>(e) : 1;
  }
  // Context bucket 0..31 of the exponent.
  int bucket(U b) const {
    auto clamp = [](int64_t e) { return static_cast<int>(e < 0 ? 0 : (e > 31 ? 31 : e)); };
    int64_t e = static_cast<int64_t>(efield(b));
    switch (dt) {
      case DType::BF16: case DType::F32: return clamp(e - 104);
      case DType::F64: return clamp(e - 1000);
      default: return clamp(e);
    }
  }
  // Sign of the base element: weight decay moves weights toward zero, so it
  // predicts the sign of the difference.
  static int sign(U b) { return static_cast<int>(uint64_t(b) >> (kBits - 1)); }
  rc::Prob* ktree(int eb) {
    int pr = avg < 0 ? kPredCtx - 1 : ((avg + 4) >> 3) - eb + 4;
    if (pr < 0) pr = 0;
    if (pr > kPredCtx - 2 && avg >= 0) pr = kPredCtx - 2;
    return &kp[(size_t(eb) * kPredCtx + pr) << kLevels];
  }
  void after(int k, int eb) {
    int v = 8 * (k + eb);
    avg = avg < 0 ? v : (7 * avg + v + 4) >> 3;
  }
};


// The predictor, shared by encoder and decoder. `d` holds the signed
// differences of the elements before i; `xs` their scale exponents.
// (x, y) is element i's column and row in its kernel: pos = (i + phase) mod
// area, x = pos mod kw, y = pos div kw (KernelPos steps it without divisions).
struct KernelPos {
  uint32_t x = 0, y = 0;
  explicit KernelPos(const CtxParams& p) : x(p.phase % p.kw), y(p.phase / p.kw) {}
  void next(const CtxParams& p) {
    if (++x == p.kw) {
      x = 0;
      if (++y * p.kw == p.area) y = 0;
    }
  }
};

inline int64_t ctx_predict(const CtxParams& p, const int64_t* d, const int* xs, size_t i, uint32_t x, uint32_t y) {
  if ((p.c[0] | p.c[1] | p.c[2]) == 0) return 0;
  auto term = [&](size_t j) -> int64_t {
    int s = xs[j] - xs[i];
    if (s >= 0) return d[j] * (int64_t(1) << (s > kMaxUpShift ? kMaxUpShift : s));
    return d[j] >> (s < -63 ? 63 : -s);  // arithmetic shift: floor
  };
  int64_t acc = 0;
  if (x > 0 && i >= 1) acc += p.c[0] * term(i - 1);
  if (y > 0 && i >= p.kw) acc += p.c[1] * term(i - p.kw);
  if (x > 0 && y > 0 && i >= p.kw + 1) acc += p.c[2] * term(i - p.kw - 1);
  return (acc + (int64_t(1) << (kCoefBits - 1))) >> kCoefBits;
}

template <class U> int64_t sext(U v) { return static_cast<int64_t>(static_cast<std::make_signed_t<U>>(v)); }

// Least-squares coefficients of the predictor for this frame (encoder only;
// any coefficients decode correctly, these just make residuals small).
template <class U>
void fit_coefficients(CtxParams& p, const std::vector<int64_t>& d, const std::vector<int>& xs) {
  if (p.area <= 1 || sizeof(U) == 8) return;
  double A[3][4] = {};
  const size_t n = d.size();
  CtxParams unit = p;
  KernelPos kp(p);
  for (size_t i = 0; i < n; kp.next(p), ++i) {
    double f[3];
    for (int t = 0; t < 3; ++t) {
      unit.c[0] = unit.c[1] = unit.c[2] = 0;
      unit.c[t] = 1 << kCoefBits;
      f[t] = static_cast<double>(ctx_predict(unit, d.data(), xs.data(), i, kp.x, kp.y));
    }
    // Weighted towards small differences: the coded cost grows with
    // log|residual|, so a few huge differences (tiny base values count many
    // ulps) must not dominate the fit as they would in plain least squares.
    // Elements whose neighbours' exponents differ much from theirs are
    // left out: their differences are scaled by large powers of two and
    // would dominate the squares (tiny base values count many ulps).
    double wt = 1.0;
    for (size_t j : {i - 1, i - p.kw, i - p.kw - 1})
      if (j < i && std::abs(xs[j] - xs[i]) > 3) wt = 0;
    for (int r = 0; r < 3; ++r) {
      A[r][3] += wt * f[r] * static_cast<double>(d[i]);
      for (int c = 0; c < 3; ++c) A[r][c] += wt * f[r] * f[c];
    }
  }
  // Gauss-Jordan with partial pivoting; a singular direction gets coefficient 0.
  double sol[3] = {0, 0, 0};
  int row_of[3] = {-1, -1, -1};
  for (int c = 0, r0 = 0; c < 3 && r0 < 3; ++c) {
    int piv = r0;
    for (int r = r0 + 1; r < 3; ++r) if (std::fabs(A[r][c]) > std::fabs(A[piv][c])) piv = r;
    if (std::fabs(A[piv][c]) < 1e-6) continue;
    for (int k = 0; k < 4; ++k) std::swap(A[r0][k], A[piv][k]);
    for (int r = 0; r < 3; ++r) {
      if (r == r0) continue;
      double f = A[r][c] / A[r0][c];
      for (int k = 0; k < 4; ++k) A[r][k] -= f * A[r0][k];
    }
    row_of[c] = r0++;
  }
  for (int c = 0; c < 3; ++c) if (row_of[c] >= 0) sol[c] = A[row_of[c]][3] / A[row_of[c]][c];
  int biggest = 0;
  for (int c = 0; c < 3; ++c) {
    double v = std::round(sol[c] * (1 << kCoefBits));
    p.c[c] = static_cast<int32_t>(v > kCoefMax ? kCoefMax : (v < -kCoefMax ? -kCoefMax : v));
    biggest = std::max(biggest, std::abs(p.c[c]));
  }
  // Neighbours that explain almost nothing are not worth the header and the
  // decoder's work.
  if (biggest < 16) p.c[0] = p.c[1] = p.c[2] = 0;
}

template <class U>
void ctx_encode(const uint8_t* out, const uint8_t* base, size_t count, DType dt, CtxParams prm, std::string& payload) {
  CtxModel<U> m(dt);
  const bool fl = dtype_is_float(dt);
  std::vector<int64_t> d(count);
  std::vector<int> xs(count);
  for (size_t i = 0; i < count; ++i) {
    U b = load<U>(base + i * sizeof(U)), a = load<U>(out + i * sizeof(U));
    U bo = fl ? f_ord(b) : b, ao = fl ? f_ord(a) : a;
    d[i] = sext<U>(U(ao - bo));
    xs[i] = m.scale(b);
  }
  prm.c[0] = prm.c[1] = prm.c[2] = 0;
  fit_coefficients<U>(prm, d, xs);
  if ((prm.c[0] | prm.c[1] | prm.c[2]) == 0) {
    payload.push_back(0);  // no predictor
  } else {
    payload.push_back(static_cast<char>(prm.kw));
    payload.push_back(static_cast<char>(prm.area));
    payload.push_back(static_cast<char>(prm.phase));
    for (int t = 0; t < 3; ++t) {
      uint16_t c = static_cast<uint16_t>(static_cast<int16_t>(prm.c[t]));
      payload.push_back(static_cast<char>(c & 0xff));
      payload.push_back(static_cast<char>(c >> 8));
    }
  }
  rc::Encoder enc(payload);
  KernelPos kpos(prm);
  for (size_t i = 0; i < count; kpos.next(prm), ++i) {
    U b = load<U>(base + i * sizeof(U));
    U r = U(uint64_t(d[i]) - uint64_t(ctx_predict(prm, d.data(), xs.data(), i, kpos.x, kpos.y)));
    U z = zigzag(r);
    int k = bit_length(z);
    int eb = m.bucket(b);
    rc::Prob* kp = m.ktree(eb);
    unsigned node = 1;
    for (int l = CtxModel<U>::kLevels - 1; l >= 0; --l) {
      int bit = (k >> l) & 1;
      enc.bit(kp[node], bit);
      node = node * 2 + bit;
    }
    rc::Prob* mp = &m.mp[size_t(k) * CtxModel<U>::kBits];
    for (int pos = k - 2; pos > 0; --pos) enc.bit(mp[pos], static_cast<int>((uint64_t(z) >> pos) & 1));
    if (k >= 2) {
      int s = static_cast<int>(z & 1);
      enc.bit(m.sp[CtxModel<U>::sign(b) * 2 + m.prev_sign], s);
      m.prev_sign = s;
    }
    m.after(k, eb);
  }
  enc.finish();
}

template <class U>
bool ctx_decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t count, DType dt, uint8_t* out) {
  if (len < 1) return false;
  CtxParams prm;
  size_t header = 1;
  if (payload[0] != 0) {
    header = kCtxHeaderMax;
    if (len < header || sizeof(U) == 8) return false;
    prm.kw = payload[0];
    prm.area = payload[1];
    prm.phase = payload[2];
    if (prm.area == 0 || prm.area % prm.kw != 0 || prm.phase >= prm.area) return false;
    for (int t = 0; t < 3; ++t) {
      prm.c[t] = static_cast<int16_t>(payload[3 + 2 * t] | (payload[4 + 2 * t] << 8));
      if (prm.c[t] > kCoefMax || prm.c[t] < -kCoefMax) return false;
    }
    if ((prm.c[0] | prm.c[1] | prm.c[2]) == 0) return false;  // canonical: that is kw = 0
  }
  CtxModel<U> m(dt);
  rc::Decoder dec(payload + header, len - header);
  const bool fl = dtype_is_float(dt);
  const bool predict = (prm.c[0] | prm.c[1] | prm.c[2]) != 0;
  thread_local std::vector<int64_t> d;
  thread_local std::vector<int> xs;
  if (predict) { d.resize(count); xs.resize(count); }
  KernelPos kpos(prm);
  for (size_t i = 0; i < count; kpos.next(prm), ++i) {
    U b = load<U>(base + i * sizeof(U));
    int eb = m.bucket(b);
    rc::Prob* kp = m.ktree(eb);
    unsigned node = 1;
    for (int l = 0; l < CtxModel<U>::kLevels; ++l) node = node * 2 + dec.bit(kp[node]);
    int k = static_cast<int>(node - (1u << CtxModel<U>::kLevels));
    if (k > CtxModel<U>::kBits) return false;
    uint64_t z = 0;
    if (k > 0) {
      z = 1;
      rc::Prob* mp = &m.mp[size_t(k) * CtxModel<U>::kBits];
      for (int pos = k - 2; pos > 0; --pos) z = (z << 1) | static_cast<uint64_t>(dec.bit(mp[pos]));
      if (k >= 2) {
        int s = dec.bit(m.sp[CtxModel<U>::sign(b) * 2 + m.prev_sign]);
        m.prev_sign = s;
        z = (z << 1) | static_cast<uint64_t>(s);
      }
    }
    m.after(k, eb);
    U r = unzigzag(U(z));
    U bo = fl ? f_ord(b) : b;
    U di = r;
    if (predict) {
      xs[i] = m.scale(b);
      di = U(uint64_t(r) + uint64_t(ctx_predict(prm, d.data(), xs.data(), i, kpos.x, kpos.y)));
      d[i] = sext<U>(di);
    }
    U ao = U(bo + di);
    store<U>(out + i * sizeof(U), fl ? f_unord(ao) : ao);
  }
  return !dec.overrun();
}

void ctx_encode_any(const uint8_t* out, const uint8_t* base, size_t n, DType dt, const CtxParams& p, std::string& payload) {
  switch (dtype_size(dt)) {
    case 1: ctx_encode<uint8_t>(out, base, n, dt, p, payload); break;
    case 2: ctx_encode<uint16_t>(out, base, n / 2, dt, p, payload); break;
    case 4: ctx_encode<uint32_t>(out, base, n / 4, dt, p, payload); break;
    default: ctx_encode<uint64_t>(out, base, n / 8, dt, p, payload); break;
  }
}

bool ctx_decode_any(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out) {
  switch (dtype_size(dt)) {
    case 1: return ctx_decode<uint8_t>(payload, len, base, n, dt, out);
    case 2: return ctx_decode<uint16_t>(payload, len, base, n / 2, dt, out);
    case 4: return ctx_decode<uint32_t>(payload, len, base, n / 4, dt, out);
    default: return ctx_decode<uint64_t>(payload, len, base, n / 8, dt, out);
  }
}

}  // namespace

EncodedFrame encode_frame_with(Codec c, const uint8_t* out, size_t n, DType dt, const uint8_t* base, int level,
                              const FrameLayout& layout) {
  EncodedFrame e;
  e.codec = c;
  size_t w = dtype_size(dt);
  std::vector<uint8_t> tmp, planes;
  switch (c) {
    case Codec::store: e.payload.assign(reinterpret_cast<const char*>(out), n); break;
    case Codec::zstd: zstd_append(e.payload, out, n, level); break;
    case Codec::copy_base: break;
    case Codec::planes:
      planes.resize(n); to_planes(out, n, w, planes.data());
      zstd_append(e.payload, planes.data(), n, level);
      break;
    case Codec::xor_planes:
      tmp.resize(n);
      for (size_t i = 0; i < n; ++i) tmp[i] = out[i] ^ base[i];
      planes.resize(n); to_planes(tmp.data(), n, w, planes.data());
      zstd_append(e.payload, planes.data(), n, level);
      break;
    case Codec::sub_planes:
      diff_words(out, base, n, dt, tmp);
      planes.resize(n); to_planes(tmp.data(), n, w, planes.data());
      zstd_append(e.payload, planes.data(), n, level);
      break;
    case Codec::sub_split: {
      diff_words(out, base, n, dt, tmp);
      Split16 s;
      split16(reinterpret_cast<const uint16_t*>(tmp.data()), n / 2, s);
      std::string ch, c0;
      zstd_append(ch, s.h.data(), s.h.size(), level);
      zstd_append(c0, s.l0.data(), s.l0.size(), level);
      put_u32(e.payload, static_cast<uint32_t>(ch.size()));
      put_u32(e.payload, static_cast<uint32_t>(c0.size()));
      e.payload += ch;
      e.payload += c0;
      zstd_append(e.payload, s.l1.data(), s.l1.size(), level);
      break;
    }
    case Codec::sub_ctx:
      ctx_encode_any(out, base, n, dt, CtxParams(layout), e.payload);
      break;
    case Codec::sub_rans:
      rans::encode(out, base, n, dt, e.payload);
      break;
    case Codec::sub_lanes:
      if (!lanes::supports(dt)) return encode_frame_with(Codec::store, out, n, dt, nullptr, 0);
      lanes::encode(out, base, n, dt, e.payload);
      break;
  }
  return e;
}

EncodedFrame encode_frame(const uint8_t* out, size_t n, DType dt, const uint8_t* base, const EncodeOptions& opt) {
  size_t w = dtype_size(dt);
  if (base && std::memcmp(out, base, n) == 0) return {Codec::copy_base, {}};
  // Candidates with their cost: sub_lanes encoded, the byte-plane codecs estimated.
  Codec best = Codec::zstd;
  double best_cost = 1e300;
  std::vector<uint8_t> tmp, planes;
  auto consider = [&](Codec c, double cost) { if (cost < best_cost) { best_cost = cost; best = c; } };
  auto planes_cost = [&](const uint8_t* src) {
    planes.resize(n);
    to_planes(src, n, w, planes.data());
    double cost = 0;
    size_t count = n / w;
    for (size_t k = 0; k < w; ++k) cost += entropy_bytes(planes.data() + k * count, count);
    return cost;
  };
  const bool lanes_ok = base && lanes::supports(dt);
  EncodedFrame lanes_frame;
  if (lanes_ok) {
    // sub_lanes decodes fastest and is the smallest of the fast codecs on
    // fine-tuned weights. The byte-plane codecs are only estimated when the
    // data looks unlike fine-tuned weights (sub_lanes above half the output).
    // Encoded outright rather than estimated: it is nearly always the winner.
    lanes_frame.codec = Codec::sub_lanes;
    lanes::encode(out, base, n, dt, lanes_frame.payload);
    consider(Codec::sub_lanes, static_cast<double>(lanes_frame.payload.size()));
  }
  // Small frames (small tensors): sub_lanes' fixed cost (32 states, tables)
  // weighs more, and trying every codec costs little.
  const bool small = n <= 256 * 1024;
  if (base && (!lanes_ok || small || best_cost > 0.5 * n)) {
    tmp.resize(n);
    for (size_t i = 0; i < n; ++i) tmp[i] = out[i] ^ base[i];
    consider(Codec::xor_planes, planes_cost(tmp.data()));
    diff_words(out, base, n, dt, tmp);
    consider(Codec::sub_planes, planes_cost(tmp.data()));
    if (w == 2) {
      Split16 s;
      split16(reinterpret_cast<const uint16_t*>(tmp.data()), n / 2, s);
      consider(Codec::sub_split, entropy_bytes(s.h.data(), s.h.size()) + entropy_bytes(s.l0.data(), s.l0.size()) +
                                     entropy_bytes(s.l1.data(), s.l1.size()) + 8);
    }
  } else if (!base && w > 1) {
    consider(Codec::planes, planes_cost(out));
  }
  // Entropy cannot see repeats (zero padding, constant tensors): plain zstd
  // is taken when its order-0 estimate is already as good or the data is tiny.
  if (n < 4096 || w == 1) {
    consider(Codec::zstd, entropy_bytes(out, n));
  }
  EncodedFrame e = best == Codec::sub_lanes ? std::move(lanes_frame)
                                            : encode_frame_with(best, out, n, dt, base, opt.zstd_level);
  if (best != Codec::zstd) {
    // Byte-level repetition (e.g. all-zero tensors) beats any entropy model;
    // a cheap check on the winner keeps those cases optimal. sub_lanes codes
    // constant differences in almost nothing already, so after it only
    // poorly compressed frames are checked (the check costs ~10% of a build).
    if (e.payload.size() > (best == Codec::sub_lanes ? n / 2 : n / 8)) {
      EncodedFrame z = encode_frame_with(Codec::zstd, out, n, dt, nullptr, 1);
      if (z.payload.size() < e.payload.size()) e = std::move(z);
    }
  }
  if (base && (!lanes_ok || small)) {
    // 8-byte elements: sub_rans is the rANS codec that takes them; on small
    // frames its 16 bytes of states beat sub_lanes' 128, but it decodes ~8x
    // slower: against sub_lanes it must be opt.ctx_min_gain smaller too.
    EncodedFrame r = encode_frame_with(Codec::sub_rans, out, n, dt, base, 0);
    const double need = e.codec == Codec::sub_lanes ? 1.0 - opt.ctx_min_gain : 1.0;
    if (r.payload.size() < e.payload.size() * need) e = std::move(r);
  }
  // The context coder decodes ~50x slower than sub_lanes, so it must earn
  // its place. It pays off on conv kernels (its kernel predictor; measured on
  // YOLOv5n) and on small frames, which get a trial and must be
  // opt.ctx_min_gain smaller. Large frames that are not kernels (LLM
  // matrices) never take it: there it gained at most ~2% (often nothing: a
  // 32 KiB sample test sent 8% of a 1 GiB BF16 pair's frames to full trials,
  // all lost, for a third of the build time), not worth a 50x slower rebuild.
  constexpr size_t kCtxLargeFrame = 64 * 1024;
  if (base && opt.allow_ctx && (opt.layout.area > 1 || n <= kCtxLargeFrame)) {
    const double margin = opt.layout.area > 1 ? opt.ctx_min_gain : 2.5 * opt.ctx_min_gain;
    EncodedFrame c = encode_frame_with(Codec::sub_ctx, out, n, dt, base, 0, opt.layout);
    if (c.payload.size() < e.payload.size() * (1.0 - margin)) e = std::move(c);
  }
  if (e.payload.size() >= n) return encode_frame_with(Codec::store, out, n, dt, nullptr, 0);
  return e;
}

Status decode_frame(const Frame& f, const uint8_t* payload, const uint8_t* base_raw, uint8_t* out) {
  const size_t n = f.out_len;
  const size_t w = dtype_size(f.dtype);
  auto corrupt = [&](const char* why) { return Status{Errc::corrupt, std::string("payload does not decode: ") + why}; };
  // base_raw is B, the payload's extents concatenated (DeltaReader reads them).
  if (f.codec == Codec::patch) return decode_patch(f, payload, base_raw, out);
  if (f.codec == Codec::approx && !base_raw) return corrupt("approx frame without its base range");
  // Delta codecs need the base in the output's dtype.
  thread_local Scratch<uint8_t> conv;
  const uint8_t* base = base_raw;
  if (base_raw && f.base_dtype != f.dtype) {
    if (!convert_dtype(base_raw, f.base_dtype, n / w, f.dtype, conv.get(n)))
      return {Errc::corrupt, std::string("unsupported dtype conversion ") + dtype_name(f.base_dtype) + " -> " +
                                 dtype_name(f.dtype)};
    base = conv.data();
  }
  thread_local Scratch<uint8_t> scratch_buf;
  switch (f.codec) {
    case Codec::store:
      if (f.data_len != n) return corrupt("stored length differs");
      std::memcpy(out, payload, n);
      return Status::Ok();
    case Codec::zstd:
      return zstd_exact(payload, f.data_len, out, n) ? Status::Ok() : corrupt("zstd");
    case Codec::copy_base:
      if (f.data_len != 0) return corrupt("copy_base with a payload");
      std::memcpy(out, base, n);
      return Status::Ok();
    case Codec::planes:
      if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
      from_planes(scratch_buf.data(), n, w, out);
      return Status::Ok();
    case Codec::sub_ctx:
      return ctx_decode_any(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_ctx");
    case Codec::sub_rans:
      return rans::decode(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_rans");
    case Codec::sub_lanes:
      return lanes::decode(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_lanes");
    case Codec::approx:
      return decode_approx(payload, f.data_len, base, n, f.dtype, out);
    case Codec::xor_planes:
      if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
      from_planes(scratch_buf.data(), n, w, out);
      for (size_t i = 0; i < n; ++i) out[i] ^= base[i];
      return Status::Ok();
    case Codec::sub_planes:
    case Codec::sub_split: {
      // Rebuild the zigzagged differences into `out`, then add the base in place.
      if (f.codec == Codec::sub_planes) {
        if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
        from_planes(scratch_buf.data(), n, w, out);
      } else {
        if (w != 2 || f.data_len < 8) return corrupt("sub_split header");
        uint32_t ch = get_u32(payload), c0 = get_u32(payload + 4);
        if (static_cast<uint64_t>(ch) + c0 + 8 > f.data_len) return corrupt("sub_split stream lengths");
        size_t count = n / 2;
        uint8_t* hi = scratch_buf.get(count * 2);
        uint8_t* lo = hi + count;
        if (!zstd_exact(payload + 8, ch, hi, count)) return corrupt("sub_split high bytes");
        size_t zeros = 0;
        for (size_t i = 0; i < count; ++i) zeros += hi[i] == 0;
        if (!zstd_exact(payload + 8 + ch, c0, lo, zeros)) return corrupt("sub_split low bytes (small)");
        if (!zstd_exact(payload + 8 + ch + c0, f.data_len - 8 - ch - c0, lo + zeros, count - zeros))
          return corrupt("sub_split low bytes (large)");
        const uint8_t* l0 = lo;
        const uint8_t* l1 = lo + zeros;
        for (size_t i = 0; i < count; ++i) {
          uint8_t h = hi[i];
          out[2 * i] = h ? *l1++ : *l0++;
          out[2 * i + 1] = h;
        }
      }
      bool fl = dtype_is_float(f.dtype);
      size_t count = n / w;
      switch (w) {
        case 1: sub_inverse<uint8_t>(out, base, count, fl, out); break;
        case 2: {
          // In place: each element reads its own difference before writing.
          for (size_t i = 0; i < count; ++i) {
            uint16_t d = load<uint16_t>(out + 2 * i), b = load<uint16_t>(base + 2 * i);
            if (fl) b = f_ord(b);
            uint16_t a = uint16_t(b + unzigzag(d));
            store<uint16_t>(out + 2 * i, fl ? f_unord(a) : a);
          }
          break;
        }
        case 4: {
          for (size_t i = 0; i < count; ++i) {
            uint32_t d = load<uint32_t>(out + 4 * i), b = load<uint32_t>(base + 4 * i);
            if (fl) b = f_ord(b);
            uint32_t a = uint32_t(b + unzigzag(d));
            store<uint32_t>(out + 4 * i, fl ? f_unord(a) : a);
          }
          break;
        }
        default: {
          for (size_t i = 0; i < count; ++i) {
            uint64_t d = load<uint64_t>(out + 8 * i), b = load<uint64_t>(base + 8 * i);
            if (fl) b = f_ord(b);
            uint64_t a = uint64_t(b + unzigzag(d));
            store<uint64_t>(out + 8 * i, fl ? f_unord(a) : a);
          }
          break;
        }
      }
      return Status::Ok();
    }
  }
  return corrupt("unknown codec");
}

// ---- dtype conversion -----------------------------------------------------
namespace {
float bf16_to_f32(uint16_t h) { uint32_t u = uint32_t(h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
uint16_t f32_to_bf16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h) { _Float16 x; std::memcpy(&x, &h, 2); return static_cast<float>(x); }
uint16_t f32_to_f16(float f) { _Float16 x = static_cast<_Float16>(f); uint16_t h; std::memcpy(&h, &x, 2); return h; }
double read_as_double(const uint8_t* p, DType d) {
  switch (d) {
    case DType::F64: return load<double>(p);
    case DType::F32: return load<float>(p);
    case DType::F16: return f16_to_f32(load<uint16_t>(p));
    case DType::BF16: return bf16_to_f32(load<uint16_t>(p));
    default: return 0;
  }
}
bool is_conv(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }
}  // namespace

bool can_convert_dtype(DType from, DType to) { return is_conv(from) && is_conv(to); }

bool convert_dtype(const uint8_t* src, DType from, size_t n, DType to, uint8_t* dst) {
  if (!can_convert_dtype(from, to)) return false;
  size_t ws = dtype_size(from), wd = dtype_size(to);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = src + i * ws;
    uint8_t* d = dst + i * wd;
    switch (to) {
      case DType::F64: store<double>(d, read_as_double(s, from)); break;
      // Narrowing from F64 goes through float; a double rounding that only
      // affects the delta's size, never correctness (both sides use this).
      case DType::F32: store<float>(d, static_cast<float>(read_as_double(s, from))); break;
      case DType::F16: store<uint16_t>(d, f32_to_f16(static_cast<float>(read_as_double(s, from)))); break;
      case DType::BF16: store<uint16_t>(d, f32_to_bf16(static_cast<float>(read_as_double(s, from)))); break;
      default: return false;
    }
  }
  return true;
}

}  // namespace tenpak
