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

}  // namespace tenpak::approx_detail
