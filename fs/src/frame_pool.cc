#include "frame_pool.h"

#include <sys/mman.h>

namespace tenpak::fsi {

FramePool::~FramePool() {
  for (auto& [p, n] : regions_) munmap(p, n);
}

uint8_t* FramePool::take() {
  std::lock_guard lk(mu_);
  if (free_.empty() && !grow_locked()) return nullptr;
  uint8_t* p = free_.back();
  free_.pop_back();
  return p;
}

void FramePool::give_back(uint8_t* p) {
  std::lock_guard lk(mu_);
  free_.push_back(p);
}

size_t FramePool::slots() const {
  std::lock_guard lk(mu_);
  return slots_;
}

bool FramePool::grow_locked() {
  // The limit counts frames of kMaxFrameOut, not the room around them.
  if ((slots_ + kRegion / kSlot) * kMaxFrameOut > max_bytes_) return false;
  void* raw = mmap(nullptr, kRegion + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return false;
  regions_.emplace_back(raw, kRegion + kHuge);
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~uintptr_t(kHuge - 1));
  madvise(base, kRegion, MADV_HUGEPAGE);  // best effort (THP "never": plain pages, still recycled)
  for (size_t off = kRegion; off >= kSlot; off -= kSlot) free_.push_back(base + off - kSlot);
  slots_ += kRegion / kSlot;
  return true;
}

FrameBuf::FrameBuf(size_t len, const std::shared_ptr<FramePool>& pool) : len_(len) {
  if (pool && len >= FramePool::kMinPooled && len <= kMaxFrameOut) {
    if (uint8_t* p = pool->take()) {
      room_ = data_ = p;
      pool_ = pool;
      return;
    }
  }
  heap_.reset(new uint8_t[len ? len : 1]);  // not zeroed: every byte is written by the read
  room_ = data_ = heap_.get();
}

FrameBuf::~FrameBuf() {
  if (pool_) pool_->give_back(room_);
}

}  // namespace tenpak::fsi
