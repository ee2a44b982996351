// WorkQueues: the frames waiting for the frame service's worker threads, in
// two lines: `urgent` (frames a reader waits for, or the start of a file
// just opened) before `prefetch` (guesses ahead of a sequential reader). A
// frame is in at most one line, once. Not thread-safe: the frame service
// calls it under its own lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>

namespace tenpak::fsi {

// Who rebuilds a frame: a reader (demand), a worker ahead of a reader
// (prefetch: speculative), or a worker on behalf of a reader that needs the
// frame now (assist: demand work done in parallel).
enum class JobKind { demand, prefetch, assist };

class WorkQueues {
 public:
  // At most `max_prefetch` frames wait in the prefetch line.
  explicit WorkQueues(size_t max_prefetch) : max_prefetch_(max_prefetch) {}

  enum class Push { queued, already, full };
  // Queues frame `gid` as `kind`, in the urgent line or the prefetch line.
  // A frame already queued: with `urgent_line` it takes the new kind, and
  // moves to the urgent line when it waited as a prefetch (a reader now
  // needs it); otherwise nothing changes. `full`: the prefetch line is full
  // (nothing queued).
  Push push(uint64_t gid, JobKind kind, bool urgent_line);
  // Drops frame `gid` from the lines; false when it was not queued.
  bool remove(uint64_t gid);
  struct Job {
    uint64_t gid;
    JobKind kind;
    bool urgent;
  };
  // The next job: the urgent line first; the prefetch line only when
  // `prefetch_allowed`. nullopt when there is none to take.
  std::optional<Job> pop(bool prefetch_allowed);
  bool has_work(bool prefetch_allowed) const { return !urgent_.empty() || (prefetch_allowed && !prefetch_.empty()); }
  bool empty() const { return urgent_.empty() && prefetch_.empty(); }
  bool contains(uint64_t gid) const { return kind_.count(gid) != 0; }
  void clear();

 private:
  const size_t max_prefetch_;
  std::deque<uint64_t> urgent_, prefetch_;
  std::unordered_map<uint64_t, JobKind> kind_;  // frames in either line
};

}  // namespace tenpak::fsi
