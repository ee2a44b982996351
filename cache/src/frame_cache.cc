#include "tenpak/frame_cache.h"

#include <atomic>

namespace tenpak {

const char* frame_cache_policy_name(FrameCachePolicy p) {
  switch (p) {
    case FrameCachePolicy::slow: return "slow";
    case FrameCachePolicy::all: return "all";
    case FrameCachePolicy::none: return "none";
  }
  return "?";
}

std::optional<FrameCachePolicy> parse_frame_cache_policy(std::string_view s) {
  for (auto p : {FrameCachePolicy::slow, FrameCachePolicy::all, FrameCachePolicy::none})
    if (s == frame_cache_policy_name(p)) return p;
  return std::nullopt;
}

bool frame_cache_policy_stores(FrameCachePolicy p, std::string_view codec) {
  switch (p) {
    case FrameCachePolicy::all: return true;
    case FrameCachePolicy::none: return false;
    case FrameCachePolicy::slow: break;
  }
  // Rebuilding these is about as cheap as reading the frame back from LMDB
  // (copy_base, store: a copy of cached base or delta bytes; sub_lanes:
  // ~1.5 GB/s per core), and storing them would write the model into the
  // cache a second time on a cold read.
  return codec != "copy_base" && codec != "store" && codec != "sub_lanes";
}

namespace {

class CachedFrames : public FrameSource {
 public:
  CachedFrames(std::unique_ptr<FrameSource> inner, std::shared_ptr<BlockCache> cache, FrameCachePolicy p)
      : inner_(std::move(inner)), cache_(std::move(cache)), policy_(p) {}
  uint32_t frame_count() const override { return inner_->frame_count(); }
  FrameDesc frame(uint32_t k) const override { return inner_->frame(k); }
  const std::string& name() const override { return inner_->name(); }
  void cancel() override { inner_->cancel(); }

  Result<const uint8_t*> read(uint32_t k, uint8_t* buf, bool lent) override {
    const FrameDesc d = inner_->frame(k);
    if (cache_) {
      const std::string key = frame_cache_key(d.hash);
      if (cache_->get(key, d.len, buf)) {
        if (xxh128(buf, d.len) == d.hash) {
          hits_++;
          return static_cast<const uint8_t*>(buf);
        }
        rejected_++;  // never served: dropped, read from the inner source below
        cache_->erase(key);
      }
    }
    auto r = inner_->read(k, buf, lent);
    if (!r.ok() || !cache_) return r;
    if (frame_cache_policy_stores(policy_, d.codec)) {
      cache_->put(frame_cache_key(d.hash), *r, d.len);
      stored_++;
    } else {
      skipped_++;
    }
    return r;
  }

  void add_stats(FrameSourceStats& s) const override {
    s.persistent = s.persistent || cache_ != nullptr;
    s.persistent_policy = frame_cache_policy_name(policy_);
    s.persistent_hits += hits_;
    s.persistent_rejected += rejected_;
    s.persistent_stored += stored_;
    s.persistent_skipped += skipped_;
    inner_->add_stats(s);
  }

 private:
  std::unique_ptr<FrameSource> inner_;
  std::shared_ptr<BlockCache> cache_;
  const FrameCachePolicy policy_;
  std::atomic<uint64_t> hits_{0}, rejected_{0}, stored_{0}, skipped_{0};
};

}  // namespace

std::unique_ptr<FrameSource> cache_frames(std::unique_ptr<FrameSource> inner, std::shared_ptr<BlockCache> cache,
                                          FrameCachePolicy p) {
  return std::make_unique<CachedFrames>(std::move(inner), std::move(cache), p);
}

}  // namespace tenpak
