// FrameLru: the mount's in-memory frame cache, LRU by bytes, and what the
// daemon knows of the kernel's page cache.
//
// Frames whose every byte has gone out in replies are in the kernel's page
// cache now, so only a re-read after the kernel dropped them would ask
// again. Keeping them up to the cache limit made a sequential read cycle
// through the whole limit of slot memory (each new frame took the slot of
// one served tens of MiB before): the daemon's resident memory was the
// cache limit plus the rest, for nothing. So they move to a short list of
// their own ("spent", at most `spent_keep_bytes`), evicted first; the cache
// limit is left to frames not yet (fully) read: prefetched ones and those a
// reader takes in parts.
//
// served_whole(gid): the frame's bytes are in the kernel's page cache as
// far as the daemon knows (served whole, or rebuilt for a sparse re-read and
// served) since a reader or the queues last asked for it. A worker that
// took a job before a reader rebuilt the frame itself may get to it only
// after the frame was served and evicted: it then skips it instead of
// rebuilding it for nobody. A short read of such a frame is a page the
// kernel dropped (PrefetchPlanner).
//
// Not thread-safe: the frame service calls it under its own lock (the
// counters are atomic so that they can be read without it). Frames are
// kept alive by FramePtr: evicting one never frees bytes a reply still holds.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frame_pool.h"

namespace tenpak::fsi {

struct FrameLruCounters {
  std::atomic<uint64_t> hits{0};             // use() found the frame
  std::atomic<uint64_t> prefetch_hits{0};    // ... and it was prefetched and not used before
  std::atomic<uint64_t> evictions{0};        // dropped at the cache limit
  std::atomic<uint64_t> spent_evictions{0};  // dropped from the spent list
  std::atomic<uint64_t> prefetch_wasted{0};  // prefetched, evicted unused
};

class FrameLru {
 public:
  // `limit_bytes` bounds the footprint of cached frames (one frame stays
  // even when larger); `frames` is the number of global frame ids.
  FrameLru(size_t limit_bytes, size_t spent_keep_bytes, uint64_t frames);

  bool contains(uint64_t gid) const { return map_.count(gid) != 0; }
  // The frame, without touching it or counting (null when absent).
  FramePtr peek(uint64_t gid) const;
  // The frame for a reader: most recent in its list, counted as a hit (and
  // a prefetch hit when prefetched and unused till now), marked used. Null
  // when absent (nothing counted).
  FramePtr use(uint64_t gid);
  // A reader got the frame another thread rebuilt: marks it used (no hit).
  void mark_used(uint64_t gid);
  // Adds a frame (no-op when present). `prefetched`: rebuilt speculatively
  // (unused until use()); `reread`: rebuilt for a sparse re-read of a frame
  // served whole, so it goes to the spent list once any byte is served.
  // Evicts least recent frames, spent ones first, down to the limit.
  void insert(uint64_t gid, FramePtr data, bool prefetched, bool reread = false);
  // Bytes [from, from+n) of frame `gid` went into a reply. Ranges are
  // merged (a range served twice does not make a frame served whole); a
  // frame served whole moves to the spent list and becomes served_whole.
  void served(uint64_t gid, uint32_t from, uint32_t n);

  bool served_whole(uint64_t gid) const { return served_whole_[gid]; }
  void set_served_whole(uint64_t gid, bool v) { served_whole_[gid] = v; }

  size_t bytes() const { return bytes_; }
  size_t spent_bytes() const { return spent_bytes_; }
  size_t size() const { return map_.size(); }
  const FrameLruCounters& counters() const { return c_; }

 private:
  struct Entry {
    FramePtr data;
    std::list<uint64_t>::iterator pos;  // in `lru_`, or in `spent_` once spent
    // Byte ranges put into replies, sorted, disjoint (a frame is served by
    // a few requests: these lists stay short).
    std::vector<std::pair<uint32_t, uint32_t>> served;
    bool prefetched = false, used = false, spent = false;
    // Rebuilt for a sparse re-read: the kernel dropped some of its pages and
    // asks for those; the rest it still holds. Once any byte of it is served
    // it leaves first, like a frame served whole (keeping it for the pages
    // the kernel holds would fill the cache for nothing). A few recent ones
    // stay in the spent list for the next dropped page of the same frame.
    bool reread = false;
  };
  void evict(bool from_spent);
  void make_spent(uint64_t gid, Entry& e);

  const size_t limit_, spent_keep_;
  std::unordered_map<uint64_t, Entry> map_;
  std::list<uint64_t> lru_, spent_;  // front: most recent
  size_t bytes_ = 0, spent_bytes_ = 0;
  std::vector<bool> served_whole_;
  FrameLruCounters c_;
};

}  // namespace tenpak::fsi
