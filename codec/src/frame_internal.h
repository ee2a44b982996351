// The frame codecs' shared model (private to codec/): sub_ctx's context
// model and predictor, which its encoder (frame_encode.cc) and decoder
// (frame_decode.cc) must run identically.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "element_ops.h"
#include "range_coder.h"
#include "tenpak/frame_codec.h"

namespace tenpak::frame_detail {

using namespace elem;  // load/store, f_ord/f_unord, zigzag/unzigzag, bit_length

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

}  // namespace tenpak::frame_detail
