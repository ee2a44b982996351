// Internal to dataset/: the content hashes the builder's record matching and
// the Parquet page matching both use, so that both find the same anchors.
#pragma once

#include <cstdint>
#include <cstring>

namespace tenpak::dataset_internal {

inline uint64_t load64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

// A hash of the 16 bytes at p: two multiplies and a fold (a library hash
// call per byte position was a sixth of the build time).
inline uint64_t window16(const uint8_t* p) {
  uint64_t h = load64(p) * 0x9E3779B97F4A7C15ull ^ ((load64(p + 8) * 0xC2B2AE3D27D4EB4Full) >> 7);
  h ^= h >> 31;
  h *= 0x165667B19E3779F9ull;
  return h ^ (h >> 29);
}

}  // namespace tenpak::dataset_internal
