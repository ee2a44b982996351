// FrameSource: the verified frames of one delta, by index. The mount's frame
// service reads every frame through one; a delta reader is adapted to it
// (fs/), and decorators add behaviour around it without the service knowing:
// retries (fs/), the persistent frame cache and its policy (cache/), as
// CachedSource decorates a BlockSource. Fakes of it drive the tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tenpak/block_source.h"
#include "tenpak/hash.h"
#include "tenpak/status.h"

namespace tenpak {

// What a frame is, known without reading it.
struct FrameDesc {
  Xxh128 hash{};              // xxh3-128 of its bytes: every byte returned matches it
  uint32_t len = 0;           // its length in bytes (at most 1 MiB)
  const char* codec = "";     // how it is rebuilt (the codec's name): what decides its rebuild cost
};

// Counters a decorator adds to the chain's report (zero where no decorator
// of that kind is in the chain).
struct FrameSourceStats {
  // A persistent frame cache (cache/frame_cache.h) is in the chain, with
  // this policy name; its hits, entries that failed their hash (dropped),
  // rebuilt frames stored, and rebuilt frames left out by the policy.
  bool persistent = false;
  std::string persistent_policy;
  uint64_t persistent_hits = 0, persistent_rejected = 0, persistent_stored = 0, persistent_skipped = 0;
};

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  virtual uint32_t frame_count() const = 0;
  // k < frame_count().
  virtual FrameDesc frame(uint32_t k) const = 0;
  // Reads frame k's bytes, checked against FrameDesc::hash: bytes that do
  // not match are never returned. With `lent`, `buf` is aligned to
  // BlockSource::kReadInAlign and holds len + 2 * kReadInAlign bytes, and
  // the bytes may start anywhere in it (a copied base range read direct
  // lands where its aligned span put it: no copy); without, `buf` holds len
  // bytes and they start at buf. Returns where they start.
  // Errors: Errc::io (an origin read failed: may heal), Errc::corrupt (the
  // bytes failed their hash after the source's own second attempt), others
  // (a missing base, a bad index) that waiting does not heal.
  // Thread-safe.
  virtual Result<const uint8_t*> read(uint32_t k, uint8_t* buf, bool lent) = 0;
  // A human name (the delta's location) for logs.
  virtual const std::string& name() const = 0;
  // Reads in progress and every later one end soon with an error, and no
  // read is retried: for shutting down. Decorators pass it on.
  virtual void cancel() {}
  // Adds this decorator's counters to `s` and passes it on down the chain.
  virtual void add_stats(FrameSourceStats& s) const {}
};

}  // namespace tenpak
