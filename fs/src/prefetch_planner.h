// PrefetchPlanner: which frames to rebuild ahead of a reader, from the
// reads of one file so far. Pure policy: it queues nothing itself.
//
// - A read at offset 0 of a .safetensors file (its header) opens the full
//   window; reads that go on sequentially (within `kSlack` of the last one:
//   kernel readahead requests of one window arrive out of order across FUSE
//   threads) grow it, doubling from 2 MiB; a far seek closes it (read only
//   what is asked).
// - A short read (< kShortRead) of a frame already served whole, not
//   contiguous with the file's last read, means the kernel dropped some of
//   its pages. When the file was read before and the kernel then let a few
//   scattered pages go, a reader passing over it again asks for just those:
//   short requests with gaps between them (readahead skips the pages still
//   cached), which look sequential within kSlack. Prefetching then would
//   rebuild frames whose bytes the kernel still holds. So such a read is a
//   sparse re-read and plans nothing (and the frames rebuilt for it leave the
//   frame cache first: FrameLru). A re-read of a file the kernel dropped as
//   a whole asks for contiguous, growing requests: it is planned as usual
//   from its second request on (also when its first request looked sparse).
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>

namespace tenpak::fsi {

// Sequential-reader tracking of one file.
struct SeqState {
  std::mutex mu;                   // held by the planner; callers need not
  uint64_t next_off = UINT64_MAX;  // end of the last read (UINT64_MAX: none yet)
  bool opened = false;             // opened at least once (the open hint was given)
  uint64_t window = 0;             // bytes to keep rebuilt ahead; 0 after a far seek
  uint32_t ahead_to = 0;           // frames below this were already requested
};

// One demand read of a file, as the planner sees it.
struct ReadSeen {
  uint64_t off = 0, len = 0;   // the bytes read
  uint64_t file_size = 0;
  bool safetensors = false;    // the file's name ends in .safetensors
  uint32_t first = 0, end = 0;  // its frames [first, end) (indices within the file's delta)
  // Whether the first frame was served whole already; asked only for a
  // short read (len < kShortRead).
  std::function<bool()> first_served_whole;
  // The end of the frames covering [off, off+len) (frames_for(...).second).
  std::function<uint32_t(uint64_t off, uint64_t len)> frames_end;
};

struct PrefetchPlan {
  bool sparse_reread = false;  // a sparse re-read: nothing planned
  uint32_t from = 0, to = 0;   // frames to queue as prefetch (empty when from >= to)
};

class PrefetchPlanner {
 public:
  static constexpr uint64_t kShortRead = 128u << 10;
  static constexpr uint64_t kSlack = 4u << 20;
  // The window is capped at a quarter of the frame cache (at least 1 byte);
  // `enabled` false (no workers): only sparse re-reads are told apart.
  PrefetchPlanner(uint64_t window_bytes, uint64_t frame_cache_bytes, bool enabled);
  PrefetchPlan plan(SeqState& s, const ReadSeen& r) const;
  uint64_t max_window() const { return max_window_; }

 private:
  uint64_t max_window_;
  bool enabled_;
};

}  // namespace tenpak::fsi
