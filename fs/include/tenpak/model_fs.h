// ModelFs: the mounted view of one or more deltas, as a plain C++ object.
//
// It owns the inode table (stable: the same catalog always gives the same
// inodes), answers lookup/getattr/readdir/read, and rebuilds only the frames
// a read touches, through a frame service with
//   - a bounded in-memory frame cache (LRU by bytes),
//   - in-flight de-duplication (readers of one frame wait on one rebuild),
//   - a bounded prefetcher: after a .safetensors header is read (a read at
//     offset 0) and while a reader goes on sequentially, the frames ahead of
//     it (up to `prefetch_window_bytes`) are rebuilt in ascending order by
//     worker threads; a far seek rebuilds only what it reads,
//   - readers first: the frames a read needs beyond its first are rebuilt
//     by the workers in parallel; speculative prefetch waits while a reader
//     rebuilds and runs at a lower CPU priority; opening a file starts the
//     rebuild of its first bytes (the safetensors header and first tensor),
//   - retries of rebuilds that failed on an origin read (io, unavailable) or
//     gave bytes that fail the frame's hash (corrupt: DeltaReader already
//     rebuilt them once more from the origins, dropping cached copies; bytes
//     corrupted in transit, or by an origin for a while, heal on a later
//     fetch, e.g. with --no-cache) before an error is returned.
// Every frame served was checked against its xxh3-128 from the index
// (DeltaReader::read_frame, or the persistent cache's decorator for its
// hits): bytes that cannot be verified are never returned.
//
// The parts, each in fs/src/ with its own tests: InodeTable (the tree),
// FramePool/FrameBuf (frame memory), FrameLru (the in-memory frame cache
// and served ranges), WorkQueues (the workers' two lines), PrefetchPlanner
// (what to rebuild ahead), FrameService (in-flight de-duplication, workers,
// readers first), delta_frames/retry_frames (a delta's frames as a
// FrameSource, and retries). ModelFs maps files to frames and counts.
//
// Knows nothing of FUSE: fs/src/fuse_mount.cc adapts it, tests drive it
// directly. Not-found and not-a-directory are answered with std::nullopt
// (normal outcomes); failed reads with a Status (always logged and counted
// by cause). Thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tenpak/delta_reader.h"
#include "tenpak/format.h"
#include "tenpak/frame_source.h"
#include "tenpak/lossy_info.h"
#include "tenpak/status.h"

