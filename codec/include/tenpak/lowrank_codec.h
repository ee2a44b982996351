// Codec 12 (lowrank_lanes): LOSSLESS frames of a tensor whose change is
// low-rank (a merged LoRA adapter: W' = round(W + B·A)). The payload holds a
// prediction and a correction, both from codecs that exist:
//   P   = codec 11's low-rank reconstruction round_dtype(float32(base) + U·V)
//         over the frame's rows (a codec-11 payload, method 2, verbatim);
//   out = P corrected by the ulp residual zigzag(ord(out) - ord(P)), coded
//         as codec 9 (sub_lanes) with P as its base.
// Whatever the factors are, the output is the fine-tune's bytes exactly: the
// residual absorbs the difference between P and how the merge was rounded
// (another summation order, FMA, another precision). docs/FORMAT.md
// ("Codec 12") is the normative text.
//
// Contract: decoding adds no float arithmetic of its own; P is computed by
// decode_approx (float32, fixed order, no FMA), so every reader rebuilds the
// same bytes. The encoder finds the factors without libtorch (randomized
// range finder + modified Gram-Schmidt in double, Jacobi on a small Gram
// matrix) and chooses the rank by coded size; any factors decode exactly.
#pragma once
#include <cstdint>
#include <string>

#include "tenpak/approx_codec.h"
#include "tenpak/format.h"
#include "tenpak/status.h"

namespace tenpak {

// Decodes a codec-12 payload into `out` (n bytes of dtype dt: F32, F16 or
// BF16) from `base` (n bytes, already converted to dt). Errc::corrupt when
// the payload breaks any rule of docs/FORMAT.md (those of its codec-11 and
// codec-9 parts included).
Status decode_lowrank(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out);

// ---- encoder (tenpak_codec_encode) -----------------------------------------

struct LowRankOptions {
  uint32_t max_rank = 64;       // never more components than this
  double min_energy = 0.9;      // pretest: the span of max-rank + 8 sampled rows must hold this share of other rows' energy
  double min_gain = 0.02;       // keep the factors only when the tensor codes this fraction smaller than sub_lanes alone
  uint32_t power_iters = 1;     // power iterations of the range finder
  uint64_t max_elements = uint64_t(1) << 26;  // larger tensors are not tried (the factorisation holds the change in memory)
  int zstd_level = 3;           // for the codec-11 part (kept raw when zstd is not smaller)
  uint64_t frame_elements = 0;  // elements per frame the builder will cut (for the cost of V per frame); 0: 1 MiB worth
};

// The factors chosen for one rows x cols tensor (row-major). t.rank == 0:
// no low-rank model pays (why says which rule refused it).
struct LowRankFactors {
  ApproxTensor t;  // method lowrank; u rows x rank, v rank x cols; bits all 0 (float32), 16 (float16), 8 or 4
  std::string why;
  double est_bytes = 0;        // estimated codec-12 size of the tensor
  double est_lanes_bytes = 0;  // estimated sub_lanes size of the tensor (rank 0)
  std::vector<double> sigma;   // singular values found (largest first)
};

// Looks for a low-rank model of ft - base (both rows x cols elements of dt,
// F32/F16/BF16; base already in dt). Deterministic (fixed seeds).
LowRankFactors find_lowrank_factors(const uint8_t* ft, const uint8_t* base, uint64_t rows, uint64_t cols, DType dt,
                                    const LowRankOptions& opt = {});

// The codec-12 payload of tensor elements [first, first + n / size(dt)):
// `out` and `base` point at that frame's n bytes (base in dt).
Result<std::string> encode_lowrank_frame(const LowRankFactors& f, uint64_t first, const uint8_t* out,
                                         const uint8_t* base, size_t n, DType dt, int zstd_level);

}  // namespace tenpak
