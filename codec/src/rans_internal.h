// Codec 8 (sub_rans): the model its encoder (rans_encode.cc) and decoder
// (rans_decode.cc) share (private to codec/).
#pragma once
#include <cstddef>
#include <cstdint>

#include "element_ops.h"
#include "rans_codec.h"

namespace tenpak::rans::detail {

using namespace elem;  // load/store, f_ord/f_unord, zigzag/unzigzag, bit_length

constexpr int kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;  // every table's frequencies sum to this
constexpr uint32_t kLow = 1u << 16;            // states live in [kLow, 2^32)
constexpr int kMaxCtx = 40;
constexpr int kMaxSym = 65;

// Contexts and symbols per element width (symbols: bit lengths 0..8w).
inline int num_ctx(size_t w) { return w == 1 ? 16 : w == 2 ? 24 : kMaxCtx; }
inline int num_sym(size_t w) { return static_cast<int>(8 * w) + 1; }

// Exponent buckets (Expo, expo, bucket): element_ops.h.
// The context of an element with bucket q, and the update after it.
inline int context(int avg, int q, int nc) {
  int c = ((avg + 4) >> 3) - q + 4;
  return c < 0 ? 0 : (c >= nc ? nc - 1 : c);
}
inline int next_avg(int avg, int k, int q) { return (7 * avg + 8 * (k + q) + 4) >> 3; }

}  // namespace tenpak::rans::detail
