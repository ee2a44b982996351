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
#include <functional>
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
  uint64_t quarantined = 0;       // damaged environments set aside (LMDB: data.mdb renamed, started empty)
  uint64_t bytes_used = 0, bytes_limit = 0;
};

class BlockCache {
 public:
  virtual ~BlockCache() = default;
  // Copies the value stored under `key` into `out` when present, exactly
  // `len` bytes long and intact. Returns false on a miss (absent, wrong
  // length, corrupt: dropped, or backend failure); `out` may have been
  // written then. Thread-safe.
  virtual bool get(std::string_view key, size_t len, uint8_t* out) = 0;
  // Stores a value (best effort: failures are counted, never returned).
  virtual void put(std::string_view key, const uint8_t* data, size_t len) = 0;
  virtual CacheStats stats() const = 0;
  // Drops the value under `key` if present (best effort). Used when a caller
  // found that bytes served from the cache were wrong (frame hash mismatch).
  virtual void erase(std::string_view key) {}
  // Whether a value is stored under `key` (not checked, not copied, no LRU
  // touch: a cheap test before queuing a fetch). False when unsure.
  virtual bool contains(std::string_view key) { return false; }
  // False for a cache that stores nothing (unusable directory, disabled).
  virtual bool usable() const { return true; }
  // What backs the cache, for logs and metrics (e.g. "lmdb:/root/.cache/tenpak").
  virtual std::string describe() const { return "cache"; }
};

// Key of a rebuilt frame: its output hash.
std::string frame_cache_key(const Xxh128& h);

// Key of an aligned block of an origin file: `identity` names the file's
// content (e.g. the sha256 hex a delta records for a base file, or an HTTP
// validator "url|size|etag"), `block` the block size, `index` the block.
std::string block_cache_key(std::string_view identity, size_t block, uint64_t index);

struct CacheOptions {
  // Called once with a human message when the cache degrades to no cache
  // (directory unusable, corrupt environment, disk full). Default: stderr.
  std::function<void(const std::string&)> warn;
  // Sync data (not meta) at every commit: a process crash (kill -9) never
  // loses committed entries either way; with false, an OS crash may lose
  // recent entries or leave a damaged environment, which the next open
  // finds and quarantines (values are checked on read regardless). Off by
  // default: a sync per put measured 6.4 ms (64 KiB values: 10 MB/s
  // against 800 MB/s without; 1 MiB values: 98 against 230-740 MB/s), which
  // would make storing slower than a 1 Gbit/s origin.
  bool sync = false;
};

// The LMDB cache in directory `dir` (created if missing; files data.mdb and
// lock.mdb), holding at most `size_limit` bytes of values, least recently
// used evicted first (access times are recorded lazily, in batches). Several
// processes and threads may use one directory at once. Never fails: a
// directory that cannot be used gives a cache that stores nothing
// (usable() == false) after one warning. A damaged environment (truncated
// data.mdb, a damaged page: checked at open and before each value is used)
// never crashes the process: it is set aside as DIR/damaged-data.mdb
// (lock.mdb removed), warned about and counted (CacheStats::quarantined);
// found at open, the cache starts empty; found later, this process goes on
// without cache and the next opener starts empty.
std::shared_ptr<BlockCache> open_lmdb_cache(const std::string& dir, uint64_t size_limit, const CacheOptions& opt = {});

// The most data.mdb may grow to for a size limit (the LMDB map size): the
// limit plus room for B-tree pages, copy-on-write and fragmentation of
// free pages. A put that finds the map full evicts, it never grows it.
uint64_t lmdb_file_bound(uint64_t size_limit);

// What an LMDB cache directory holds (for `tenpak cache stats`).
struct LmdbCacheInfo {
  uint64_t entries = 0;     // values stored (blocks and frames)
  uint64_t bytes_used = 0;  // bytes of values, as counted against the limit
  uint64_t file_bytes = 0;  // size of data.mdb (never shrinks; freed pages are reused)
};
// Errc::corrupt (naming the damage) for a damaged environment.
Result<LmdbCacheInfo> inspect_lmdb_cache(const std::string& dir);
// Drops every entry in one transaction: safe while other processes use the
// cache (they see an empty cache). A damaged environment, which LMDB cannot
// be trusted to walk, is removed instead (data.mdb, lock.mdb) and replaced
// by an empty one; a quarantined damaged-data.mdb is removed too.
Status clear_lmdb_cache(const std::string& dir);

// A process-local cache in memory (tests, or when no directory is wanted).
std::shared_ptr<BlockCache> make_memory_cache(uint64_t size_limit);
// A cache that stores nothing.
std::shared_ptr<BlockCache> make_null_cache(std::string why = "disabled");

// $TENPAK_CACHE_DIR, else $XDG_CACHE_HOME/tenpak, else $HOME/.cache/tenpak
// (else /tmp/tenpak-cache-UID).
std::string default_cache_dir();
constexpr uint64_t kDefaultCacheSize = 20ull << 30;

// Parses "10G", "512M", "1.5GiB", "1000000" into bytes.
Result<uint64_t> parse_size(const std::string& s);

}  // namespace tenpak
