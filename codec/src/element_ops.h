// Element transforms shared by the frame codecs (private to tenpak_codec).
// docs/FORMAT.md ("ord", "zigzag") is the normative description.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

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

// Little-endian u32 fields of payload headers.
inline void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
inline uint32_t get_u32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }

}  // namespace tenpak::elem
