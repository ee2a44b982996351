// Ordered parallel pipeline (private to tenpak_codec): the builder encodes
// and apply rebuilds frames on worker threads while the calling thread
// consumes them strictly in order (hashing the file, writing it).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "tenpak/status.h"

namespace tenpak {

// Runs produce(k, slot) for every k in [0, n) on `threads` workers (taken in
// order through an atomic cursor) and consume(k, slot) on the calling thread
// for k = 0, 1, ... as each becomes ready. slot = k % window: a worker waits
// while its slot still holds an unconsumed item, so at most `window` items
// exist at once (memory is bounded) and there is no batch barrier (a slow
// item delays only the consumer). produce must not fail (record errors in the
// slot for consume to return). Returns the first error of consume; the
// workers are then released and joined before returning. With one thread,
// each item is produced and consumed in turn on the calling thread, in slot
// 0 (one item is ever in flight; its buffers stay warm): a
// worker handing every item to this thread puts it through two cores'
// caches (docs/BENCHMARKS.md, Dataset deltas run 7).
template <class Produce, class Consume>
Status ordered_pipeline(size_t n, unsigned threads, size_t window, Produce&& produce, Consume&& consume) {
  threads = std::max(1u, threads);
  window = std::max<size_t>(window, 1);
  if (threads == 1) {
    for (size_t k = 0; k < n; ++k) {
      produce(k, 0);
      if (Status st = consume(k, 0); !st.ok()) return st;
    }
    return Status::Ok();
  }
  std::vector<std::atomic<size_t>> ready(window);  // k + 1 once item k sits in slot k % window
  for (auto& r : ready) r.store(0);
  std::atomic<size_t> next{0}, consumed{0};
  std::atomic<bool> stop{false};
  auto work = [&] {
    for (size_t k; (k = next.fetch_add(1)) < n;) {
      for (size_t c = consumed.load(); k >= c + window; c = consumed.load()) {
        if (stop.load()) return;
        consumed.wait(c);
      }
      if (stop.load()) return;
      produce(k, k % window);
      ready[k % window].store(k + 1);
      ready[k % window].notify_all();
    }
  };
  Status st = Status::Ok();
  {
    std::vector<std::jthread> pool;
    const unsigned nt = static_cast<unsigned>(std::min<size_t>(threads, n));
    for (unsigned t = 0; t < nt; ++t) pool.emplace_back(work);
    for (size_t k = 0; k < n && st.ok(); ++k) {
      for (size_t r = ready[k % window].load(); r != k + 1; r = ready[k % window].load()) ready[k % window].wait(r);
      st = consume(k, k % window);
      consumed.store(k + 1);
      consumed.notify_all();
    }
    if (!st.ok()) {  // release waiting workers; the pool joins on scope exit
      stop.store(true);
      consumed.fetch_add(window + n);
      consumed.notify_all();
    }
  }
  return st;
}

}  // namespace tenpak
