#include "delta_frames.h"

#include <thread>

#include "tenpak/format.h"

namespace tenpak::fsi {

namespace {

class DeltaFrames : public FrameSource {
 public:
  explicit DeltaFrames(DeltaReader& r) : r_(r) {}
  uint32_t frame_count() const override { return static_cast<uint32_t>(r_.manifest().frames.size()); }
  FrameDesc frame(uint32_t k) const override {
    const Frame& f = r_.manifest().frames[k];
    return {f.hash, f.out_len, codec_name(f.codec)};
  }
  Result<const uint8_t*> read(uint32_t k, uint8_t* buf, bool lent) override {
    if (lent) return r_.read_frame_in(k, buf);
    Status st = r_.read_frame(k, buf);
    if (!st.ok()) return st;
    return static_cast<const uint8_t*>(buf);
  }
  const std::string& name() const override { return r_.name(); }
  void cancel() override { r_.cancel(); }

 private:
  DeltaReader& r_;
};

class RetryingFrames : public FrameSource {
 public:
  RetryingFrames(std::unique_ptr<FrameSource> inner, RetryOptions opt, std::shared_ptr<RebuildCounters> c)
      : inner_(std::move(inner)), opt_(std::move(opt)), c_(std::move(c)) {}
  uint32_t frame_count() const override { return inner_->frame_count(); }
  FrameDesc frame(uint32_t k) const override { return inner_->frame(k); }
  const std::string& name() const override { return inner_->name(); }
  void cancel() override {
    cancelled_ = true;
    inner_->cancel();
  }
  void add_stats(FrameSourceStats& s) const override { inner_->add_stats(s); }

  Result<const uint8_t*> read(uint32_t k, uint8_t* buf, bool lent) override {
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned attempt = 0;; ++attempt) {
      auto r = inner_->read(k, buf, lent);
      if (r.ok()) {
        if (attempt > 0) c_->retried_ok++;
        c_->record(std::chrono::steady_clock::now() - t0);
        c_->frames++;
        c_->bytes += inner_->frame(k).len;
        return r;
      }
      const Errc e = r.status().code();
      if ((e != Errc::io && e != Errc::unavailable && e != Errc::corrupt) || attempt >= opt_.retries || cancelled_.load()) return r;
      c_->retries++;
      opt_.log("retrying frame rebuild (attempt " + std::to_string(attempt + 2) + "): " + r.status().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<uint64_t>(opt_.retry_delay_ms) << attempt));
    }
  }

 private:
  std::unique_ptr<FrameSource> inner_;
  RetryOptions opt_;
  std::shared_ptr<RebuildCounters> c_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

void RebuildCounters::record(std::chrono::steady_clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  size_t i = 0;
  while (i < kRebuildLatencyBucketCount && s > kRebuildLatencyBuckets[i]) ++i;
  hist[i]++;
  sum_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

std::unique_ptr<FrameSource> delta_frames(DeltaReader& reader) { return std::make_unique<DeltaFrames>(reader); }

std::unique_ptr<FrameSource> retry_frames(std::unique_ptr<FrameSource> inner, RetryOptions opt,
                                          std::shared_ptr<RebuildCounters> counters) {
  return std::make_unique<RetryingFrames>(std::move(inner), std::move(opt), std::move(counters));
}

}  // namespace tenpak::fsi
