// Codec 11 (approx): the payload limits its encoder (approx_encode.cc) and
// decoder (approx_decode.cc) share (private to codec/). tenpak/approx_codec.h
// states the contract; docs/FORMAT.md ("Codec 11") the format.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tenpak::approx_detail {

constexpr size_t kHead = 6;                    // method, flags, u32 raw_len
constexpr uint32_t kMaxBody = 64u << 20;       // raw body limit (a bound for readers' memory)
constexpr uint32_t kMaxRank = 65535;

inline bool valid_bits(uint8_t b) { return b == 0 || b == 16 || (b >= 2 && b <= 8); }

// grouped_rc (sub-method 4, docs/FORMAT.md): the class of a code on the grid
// s × (q − z2/2): 0 below zero, 1 at zero, 2 above.
inline unsigned grid_class(uint32_t q, unsigned zero2) { return 2 * q < zero2 ? 0u : 2 * q == zero2 ? 1u : 2u; }
// The context of element i (row-major position t = skip + i of the frame's
// sub-matrix) from the classes of the codes already coded: its left
// neighbour in the same row and the element above it in the frame (class 1
// where there is none). One of 9 contexts, each with 2^b − 1 binary nodes.
inline unsigned grouped_rc_context(const uint8_t* cls, uint64_t i, uint64_t t, uint64_t cols) {
  const unsigned left = (t % cols != 0 && i > 0) ? cls[i - 1] : 1u;
  const unsigned up = i >= cols ? cls[i - cols] : 1u;
  return 3 * left + up;
}

}  // namespace tenpak::approx_detail