namespace tenpak {

struct FsOptions {
  size_t frame_cache_bytes = 64u << 20;     // in-memory frame cache (LRU by bytes)
  // Of it, frames already served whole (every byte in a reply: the kernel
  // caches them now) are kept only up to this many bytes, and evicted first.
  size_t spent_keep_bytes = 4u << 20;
  size_t prefetch_window_bytes = 16u << 20;  // rebuilt ahead of a sequential reader; capped at cache/4
  unsigned prefetch_workers = 2;             // background rebuild threads (0: no prefetch)
  size_t prefetch_queue_frames = 256;        // pending prefetch requests beyond this are dropped
  int prefetch_nice = 5;                     // nice value of speculative prefetch work (0: same as readers)
  // First open of a file: rebuild its first frame and the frames of this
  // many bytes after it in the background (0: off). A loader reads the
  // safetensors header, then the first tensor; the kernel turns a read of
  // its first MiB into requests of up to max_read (1 MiB) that reach up to
  // 1 MiB further, and replies come only when a whole request is rebuilt.
  uint64_t open_hint_bytes = (2u << 20) + 4096;
  // warm_heads() (called once the mount is up) rebuilds the head of every
  // file (its first frame and open_hint_bytes after it: what opening a
  // model waits for) in the background, up to this many bytes in all
  // (capped at frame_cache_bytes / 4; 0: off). A loader that starts after
  // the mount then finds its first reads in memory.
  uint64_t warm_bytes = 16u << 20;
  unsigned retries = 3;                      // extra attempts of a frame rebuild that failed with Errc::io, unavailable or corrupt
  unsigned retry_delay_ms = 20;              // first back-off, doubled each attempt
  // Decorates each model's frame source (already wrapped in the retries
  // above) before the frame service reads from it: how a persistent frame
  // cache (cache/frame_cache.h: cache_frames) is put in, and which frames it
  // stores is its own policy. Null: the frames as the delta rebuilds them.
  std::function<std::unique_ptr<FrameSource>(std::unique_ptr<FrameSource>)> wrap_frames;
  // Log every read request (offset, length) of a model file (debugging).
  bool trace_reads = false;
  // One line per event (errors, retries). Null: stderr.
  std::function<void(const std::string&)> log;
  // For tests: called on a worker thread with the global frame id of a job
  // it has just taken off a queue, before it starts it (no lock held). Lets
  // a test hold a worker between the two, where a reader can overtake it.
  std::function<void(uint64_t)> on_job_taken;
};

// One model of the mount: its delta reader (bases attached) shown at `dir`
// (a safe relative path; "" puts the model's files at the root).
struct FsModel {
  std::string dir;
  std::unique_ptr<DeltaReader> reader;
  // A lossy delta's recorded quality (its side file, tenpak/lossy_info.h),
  // shown in stats.json; nullopt: none read (a lossy delta's quality unknown).
  std::optional<LossyInfo> lossy;
};

struct FsAttr {
  uint64_t ino = 0;
  bool is_dir = false;
  uint64_t size = 0;
  uint32_t mode = 0;   // permission bits only
  uint32_t nlink = 1;
};

struct FsDirEntry {
  std::string name;
  FsAttr attr;
};

// Upper bounds (seconds) of the frame rebuild latency histogram buckets;
// one more bucket (+Inf) follows.
inline constexpr double kRebuildLatencyBuckets[] = {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                    0.025,   0.05,   0.1,   0.25,   0.5,   1.0};
inline constexpr size_t kRebuildLatencyBucketCount = sizeof(kRebuildLatencyBuckets) / sizeof(double);

// Counters since the mount started. Errors are counted per cause, once per
// failed read request; rebuild attempts that failed and were retried are
// counted in `retries`.
struct FsStats {
  uint64_t reads = 0, bytes_served = 0;
  uint64_t frames_rebuilt = 0, bytes_rebuilt = 0;
  uint64_t cache_hits = 0, cache_misses = 0, cache_evictions = 0;  // evictions: at the cache limit
  // Frames served whole dropped from the short list they move to
  // (FsOptions::spent_keep_bytes), and that list's bytes (within cache_bytes).
  uint64_t spent_evictions = 0, spent_bytes = 0;
  uint64_t cache_bytes = 0, cache_limit = 0;
  uint64_t inflight_joins = 0;
  uint64_t prefetch_issued = 0, prefetch_hits = 0, prefetch_wasted = 0, prefetch_dropped = 0, prefetch_failed = 0;
  // Short reads (< 128 KiB) of frames already served whole, not contiguous
  // with the file's last read: pages the kernel dropped, asked for again one
  // by one. They plan no prefetch (the frames around them are still in the
  // page cache), and the frames rebuilt for them leave the cache first.
  uint64_t sparse_rereads = 0;
  uint64_t persistent_hits = 0, persistent_rejected = 0;
  // Rebuilt frames put into the persistent cache / left out by the policy
  // (its FrameCachePolicy); both 0 without a persistent cache.
  uint64_t persistent_stored = 0, persistent_skipped = 0;
  uint64_t retries = 0, retried_ok = 0;
  uint64_t errors_io = 0, errors_corrupt = 0, errors_base_missing = 0, errors_other = 0;
  uint64_t rss_bytes = 0, peak_rss_bytes = 0;
  // Bytes this process read from local base files and from local delta
  // data files (tenpak.dat), by path (local_read_stats()).
  uint64_t base_direct_bytes = 0, base_page_cache_bytes = 0;
  uint64_t delta_data_direct_bytes = 0, delta_data_page_cache_bytes = 0;
  // Latency of every frame rebuilt from the origins (frames_rebuilt of
  // them; retries included, persistent-cache hits not): cumulative counts
  // per bucket of kRebuildLatencyBuckets (Prometheus style), their sum.
  uint64_t rebuild_latency_buckets[kRebuildLatencyBucketCount] = {};
  uint64_t rebuild_latency_count = 0;
  double rebuild_latency_sum_s = 0;
};

// One row per counter of FsStats: where stats.json shows it and, when it
// is exported, its Prometheus metric. stats.json (and so `tenpak stats`)
// and the exporter's tenpak_fs_* metrics are generated from this table:
// a counter is added here once.
struct FsCounter {
  const char* group;  // the stats.json object holding it ("" = the top level)
  const char* key;    // its key there
  // The metric tenpak_fs_<prom>; a labelled family spells its label
  // ("errors_total{cause=\"io\"}"), its rows adjacent. Null: stats.json only.
  const char* prom;
  const char* type;  // Prometheus type: "counter" or "gauge"
  const char* help;
  uint64_t FsStats::*field;
};
// The table, in stats.json order.
const std::vector<FsCounter>& fs_counters();

class ModelFs {
 public:
  static constexpr uint64_t kRootIno = 1;
  // Name of the hidden control directory at the root (not listed by
  // readdir; lookup finds it) holding `stats.json`.
  static constexpr const char* kControlDir = ".tenpak";
  static constexpr const char* kStatsFile = "stats.json";
  // stats.json is padded with spaces to exactly this size, so its size is
  // stable between stat() and read().
  static constexpr size_t kStatsFileSize = 8192;

