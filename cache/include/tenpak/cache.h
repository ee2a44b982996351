// The block cache: a local store of verified byte blocks shared by every
// mount on the machine. It keeps rebuilt frames (keyed by their xxh3-128
// from the delta index, so identical frames of different fine-tunes are
// stored once) and fetched ranges of origin files (keyed by the origin
// file's identity, so many fine-tunes of one base fetch the base once).
//
// Contract for callers: the cache is an optimisation only. A miss, a corrupt
// entry or an unusable cache directory is never an error: get() says "miss"
// and the caller goes to the origin. Every value is checked when read; a
// value that fails its check is dropped and reported as a miss.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tenpak/block_source.h"
#include "tenpak/hash.h"

namespace tenpak {

struct CacheStats {
  uint64_t hits = 0, misses = 0, puts = 0, evictions = 0;
  uint64_t corrupt_dropped = 0;   // entries that failed their check when read
  uint64_t errors = 0;            // backend errors turned into misses
  uint64_t bytes_used = 0, bytes_limit = 0;
};

class BlockCache {
 public:
  virtual ~BlockCache() = default;
  // Copies the value stored under `key` into `out` when present, exactly
  // `len` bytes long and intact. Returns false on a miss (absent, wrong
  // length, corrupt: dropped, or backend failure). Thread-safe.
  virtual bool get(std::string_view key, size_t len, uint8_t* out) = 0;
  // Stores a value (best effort: failures are counted, never returned).
  virtual void put(std::string_view key, const uint8_t* data, size_t len) = 0;
  virtual CacheStats stats() const = 0;
};

// Key of a rebuilt frame: its output hash.
std::string frame_cache_key(const Xxh128& h);
