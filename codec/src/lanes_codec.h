// Codec 9, sub_lanes: zigzag ulp differences against the base, split into a
// bit-length symbol and the raw bits under the leading one (as codec 8), with
// a model chosen for data-parallel decoding: the symbol's context is the
// base element's exponent bucket only (no dependency on earlier elements),
// and element i belongs to lane i mod 32, each lane with its own rANS state
// and its own raw-bit buffer. 16 or 32 consecutive elements then decode as
// one SIMD step. docs/FORMAT.md ("codec 9") is the normative description.
// Private to codec/: frame_decode.cc and frame_encode.cc dispatch here
// (the files implementing it: lanes_internal.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tenpak/safetensors.h"

namespace tenpak::lanes {

// Element widths the codec takes: 1, 2 and 4 bytes (not 8: a raw field could
// then exceed the 32-bit refill unit).
bool supports(DType dt);

// Implementations. All implement docs/FORMAT.md; encoders give the same
// bytes, decoders the same bytes and the same verdict on every input (tests
// compare them).
//   avx512: 16 lanes per instruction (AVX-512 F, BW, VL, DQ; the encoder
//           also CD), 2- and 4-byte elements;
//   avx2:   8 lanes per instruction (AVX2, BMI1/2, POPCNT), 2- and 4-byte
//           elements, for CPUs without AVX-512 (AMD Zen 2/3, Intel client);
//   scalar: the portable loops; every path ends with them (other widths and
//           the elements past the last whole group of 32);
//   best:   avx512 if the CPU has it, else avx2 if it has that, else scalar;
//           TENPAK_SIMD=avx2 or =scalar caps it (measuring other CPUs' paths
//           here, or stepping around a SIMD path).
enum class Path { best, avx512, avx2, scalar };

// Appends the sub_lanes payload of `out` against `base` (both n bytes of
// elements of type dt, n a multiple of the element size, supports(dt)).
// `path` picks the implementation; one the CPU lacks runs as scalar.
void encode(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::string& payload,
            Path path = Path::best);

// Whether this CPU can run `p` (best and scalar: always).
bool path_available(Path p);

// The path `best` stands for on this CPU.
Path best_path();

// Decodes a sub_lanes payload into `out` (n bytes). Returns false when the
// payload is corrupt (bad tables, truncated or over-long streams, final
// states wrong, non-zero padding); never reads outside [payload, payload +
// len) or the n bytes of base, never writes outside the n bytes of out.
// `path` picks the implementation (tests compare them); one the CPU lacks
// (!path_available) runs as scalar.
bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out,
            Path path = Path::best);

}  // namespace tenpak::lanes
