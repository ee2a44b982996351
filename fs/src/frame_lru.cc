#include "frame_lru.h"

#include <algorithm>
#include <iterator>

namespace tenpak::fsi {

FrameLru::FrameLru(size_t limit_bytes, size_t spent_keep_bytes, uint64_t frames)
    : limit_(limit_bytes), spent_keep_(spent_keep_bytes), served_whole_(frames, false) {}

FramePtr FrameLru::peek(uint64_t gid) const {
  auto it = map_.find(gid);
  return it == map_.end() ? FramePtr() : it->second.data;
}

FramePtr FrameLru::use(uint64_t gid) {
  auto it = map_.find(gid);
  if (it == map_.end()) return FramePtr();
  Entry& e = it->second;
  std::list<uint64_t>& l = e.spent ? spent_ : lru_;
  l.splice(l.begin(), l, e.pos);
  c_.hits++;
  if (e.prefetched && !e.used) c_.prefetch_hits++;
  e.used = true;
  return e.data;
}

void FrameLru::mark_used(uint64_t gid) {
  auto it = map_.find(gid);
  if (it != map_.end()) it->second.used = true;
}

void FrameLru::insert(uint64_t gid, FramePtr data, bool prefetched, bool reread) {
  if (map_.count(gid)) return;
  lru_.push_front(gid);
  Entry e;
  e.data = data;
  e.pos = lru_.begin();
  e.prefetched = prefetched;
  e.reread = reread;
  e.used = !prefetched;
  bytes_ += data->footprint();
  map_.emplace(gid, std::move(e));
  while (bytes_ > limit_ && (!spent_.empty() || lru_.size() > 1)) evict(!spent_.empty());
}

void FrameLru::evict(bool from_spent) {
  std::list<uint64_t>& l = from_spent ? spent_ : lru_;
  auto vit = map_.find(l.back());
  const size_t fp = vit->second.data->footprint();
  if (vit->second.prefetched && !vit->second.used) c_.prefetch_wasted++;
  bytes_ -= fp;
  if (from_spent) spent_bytes_ -= fp;
  map_.erase(vit);
  l.pop_back();
  (from_spent ? c_.spent_evictions : c_.evictions)++;
}

void FrameLru::served(uint64_t gid, uint32_t from, uint32_t n) {
  auto it = map_.find(gid);
  if (it == map_.end()) return;  // evicted meanwhile (its reply holds it)
  Entry& e = it->second;
  if (e.spent) return;
  if (e.reread) {
    make_spent(gid, e);
    return;
  }
  uint32_t a = from, b = from + n;
  auto& v = e.served;
  auto i = std::lower_bound(v.begin(), v.end(), std::pair<uint32_t, uint32_t>{a, 0});
  if (i != v.begin() && std::prev(i)->second >= a) --i;
  auto j = i;
  while (j != v.end() && j->first <= b) {
    a = std::min(a, j->first);
    b = std::max(b, j->second);
    ++j;
  }
  i = v.erase(i, j);
  v.insert(i, {a, b});
  if (v.size() != 1 || v[0].first != 0 || v[0].second < e.data->size()) return;
  make_spent(gid, e);
}

void FrameLru::make_spent(uint64_t gid, Entry& e) {
  e.spent = true;
  served_whole_[gid] = true;
  spent_.splice(spent_.begin(), lru_, e.pos);
  spent_bytes_ += e.data->footprint();
  while (spent_bytes_ > spent_keep_ && !spent_.empty()) evict(true);
}

}  // namespace tenpak::fsi
