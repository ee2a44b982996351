// Element transforms shared by the frame codecs (private to tenpak_codec).
// docs/FORMAT.md ("ord", "zigzag") is the normative description.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "tenpak/safetensors.h"

namespace tenpak::elem {

template <class U> U load(const uint8_t* p) { U v; std::memcpy(&v, p, sizeof(U)); return v; }
template <class U> void store(uint8_t* p, U v) { std::memcpy(p, &v, sizeof(U)); }

// Monotone map of a float bit pattern onto unsigned integers, so that the
// difference of two mapped values counts ulps between them.
template <class U> U f_ord(U x) {
  constexpr U sign = U(1) << (sizeof(U) * 8 - 1);
  return (x & sign) ? U(~x) : U(x | sign);
}
template <class U> U f_unord(U y) {
  constexpr U sign = U(1) << (sizeof(U) * 8 - 1);
  return (y & sign) ? U(y & ~sign) : U(~y);
}
template <class U> U zigzag(U d) {
  using S = std::make_signed_t<U>;
  return U((d << 1) ^ U(S(d) >> (sizeof(U) * 8 - 1)));
}
template <class U> U unzigzag(U z) { return U((z >> 1) ^ U(-(z & 1))); }
inline int bit_length(uint64_t z) { return z ? 64 - __builtin_clzll(z) : 0; }

// Exponent bucket of a base element (codecs 8 and 9, docs/FORMAT.md): the
// exponent field (b >> shift) & mask, minus off, clamped to 0..31. Integers
// have mask 0: every element in bucket 0.
struct Expo {
  int shift = 0;
  uint64_t mask = 0;
  int off = 0;
};
inline Expo expo(DType dt) {
  switch (dt) {
    case DType::F16: return {10, 31, 0};
    case DType::BF16: return {7, 0xff, 104};
    case DType::F32: return {23, 0xff, 104};
    case DType::F64: return {52, 0x7ff, 1000};
    case DType::F8_E4M3: return {3, 15, 0};
    case DType::F8_E5M2: return {2, 31, 0};
    default: return {};
  }
}
inline int bucket(uint64_t b, const Expo& e) {
  int v = static_cast<int>((b >> e.shift) & e.mask) - e.off;
  return v < 0 ? 0 : (v > 31 ? 31 : v);
}

// Little-endian u32 fields of payload headers.
inline void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
inline uint32_t get_u32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }

// Calls f.template operator()<U, FloatLike>() for dt: U the unsigned
// integer of dt's width (1, 2, 4 or, if MaxBytes allows, 8 bytes), FloatLike
// whether dt is a float type; returns what f returns, or `otherwise` for a
// width f is not made for. One place for the element-type dispatch of the
// codecs' encode/decode entry points.
template <size_t MaxBytes, class R, class F>
R with_element_type(DType dt, R otherwise, F&& f) {
  const bool fl = dtype_is_float(dt);
  auto go = [&]<class U>() -> R { return fl ? f.template operator()<U, true>() : f.template operator()<U, false>(); };
  switch (dtype_size(dt)) {
    case 1: return go.template operator()<uint8_t>();
    case 2: return go.template operator()<uint16_t>();
    case 4: return go.template operator()<uint32_t>();
    case 8:
      if constexpr (MaxBytes >= 8) return go.template operator()<uint64_t>();
      return otherwise;
    default: return otherwise;
  }
}

}  // namespace tenpak::elem
