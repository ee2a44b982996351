#include "prefetch_planner.h"

#include <algorithm>

namespace tenpak::fsi {

PrefetchPlanner::PrefetchPlanner(uint64_t window_bytes, uint64_t frame_cache_bytes, bool enabled)
    : max_window_(std::max<uint64_t>(1, std::min<uint64_t>(window_bytes, frame_cache_bytes / 4))), enabled_(enabled) {}

PrefetchPlan PrefetchPlanner::plan(SeqState& s, const ReadSeen& r) const {
  PrefetchPlan p;
  const bool reread = r.len < kShortRead && r.first_served_whole && r.first_served_whole();
  std::lock_guard lk(s.mu);
  if (reread && r.off != s.next_off) {
    s.next_off = r.off + r.len;
    s.ahead_to = r.end;  // a reader that goes on from here is planned from here
    p.sparse_reread = true;
    return p;
  }
  if (!enabled_) return p;
  const uint64_t off = r.off, len = r.len;
  const bool header = off == 0 && r.safetensors;
  const bool sequential = s.next_off != UINT64_MAX && off + kSlack >= s.next_off && off <= s.next_off + kSlack;
  // A jump: frames requested ahead of the old position say nothing about
  // this one (a second pass from the start must be prefetched again; a
  // read at 0 is one, also in a file shorter than kSlack).
  if (!sequential || off == 0) s.ahead_to = r.end;
  if (header) s.window = max_window_;
  else if (sequential) s.window = std::min<uint64_t>(max_window_, s.window ? s.window * 2 : (2u << 20));
  else s.window = 0;  // far seek: read only what is asked
  s.next_off = sequential ? std::max(s.next_off, off + len) : off + len;
  if (s.window == 0) return p;  // (ahead_to was reset above: no window means a jump)
  const uint64_t end = std::min<uint64_t>(r.file_size, off + len + s.window);
  const uint32_t to = end > off + len ? r.frames_end(off + len, end - off - len) : r.end;
  const uint32_t from = std::max(s.ahead_to, r.end);
  if (to <= from) return p;
  s.ahead_to = to;
  p.from = from;
  p.to = to;
  return p;
}

}  // namespace tenpak::fsi
