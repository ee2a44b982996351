// Codec 8, sub_rans: zigzag ulp differences against the base, split into a
// bit-length symbol (entropy coded with a static per-frame model and four
// interleaved rANS states) and the raw bits under the leading one.
// docs/FORMAT.md ("codec 8") is the normative description.
// Private to codec/: frame_decode.cc and frame_encode.cc dispatch here
// (rans_decode.cc, rans_encode.cc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tenpak/safetensors.h"

namespace tenpak::rans {

// Appends the sub_rans payload of `out` against `base` (both n bytes of
// elements of type dt, n a multiple of the element size) to `payload`.
void encode(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::string& payload);

// Decodes a sub_rans payload into `out` (n bytes). Returns false when the
// payload is corrupt (bad tables, truncated or over-long streams, final
// states wrong); never reads outside [payload, payload + len) or the n bytes
// of base, never writes outside the n bytes of out.
bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out);

}  // namespace tenpak::rans
