// The TenPak delta format, version 1. docs/FORMAT.md is the normative text;
// this header mirrors it. A delta is a directory holding two files:
//   tenpak.idx  - the index (this structure, serialized)
//   tenpak.dat  - frame payloads, concatenated, addressed by the index
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/hash.h"
#include "tenpak/safetensors.h"
#include "tenpak/status.h"

namespace tenpak {

constexpr char kIndexFile[] = "tenpak.idx";
constexpr char kDataFile[] = "tenpak.dat";
constexpr uint32_t kFormatVersion = 1;

// Limits: anything larger is refused when parsing.
constexpr uint32_t kMaxFiles = 1u << 16;
constexpr uint32_t kMaxFrames = 1u << 26;
constexpr uint32_t kMaxNameLen = 4096;
constexpr uint32_t kMaxFrameOut = 1u << 20;          // 1 MiB of output per frame
constexpr uint32_t kMaxFramePayload = (1u << 20) + (1u << 16);  // zstd worst case fits
constexpr uint32_t kNoBase = 0xffffffffu;

enum class Codec : uint8_t {
  store = 0,        // payload is the output bytes
  zstd = 1,         // zstd(output)
  copy_base = 2,    // output == base range (after dtype conversion); empty payload
  xor_planes = 3,   // zstd(byte planes of (out XOR base))
  sub_planes = 4,   // zstd(byte planes of zigzag(ord(out) - ord(base)))
  planes = 5,       // zstd(byte planes of out), no base
  sub_split = 6,    // sub_planes, low-byte planes split by high-byte context
  sub_ctx = 7,      // zigzag ulp differences, adaptive binary range coder with contexts
  sub_rans = 8,     // zigzag ulp differences: bit length by static-model rANS, raw low bits
  sub_lanes = 9,    // as sub_rans, base-only contexts and 32 independent lanes (SIMD decode)
  patch = 10,       // ranges of one base file (listed in the payload) and literals (tenpak/patch_codec.h)
  approx = 11,      // LOSSY deltas: round(float32(base) + d), d rebuilt from the payload (tenpak/approx_codec.h)
  lowrank_lanes = 12,  // lossless: codec 11's low-rank prediction P, then sub_lanes' ulp residual against P (tenpak/lowrank_codec.h)
};
constexpr uint8_t kMaxCodec = 12;
const char* codec_name(Codec c);
// Codecs whose output is computed from a base range.
bool codec_needs_base(Codec c);

struct BaseFile {
  std::string name;     // relative path in the base model directory
  uint64_t size = 0;
  Sha256 sha256{};
};

struct OutFile {
  std::string name;     // relative path in the fine-tuned model directory
  uint64_t size = 0;
  Sha256 sha256{};
  uint32_t mode = 0644;
  uint32_t first_frame = 0;  // frames [first_frame, first_frame + frame_count)
  uint32_t frame_count = 0;
};

struct Frame {
  uint32_t file = 0;        // index into out_files
  uint64_t out_offset = 0;
  uint32_t out_len = 0;
  uint64_t data_offset = 0;  // into tenpak.dat
  uint32_t data_len = 0;
  Codec codec = Codec::store;
  DType dtype = DType::U8;       // element type of the output bytes
  DType base_dtype = DType::U8;  // element type of the base bytes
  uint32_t base_file = kNoBase;  // index into base_files, or kNoBase
  uint64_t base_offset = 0;
  uint32_t base_len = 0;
  Xxh128 hash{};             // xxh3-128 of the output bytes
};

constexpr uint32_t kMaxBaseLocations = 16;

struct Manifest {
  // Where the base model can be found, most preferred first: local paths,
  // http(s) URLs of the base directory, or hub ids (org/name[@revision]).
  // Mirrors of one base; may be empty (the user names the base).
  std::vector<std::string> base_locations;
  std::vector<BaseFile> base_files;
  std::vector<OutFile> out_files;
  std::vector<Frame> frames;     // grouped by file, ascending out_offset
  // A lossy delta's record of what it loses (docs/FORMAT.md, "Lossy deltas":
  // UTF-8 JSON, read by tenpak/lossy_info.h), carried by a compact index
  // with flag kIndexRecord; empty when the index has none. This layer only
  // stores and bounds it; its content is checked by its readers.
  std::string lossy_record;
};

std::string serialize_manifest(const Manifest& m);
// tenpak.idx flags (docs/FORMAT.md, "Compact index"). Version-1 readers that
// predate them refuse any non-zero flags, so a compact index is never misread.
constexpr uint32_t kIndexCompact = 1;   // records in the compact body (varints, implied offsets)
constexpr uint32_t kIndexBodyZstd = 2;  // that body is one zstd frame (only with kIndexCompact)
constexpr uint32_t kIndexRecord = 4;    // the body ends with a lossy record (only with kIndexCompact)
constexpr uint32_t kMaxLossyRecord = 1u << 16;  // its largest length in bytes
// The same manifest as a compact index: the records that follow from others
// (a frame's file and out_offset, a base range's length) are left out, the
// rest written as LEB128 and the body zstd-compressed when `zstd` (level 19).
// Needs frames grouped by file in file order (first_frame = the frames of the
// files before it) and frames without a base to have base_offset = base_len
// = 0, as TenPak's builders write them; an error otherwise. A non-empty
// m.lossy_record is written after the frame hashes (flag kIndexRecord);
// the version-1 layout (serialize_manifest) has no place for it.
Result<std::string> serialize_manifest_compact(const Manifest& m, bool zstd = true);
// Parses and validates: limits, frames tile every file exactly, names are
// safe relative paths (no "..", no absolute paths, no empty components),
// codec/dtype/base references are in range. `what` names the file in errors.
Result<Manifest> parse_manifest(const uint8_t* p, size_t n, const std::string& what);
// The fixed head of an index (magic, version, flags, counts).
constexpr size_t kIndexHeadSize = 32;
// From the first kIndexHeadSize bytes of an index of `size` bytes: the
// magic, version and counts checked, and `size` no larger than those counts
// allow (every name at its longest); an error otherwise. Lets a reader
// bound what it reads from an origin before trusting it.
Status check_index_head(const uint8_t* head, size_t n, uint64_t size, const std::string& what);

// True for a relative path without "..", ".", empty components, NUL or a leading "/".
bool is_safe_relative_path(const std::string& s);

}  // namespace tenpak
