// Codec 10, patch: a frame rebuilt from ranges of one base file and new
// bytes (docs/FORMAT.md, "Codec 10"). Dataset deltas use it for records
// copied or edited from the base and for content-defined chunks found in it;
// the mount decodes it through DeltaReader like every other codec.
//
// The payload lists the base ranges it reads (extents); their concatenation,
// B, is the only base input. Output = a sequence of ops, each some literal
// bytes followed by a copy of a range of B. The literal stream may be zstd
// compressed with B as a raw-content prefix (long-range matches against the
// base ranges cost a few bytes), so new text resembling the base is cheap,
// or word-coded (method bit 4 or 6: a token model primed from B; new records
// of near i.i.d. words, which LZ codes well above their entropy).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/format.h"
#include "tenpak/status.h"

namespace tenpak {

constexpr uint32_t kMaxPatchExtents = 4096;
constexpr uint32_t kMaxPatchBase = 4u << 20;  // sum of extent lengths (|B|)
// Fewer literal bytes are never word-coded by encode_patch(words = 1): little
// to gain, and the decoder would still prime the model from up to 256 KiB of B.
constexpr uint32_t kWordsMinLiterals = 16u << 10;

struct PatchExtent {
  uint64_t offset = 0;  // in the frame's base file
  uint32_t len = 0;
};

// Snappy pages (method bit 5, docs/FORMAT.md "Snappy pages"): every extent
// is one snappy raw-format stream and B is their decompressions; the ops and
// literals describe inner_len bytes, and the frame's output is their first
// raw_len bytes, then snappy::Compress of the rest (a Parquet page: its
// header, then its compressed body).
struct PatchSnappy {
  uint32_t inner_len = 0, raw_len = 0;
};

struct PatchOp {
  uint32_t lit = 0;    // literal bytes first
  uint64_t src = 0;    // then a copy of B[src, src + copy)
  uint32_t copy = 0;
};

// The extents a patch payload reads (validated: count, lengths, the sum).
// `f` supplies the span every extent must lie in.
Result<std::vector<PatchExtent>> patch_extents(const Frame& f, const uint8_t* payload);

// Decodes a patch frame: `b` holds B (the extents' bytes, concatenated, in
// order; null when there are none). Does not check the frame hash.
Status decode_patch(const Frame& f, const uint8_t* payload, const uint8_t* b, uint8_t* out);

// decode_patch for a caller that already holds a snappy page frame's B
// decompressed: `bx` (bx_len bytes) must be what decompressing the extents
// in `b` gives, concatenated in order; bx_len is checked against the
// streams' preambles, the decompression itself is not redone. The same
// output and every other check as decode_patch (frames without method bit 5
// ignore bx). For the builder's check of a frame it just encoded from that
// B (it decompressed the extents to encode); readers use decode_patch,
// which decompresses and checks every extent.
Status decode_patch_expanded(const Frame& f, const uint8_t* payload, const uint8_t* b, const uint8_t* bx,
                             uint64_t bx_len, uint8_t* out);

// Encodes ops and literals over extents. `level` <= 0 stores both streams
// raw (decodable without zstd; golden files). `b` is B; with `prefix` the
// literal stream is compressed with B as its prefix (smaller when the
// literals resemble B; costs time in proportion to |B| at high levels).
// `line_ops`: 0 counts every copy in bytes; 1 counts copies that are whole
// lines of B in lines (method bit 3: deleted or re-ordered records cost a
// line count, not a byte offset); 2 writes whichever op stream is smaller.
// `words`: 0 never word-codes the literals; 1 word-codes them (method bit 4:
// tokens coded by an adaptive model primed from B, or bit 6: by a static
// one, kept when at most 5% larger than bit 4's, for its faster rebuild)
// when that is 10% smaller than zstd, saves at least 1% of the frame's size
// and there are at least kWordsMinLiterals of them; 2 always with bit 4, 3
// always with bit 6 (tests, golden files).
// `snappy`: a snappy page frame (above); `b` is then the decompressed B.
std::string encode_patch(const std::vector<PatchExtent>& ext, const std::vector<PatchOp>& ops,
                         const std::string& literals, const uint8_t* b, size_t b_len, int level, bool prefix = true,
                         int line_ops = 0, int words = 0, const PatchSnappy* snappy = nullptr);

// `p` (an encode_patch payload) over other extents and ops that describe the
// same output from a B that reads the same at every copy: the literal stream
// kept as stored, the op stream re-coded in bytes (zstd at the level
// encode_patch's rule gives it for `level`). Only where B's content beyond
// the copies does not matter: empty when `p` has method bit 2, 3, 4 or 6
// (literal prefix, line ops, word sample) or is malformed. The builder uses
// it to drop extents no copy reads without compressing the literals again.
std::string patch_with_extents(const std::string& p, const std::vector<PatchExtent>& ext,
                               const std::vector<PatchOp>& ops, int level);

}  // namespace tenpak
