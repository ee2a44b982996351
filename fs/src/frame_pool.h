// Memory for rebuilt frames (FramePool) and one frame's bytes (FrameBuf).
//
// A fresh 4 KiB page costs a page fault on first touch, and on virtual
// machines a fault costs 20-50 us: 5-15 ms per 1 MiB frame, as much as
// decoding it. So large frames (the common case) live in slots of 1 MiB
// (and 8 KiB of room: FrameSource::read with a lent buffer) carved out of
// 2 MiB-aligned regions that ask for transparent huge pages (one fault per
// 2 MiB), and slots are recycled when a frame leaves the cache instead of
// going back to malloc (whose freed memory may be returned to the kernel
// and faulted in again). Regions are kept until the pool is destroyed;
// beyond `max_bytes` of frames in them, frames fall back to the heap.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "tenpak/block_source.h"
#include "tenpak/format.h"

namespace tenpak::fsi {

class FramePool {
 public:
  // The largest frame and the room a lent read asks for around it (a
  // copied base range read direct lands at its offset in an aligned span).
  static constexpr size_t kSlot = kMaxFrameOut + 2 * BlockSource::kReadInAlign;
  static constexpr size_t kMinPooled = kMaxFrameOut / 2;  // smaller frames: heap
  static constexpr size_t kRegion = 32 * kSlot;           // 32 slots per mapping
  static constexpr size_t kHuge = 2u << 20;

  explicit FramePool(size_t max_bytes) : max_bytes_(max_bytes) {}
  ~FramePool();
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;
  // A slot (aligned to kReadInAlign, kSlot bytes), or nullptr when the pool
  // is at its limit (or mmap failed). Thread-safe.
  uint8_t* take();
  // Returns a slot from take(). Thread-safe.
  void give_back(uint8_t* p);
  // Slots carved so far (free or taken).
  size_t slots() const;

 private:
  bool grow_locked();
  mutable std::mutex mu_;
  size_t max_bytes_, slots_ = 0;
  std::vector<uint8_t*> free_;
  std::vector<std::pair<void*, size_t>> regions_;
};

// The bytes of one frame: a pool slot (returned when the last reference
// goes) or a heap buffer. In a slot the bytes start where a lent read put
// them (set_start); elsewhere at the start.
class FrameBuf {
 public:
  // `pool` may be null (heap). Frames below FramePool::kMinPooled go to the heap.
  FrameBuf(size_t len, const std::shared_ptr<FramePool>& pool);
  ~FrameBuf();
  FrameBuf(const FrameBuf&) = delete;
  FrameBuf& operator=(const FrameBuf&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return len_; }
  // A pool slot: aligned, with the room a lent read asks for.
  bool lendable() const { return pool_ != nullptr; }
  uint8_t* room() { return room_; }
  // Where the bytes start, inside room() (what the lent read returned).
  void set_start(const uint8_t* p) { data_ = room_ + (p - room_); }
  // Memory it holds (what the frame cache limit counts).
  size_t footprint() const { return pool_ ? FramePool::kSlot : len_; }

 private:
  size_t len_;
  uint8_t* room_ = nullptr;  // the slot or heap buffer
  uint8_t* data_ = nullptr;  // the frame's bytes, within it
  std::unique_ptr<uint8_t[]> heap_;
  std::shared_ptr<FramePool> pool_;
};

using FramePtr = std::shared_ptr<const FrameBuf>;

}  // namespace tenpak::fsi
