#include "work_queues.h"

#include <algorithm>

namespace tenpak::fsi {

WorkQueues::Push WorkQueues::push(uint64_t gid, JobKind kind, bool urgent_line) {
  auto q = kind_.find(gid);
  if (q != kind_.end()) {
    if (!urgent_line) return Push::already;
    if (q->second == JobKind::prefetch) {
      auto it = std::find(prefetch_.begin(), prefetch_.end(), gid);
      if (it != prefetch_.end()) {
        prefetch_.erase(it);
        urgent_.push_back(gid);
      }
    }
    q->second = kind;
    return Push::already;
  }
  if (urgent_line) {
    urgent_.push_back(gid);
  } else {
    if (prefetch_.size() >= max_prefetch_) return Push::full;
    prefetch_.push_back(gid);
  }
  kind_.emplace(gid, kind);
  return Push::queued;
}

bool WorkQueues::remove(uint64_t gid) {
  auto q = kind_.find(gid);
  if (q == kind_.end()) return false;
  for (auto* d : {&urgent_, &prefetch_})
    if (auto it = std::find(d->begin(), d->end(), gid); it != d->end()) {
      d->erase(it);
      break;
    }
  kind_.erase(q);
  return true;
}

std::optional<WorkQueues::Job> WorkQueues::pop(bool prefetch_allowed) {
  const bool urgent = !urgent_.empty();
  if (!urgent && (!prefetch_allowed || prefetch_.empty())) return std::nullopt;
  std::deque<uint64_t>& d = urgent ? urgent_ : prefetch_;
  Job j{d.front(), JobKind::prefetch, urgent};
  d.pop_front();
  if (auto it = kind_.find(j.gid); it != kind_.end()) {
    j.kind = it->second;
    kind_.erase(it);
  }
  return j;
}

void WorkQueues::clear() {
  urgent_.clear();
  prefetch_.clear();
  kind_.clear();
}

}  // namespace tenpak::fsi
