// Codec 10, method bit 5 (snappy pages): B from snappy-compressed extents and
// the re-compressed output. patch_snappy.h states the contract.
#include "patch_snappy.h"

#include <snappy.h>

#include <cstring>

#include "tenpak/scratch.h"

namespace tenpak::patch_detail {

bool snappy_expand(const std::vector<PatchExtent>& ext, const uint8_t* raw, std::vector<uint8_t>& b, uint64_t& n) {
  // Lengths first (each stream's preamble), so that B's size is checked
  // before anything is allocated or written.
  uint64_t total = 0, at = 0;
  for (auto& e : ext) {
    size_t len = 0;
    if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(raw + at), e.len, &len)) return false;
    total += len;
    if (total > kMaxPatchBase) return false;
    at += e.len;
  }
  if (b.size() < total) b.resize(total);
  at = 0;
  uint64_t pos = 0;
  for (auto& e : ext) {
    size_t len = 0;
    snappy::GetUncompressedLength(reinterpret_cast<const char*>(raw + at), e.len, &len);
    // RawUncompress checks every copy and literal against the stream and the
    // preamble's length: corrupt input returns false, it never reads or
    // writes outside the buffers.
    if (!snappy::RawUncompress(reinterpret_cast<const char*>(raw + at), e.len, reinterpret_cast<char*>(b.data() + pos)))
      return false;
    pos += len;
    at += e.len;
  }
  n = total;
  return true;
}

bool snappy_output(const uint8_t* inner, uint64_t inner_len, uint64_t raw_len, uint8_t* out, uint64_t out_len) {
  if (raw_len > inner_len || raw_len > out_len) return false;
  thread_local Scratch<char> z;
  const size_t cap = snappy::MaxCompressedLength(inner_len - raw_len);
  size_t zn = 0;
  snappy::RawCompress(reinterpret_cast<const char*>(inner + raw_len), inner_len - raw_len, z.get(cap), &zn);
  if (raw_len + zn != out_len) return false;
  std::memmove(out, inner, raw_len);
  std::memcpy(out + raw_len, z.data(), zn);
  return true;
}

}  // namespace tenpak::patch_detail
