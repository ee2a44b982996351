// FrameService: the verified frames of every model of a mount, by global
// frame id (the frames of model i follow those of model i-1), served from
// the in-memory frame cache (FrameLru), by joining a rebuild in flight, or
// by reading them from the model's FrameSource, on the caller's thread or
// on worker threads fed by WorkQueues:
//   - in-flight de-duplication: readers of one frame wait on one read;
//   - readers first: a prefetch job only starts while no reader reads a
//     frame itself and no urgent job runs (on a machine with few cores,
//     speculative work must not slow down the bytes someone waits for), and
//     runs at a lower CPU priority (`prefetch_nice`);
//   - a prefetch that failed on an origin read (io) is read again by the
//     reader that joined it, once, with the source's own retries.
// Thread-safe. Knows nothing of files: ModelFs maps reads to frame ids.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frame_lru.h"
#include "frame_pool.h"
#include "tenpak/frame_source.h"
#include "work_queues.h"

namespace tenpak::fsi {

struct FrameServiceOptions {
  size_t frame_cache_bytes = 64u << 20;
  size_t spent_keep_bytes = 4u << 20;
  unsigned workers = 2;
  size_t prefetch_queue_frames = 256;
  int prefetch_nice = 5;
  bool trace_reads = false;                      // a log line per frame read
  std::function<void(const std::string&)> log;   // never null
  std::function<void(uint64_t)> on_job_taken;    // see FsOptions::on_job_taken
};

struct FrameServiceCounters {
  std::atomic<uint64_t> misses{0}, inflight_joins{0}, join_prefetch_hits{0};
  std::atomic<uint64_t> prefetch_issued{0}, prefetch_dropped{0}, prefetch_failed{0};
};

// Frames waiting on one read of a frame.
struct Inflight {
  bool done = false, prefetch = false;
  Status st;
  FramePtr data;
};

class FrameService {
 public:
  FrameService(std::vector<std::unique_ptr<FrameSource>> sources, FrameServiceOptions opt);
  // Cancels reads (cancel()), stops and joins the workers.
  ~FrameService();
  FrameService(const FrameService&) = delete;
  FrameService& operator=(const FrameService&) = delete;

  uint64_t frame_count() const { return total_frames_; }
  uint64_t first_gid(uint32_t model) const { return first_gid_[model]; }
  // (model, frame within it) of a global frame id.
  std::pair<uint32_t, uint32_t> locate(uint64_t gid) const;
  FrameSource& source(uint32_t model) { return *sources_[model]; }
  bool has_workers() const { return !workers_.empty(); }

  // The verified bytes of frame `gid`. Workers' kinds (prefetch, assist)
  // return at once (a null FramePtr) when the frame is cached or in flight.
  // `sparse_reread`: a demand read of a sparse re-read (PrefetchPlanner).
  Result<FramePtr> get(uint64_t gid, JobKind kind, bool sparse_reread = false);
  // Queues frames [g0, g1) for the workers (frames cached or in flight are
  // skipped), in the urgent line or the prefetch line (frames beyond its
  // bound are dropped, counted). False when frames were dropped or there
  // are no workers.
  bool enqueue(uint64_t g0, uint64_t g1, JobKind kind = JobKind::prefetch, bool urgent_line = false);
  // Ranges of frames put into one reply (see FrameLru::served).
  struct Served {
    uint64_t gid;
    uint32_t from, len;
  };
  void served(const std::vector<Served>& s);
  bool served_whole(uint64_t gid) const;
  // Waits until no job is queued or running.
  void drain();
  // Origin reads in progress fail at once, queued jobs are dropped, and no
  // read is retried from now on. Idempotent.
  void cancel();

  const FrameServiceCounters& counters() const { return c_; }
  const FrameLruCounters& lru_counters() const { return lru_.counters(); }
  // Bytes in the frame cache and in its spent list.
  std::pair<size_t, size_t> cache_bytes() const;
  // The chain's counters summed over every model's source.
  FrameSourceStats source_stats() const;

 private:
  void worker();
  double now_ms() const;
  void log(const std::string& l) const { opt_.log(l); }

  FrameServiceOptions opt_;
  std::vector<std::unique_ptr<FrameSource>> sources_;
  std::vector<uint64_t> first_gid_;
  uint64_t total_frames_ = 0;
  std::shared_ptr<FramePool> pool_;
  const std::chrono::steady_clock::time_point t_start_ = std::chrono::steady_clock::now();
  FrameServiceCounters c_;

  // All under mu_.
  mutable std::mutex mu_;
  std::condition_variable done_cv_;  // an in-flight read finished
  std::condition_variable work_cv_;  // queues changed / stopping
  std::condition_variable idle_cv_;  // queues drained
  FrameLru lru_;
  WorkQueues queues_;
  std::unordered_map<uint64_t, std::shared_ptr<Inflight>> inflight_;
  unsigned busy_workers_ = 0;
  unsigned demand_active_ = 0;  // reads done by readers themselves or for them (assist, urgent)
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tenpak::fsi
