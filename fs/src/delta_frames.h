// The frames of a DeltaReader as a FrameSource, and the retry decorator the
// mount puts around it (below any persistent frame cache).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tenpak/delta_reader.h"
#include "tenpak/frame_source.h"
#include "tenpak/model_fs.h"

namespace tenpak::fsi {

// Frame k of the reader: DeltaReader::read_frame(_in) (which checks the
// hash and, on a mismatch, rebuilds once more from the origins with cached
// copies dropped). The reader must outlive the source.
std::unique_ptr<FrameSource> delta_frames(DeltaReader& reader);

// Counters of frames read from the origins through retrying sources
// (several sources may share one).
struct RebuildCounters {
  std::atomic<uint64_t> frames{0}, bytes{0};  // frames read successfully and their bytes
  std::atomic<uint64_t> retries{0}, retried_ok{0};
  // Latency of each successful read, retries included: per-bucket (not
  // cumulative) counts of kRebuildLatencyBuckets, the last one +Inf; the
  // sum in nanoseconds.
  std::atomic<uint64_t> hist[kRebuildLatencyBucketCount + 1] = {};
  std::atomic<uint64_t> sum_ns{0};
  void record(std::chrono::steady_clock::duration d);
};

struct RetryOptions {
  unsigned retries = 3;         // extra attempts after an io or corrupt error
  unsigned retry_delay_ms = 20;  // first back-off, doubled each attempt
  std::function<void(const std::string&)> log;  // one line per retry; never null
};

// Reads that fail with Errc::io (an origin read failed) or Errc::corrupt
// (wrong bytes even after the inner source's own second attempt: bytes
// flipped in transit or served wrong for a while heal on a later fetch) are
// tried again, up to `retries` more times with back-off; other errors (a
// missing base) do not heal by waiting and are returned at once. After
// cancel() nothing is retried. Counts into `counters`.
std::unique_ptr<FrameSource> retry_frames(std::unique_ptr<FrameSource> inner, RetryOptions opt,
                                          std::shared_ptr<RebuildCounters> counters);

}  // namespace tenpak::fsi
