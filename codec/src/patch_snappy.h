// Codec 10, method bit 5 (snappy pages; docs/FORMAT.md "Snappy pages"):
// what the decoder (patch_decode.cc) and the encoder share. Private to
// codec/. The output is defined as bytes of snappy::Compress of Google's
// snappy 1.1.9/1.1.10 (the raw format, no framing); a library that writes
// other bytes makes the frame hash fail (an error, never wrong bytes).
#pragma once
#include <cstdint>
#include <vector>

#include "tenpak/patch_codec.h"

namespace tenpak::patch_detail {

// Where each extent's decompression starts in B: `starts` gets ext.size() + 1
// offsets (the last is B's length), from the streams' preambles alone, so
// that B's size is known and checked before anything is decompressed. False
// when a preamble is bad or B would exceed kMaxPatchBase.
bool snappy_layout(const std::vector<PatchExtent>& ext, const uint8_t* raw, std::vector<uint64_t>& starts);

// B of a snappy frame: every extent of `raw` (the extents' base bytes,
// concatenated in order) is one snappy raw-format stream, decompressed to
// b + starts[i]; every extent, read by a copy or not (docs/FORMAT.md). False
// when an extent is not a valid stream.
bool snappy_expand(const std::vector<PatchExtent>& ext, const uint8_t* raw, const std::vector<uint64_t>& starts,
                   uint8_t* b);

// The frame's output: inner[0, raw_len) as is, then snappy::Compress of
// inner[raw_len, inner_len), compressed straight into out (no copy but of a
// last block that might not fit). False unless that is exactly out_len bytes.
bool snappy_output(const uint8_t* inner, uint64_t inner_len, uint64_t raw_len, uint8_t* out, uint64_t out_len);

}  // namespace tenpak::patch_detail