  // Builds the tree. Fails on a path conflict between models (a file of one
  // where another needs a directory) or a bad model dir.
  static Result<std::unique_ptr<ModelFs>> create(std::vector<FsModel> models, FsOptions opt);
  ~ModelFs();
  ModelFs(const ModelFs&) = delete;
  ModelFs& operator=(const ModelFs&) = delete;

  std::optional<FsAttr> lookup(uint64_t parent, std::string_view name) const;
  std::optional<FsAttr> getattr(uint64_t ino) const;
  // Entries of a directory, sorted by name; nullopt when `ino` is not a directory.
  std::optional<std::vector<FsDirEntry>> readdir(uint64_t ino) const;
  // True for the control file (served uncached by the adapter).
  bool is_control_file(uint64_t ino) const;

  // A piece of a read reply: `len` bytes at `data`, kept alive by `owner`.
  struct Slice {
    std::shared_ptr<const void> owner;
    const uint8_t* data = nullptr;
    size_t len = 0;
  };
  // Bytes [off, off+len) of file `ino` (fewer at the end of the file, none
  // past it) as slices of verified frames. Errors (after retries) are
  // logged with file, offset and cause, and counted.
  Result<std::vector<Slice>> read_slices(uint64_t ino, uint64_t off, size_t len);
  // Same, copied into `dst`; returns the number of bytes read.
  Result<size_t> read(uint64_t ino, uint64_t off, size_t len, uint8_t* dst);
  // A file was opened: on its first open, starts rebuilding its first frame
  // and FsOptions::open_hint_bytes after it in the background, so the reads
  // that follow (a safetensors header, the first tensor) find them ready or
  // in flight. Cheap; never fails.
  void opened(uint64_t ino);
  // Queues the heads of the files (see FsOptions::warm_bytes), in inode
  // order, as low-priority prefetch work; returns the bytes of the heads
  // queued (0 without prefetch workers; stops when the prefetch queue is
  // full). Cheap; never fails; frames already cached or in flight are skipped.
  uint64_t warm_heads();

  FsStats stats() const;
  std::string stats_json() const;  // the content of stats.json (unpadded)

  // Waits until no prefetch work is queued or running (tests, benchmarks).
  void drain_prefetch();

  // The file system is going away (the FUSE session is ending): origin reads
  // in progress, on readers' threads or the workers', fail at once instead
  // of waiting out a stalled origin, and no read is retried. Every later
  // read of an origin fails too. Idempotent; the destructor calls it first.
  void cancel_reads();

  struct Impl;

 private:
  explicit ModelFs(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenpak
