// Frame encoding (tenpak_codec_encode, never linked by the mount): the
// choice of codec from entropy estimates, and every codec's encoder. The
// decoders are in frame_decode.cc.
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "frame_internal.h"
#include "lanes_codec.h"
#include "rans_codec.h"
#include "tenpak/frame_codec.h"

namespace tenpak {
namespace {

using namespace frame_detail;

// One compression context per thread: creating one per call costs more
// than compressing a small frame.
ZSTD_CCtx* cctx() {
  thread_local struct C { ZSTD_CCtx* c = ZSTD_createCCtx(); ~C() { ZSTD_freeCCtx(c); } } t;
  return t.c;
}

void zstd_append(std::string& dst, const uint8_t* src, size_t n, int level) {
  size_t cap = ZSTD_compressBound(n);
  size_t old = dst.size();
  dst.resize(old + cap);
  size_t r = ZSTD_compressCCtx(cctx(), dst.data() + old, cap, src, n, level);
  if (ZSTD_isError(r)) { dst.resize(old); dst.append(reinterpret_cast<const char*>(src), n); return; }
  dst.resize(old + r);
}

// d[i] = zigzag(ord(out[i]) - ord(base[i])) (ord = identity for integers)
template <class U>
void sub_forward(const uint8_t* out, const uint8_t* base, size_t count, bool is_float, U* d) {
  for (size_t i = 0; i < count; ++i) {
    U a = load<U>(out + i * sizeof(U)), b = load<U>(base + i * sizeof(U));
    if (is_float) { a = f_ord(a); b = f_ord(b); }
    d[i] = zigzag(U(a - b));
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

void ctx_encode_any(const uint8_t* out, const uint8_t* base, size_t n, DType dt, const CtxParams& p, std::string& payload) {
  switch (dtype_size(dt)) {
    case 1: ctx_encode<uint8_t>(out, base, n, dt, p, payload); break;
    case 2: ctx_encode<uint16_t>(out, base, n / 2, dt, p, payload); break;
    case 4: ctx_encode<uint32_t>(out, base, n / 4, dt, p, payload); break;
    default: ctx_encode<uint64_t>(out, base, n / 8, dt, p, payload); break;
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
    // These need more than the frame's bytes (extents, an approximation,
    // a tensor's factors): their own encoders (tenpak/patch_codec.h,
    // approx_codec.h, lowrank_codec.h) write them; here they fall back to store.
    case Codec::patch:
    case Codec::approx:
    case Codec::lowrank_lanes:
      return encode_frame_with(Codec::store, out, n, dt, nullptr, 0);
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

}  // namespace tenpak
