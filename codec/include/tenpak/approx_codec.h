// Codec 11 (approx): a frame rebuilt as round_to_dtype(float32(base) + d),
// where d is an approximation of the fine-tune's change carried by the
// payload (sparse entries, sign and scale, or low-rank factors). This is how
// lossy deltas are stored: the rebuilt bytes are NOT the fine-tune's, but
// they are exactly defined by docs/FORMAT.md ("Codec 11"), so every reader
// (mount, apply, verify, tests/golden/spec_decode.py) rebuilds the same
// bytes, whose hash and sha256 the index records.
//
// Contract: decoding is plain C++ in float32 with no fused multiply-add
// (approx_decode.cc, approx_encode.cc: -ffp-contract=off) and a fixed order of
// operations, so the output is bit-identical on every conforming machine.
// Encoding (tenpak-ml's lossy builder) chooses what to keep; any payload
// that parses decodes, and the frame hash says whether it is the one meant.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/format.h"
#include "tenpak/status.h"

namespace tenpak {

// Sub-method byte of a codec-11 payload (docs/FORMAT.md).
enum class ApproxMethod : uint8_t {
  sparse = 0,   // positions and float32 values; d = 0 elsewhere
  sign = 1,     // one bit per element: d = -scale or +scale
  lowrank = 2,  // d = U·V over the frame's rows, factors float32 or quantized per component
  grouped = 3,  // one code per element on a uniform grid, a float16 scale per (row, column group)
  grouped_rc = 4,  // grouped's grid and scales, LEB128 header, codes by codec 7's adaptive range coder
};

// One 2-D tensor's approximated change, for encoding its frames. Element e
// of the tensor is row e / cols, column e % cols (row-major).
struct ApproxTensor {
  ApproxMethod method = ApproxMethod::sparse;
  uint64_t rows = 0, cols = 0;
  // sparse: ascending element indices into the tensor and their values.
  std::vector<uint64_t> pos;
  std::vector<float> val;
  // sign: one scale; negative[e] != 0 makes element e's change -scale.
  float scale = 0;
  std::vector<uint8_t> negative;
  // lowrank: u is rows x rank, v is rank x cols (both row-major, float32);
  // bits[j] is how component j's column of U and row of V are stored:
  // 0 = float32, 16 = float16, 2..8 = that many bits per value with one float32 scale
  // per stored vector (U's column over a frame's rows; V's row).
  uint32_t rank = 0;
  std::vector<float> u, v;
  std::vector<uint8_t> bits;
  // grouped, grouped_rc: codes[e] in 0 .. 2^qbits - 1 (qbits 1..8), d = scale × (code − zero2 / 2)
  // (zero2 ≤ 2·(2^qbits − 1); zero2 = 2^qbits − 1 is the grid without a zero
  // level, zero2 even one with 0 on it) with the scale of element e's row and
  // column group: group = 0: `scales` holds one scale for the whole tensor;
  // else groups of `group` consecutive columns, `scales` rows × ceil(cols /
  // group), row-major. Scales are stored as float16: each must be a finite
  // float16 value (the encoder refuses others, so the decoder's d is exactly
  // the caller's).
  uint8_t qbits = 0, zero2 = 0;
  uint32_t group = 0;
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

// The codec-11 payload of the frame holding tensor elements
// [first, first + count). zstd_level > 0: the body is zstd-compressed when
// that is smaller.
Result<std::string> encode_approx_frame(const ApproxTensor& t, uint64_t first, uint64_t count, int zstd_level);

// Decodes a codec-11 payload into `out` (n bytes of dtype dt; F32, F16 or
// BF16) from `base` (n bytes of the same dtype). Errc::corrupt when the
// payload breaks any rule of docs/FORMAT.md.
Status decode_approx(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out);

// The value a b-bit code q stands for with scale s (b in 2..8): s × (q − (2^b − 1)/2),
// in float32 (both factors exact, one rounding). Shared by encoder and decoder.
float approx_dequant(float s, uint32_t q, unsigned b);
// grouped: s × (q − zero2 / 2) in float32 (q − zero2/2 exact, one rounding).
float approx_grid_value(float s, uint32_t q, unsigned zero2);

}  // namespace tenpak
