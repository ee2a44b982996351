// A caching decorator: a BlockSource that serves aligned blocks of an origin
// from a BlockCache and fetches the misses from the origin (storing them).
//
// - A miss, a corrupt entry or a broken cache is never an error: the origin
//   answers. Only the origin's errors are returned.
// - Concurrent misses of one block cost one origin read (in-flight requests
//   are collapsed); adjacent missing blocks of one read are fetched with one
//   origin read (one HTTP range request).
// - The cache checks its own values, but it cannot know whether the origin
//   sent the right bytes: a caller that finds bytes wrong (a frame whose xxh3
//   does not match) must call invalidate() on the ranges it used (base range
//   and delta payload range), then read again; the next read goes to the
//   origin and replaces the cached blocks. Or read_uncached() directly.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tenpak/block_source.h"
#include "tenpak/cache.h"

namespace tenpak {

struct CachedSourceStats {
  uint64_t block_hits = 0, block_misses = 0;
  uint64_t origin_reads = 0, origin_bytes = 0;  // reads sent to the origin and their bytes
  uint64_t collapsed = 0;                       // block misses served by another thread's fetch
  uint64_t invalidated = 0;                     // blocks dropped by invalidate()
};

class CachedSource : public BlockSource {
 public:
  // Drops every cached block overlapping [offset, offset+len): the next read
  // of them goes to the origin.
  void invalidate(uint64_t offset, size_t len) override = 0;
  // Reads the covering blocks from the origin, bypassing the cache, and
  // stores them (replacing what the cache held).
  virtual Status read_uncached(uint64_t offset, size_t len, uint8_t* dst) = 0;
  virtual CachedSourceStats cache_stats() const = 0;
  virtual BlockSource& origin() = 0;
};

// `identity` names the origin's content: blocks of two sources with the same
// identity are shared (e.g. the sha256 hex the delta records for a base file,
// so every fine-tune of one base shares its blocks). Use a validator that
// changes with the content (HttpSource::validator(), source_identity()) when
// no content hash is known. `cache` may be null (then: no caching).
std::unique_ptr<CachedSource> wrap_with_cache(std::unique_ptr<BlockSource> origin, std::shared_ptr<BlockCache> cache,
                                              std::string identity, size_t block = 1u << 20);

// An identity for a source without a known content hash: for HTTP origins
// "url|size|etag", for local files "path|size|mtime_ns|inode".
std::string source_identity(const BlockSource& src);

}  // namespace tenpak
