// Per-frame scratch memory.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <memory>

namespace tenpak {

// A reusable buffer whose bytes are never initialised. std::vector's
// resize() value-initialises every element it adds, even within its
// capacity, so a thread_local vector that shrinks for a small frame and
// grows back for the next 1 MiB one zero-fills up to 1 MiB per frame: as
// much work as copying the frame. Growing here keeps nothing (it is
// scratch), and the memory is kept until the object goes. It grows by at
// least half its size: frames of slowly rising sizes (a literal stream, a
// Parquet page) otherwise made each call a fresh allocation, whose pages
// the kernel faults in and zeroes one by one (up to a tenth of a dataset
// rebuild's CPU; docs/BENCHMARKS.md, Dataset deltas run 7). Pages never
// written are never faulted in, so the slack costs address space only.
template <class T>
class Scratch {
 public:
  // At least n elements, uninitialised (a valid pointer also for n == 0).
  T* get(size_t n) {
    if (n > cap_ || !p_) {
      const size_t cap = std::max<size_t>({n, 1, cap_ + cap_ / 2});
      p_ = std::make_unique_for_overwrite<T[]>(cap);
      cap_ = cap;
    }
    return p_.get();
  }
  // What the last get() returned.
  T* data() const { return p_.get(); }

 private:
  std::unique_ptr<T[]> p_;
  size_t cap_ = 0;
};

// The same for bytes aligned to `Align` (a power of two): buffers that
// O_DIRECT reads may land in (BlockSource::read_in).
template <size_t Align>
class AlignedScratch {
 public:
  uint8_t* get(size_t n) {
    if (n > cap_ || !p_) {
      const size_t cap = (std::max<size_t>(n, 1) + Align - 1) / Align * Align;
      p_.reset(static_cast<uint8_t*>(::operator new(cap, std::align_val_t(Align))));
      cap_ = cap;
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t(Align)); }
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t cap_ = 0;
};

}  // namespace tenpak
