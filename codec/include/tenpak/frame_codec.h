// Encoding and decoding of one frame. A frame is at most 1 MiB of output;
// it decodes alone from its payload and (for delta codecs) one base range.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/format.h"

namespace tenpak {

struct EncodedFrame {
  Codec codec = Codec::store;
  std::string payload;
};

// Where a frame's elements sit in the kernels of their tensor, for the
// sub_ctx predictor: elements form kernels of `area` elements in rows of `kw`
// (a conv weight [co, ci, kh, kw] has area kh*kw), and the frame's first
// element is element `phase` of its kernel. A hint only: any value decodes
// (unusable ones, e.g. area > 255, mean "no kernel").
struct FrameLayout {
  uint32_t kw = 1, area = 1, phase = 0;
};

struct EncodeOptions {
  int zstd_level = 3;
  bool allow_ctx = true;       // consider the sub_ctx codec (smallest, slowest to decode)
  double ctx_min_gain = 0.02;  // take it only when this fraction smaller than the best faster codec (sub_lanes, zstd-based)
  FrameLayout layout;
};

// Chooses the smallest codec for `out` (n bytes of elements of type `dt`).
// `base` is null, or points at n bytes: the matched base range already
// converted to `dt`. The choice is made from entropy estimates of each
// candidate's streams, so only the winner is compressed.
EncodedFrame encode_frame(const uint8_t* out, size_t n, DType dt, const uint8_t* base, const EncodeOptions& opt);

// Encodes with one given codec (used by tests and benchmarks).
EncodedFrame encode_frame_with(Codec c, const uint8_t* out, size_t n, DType dt, const uint8_t* base, int level,
                              const FrameLayout& layout = {});

// Decodes into `out` (f.out_len bytes). `base_raw` holds f.base_len bytes of
// the base file in f.base_dtype (null when the codec takes no base).
// Does not check the hash: callers do (see FrameReader).
Status decode_frame(const Frame& f, const uint8_t* payload, const uint8_t* base_raw, uint8_t* out);

// Converts n elements from `from` to `to` (float types among F64, F32, F16,
// BF16; round to nearest even). Returns false if the pair is unsupported.
bool convert_dtype(const uint8_t* src, DType from, size_t n, DType to, uint8_t* dst);
bool can_convert_dtype(DType from, DType to);

}  // namespace tenpak
