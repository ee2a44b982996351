#include "tenpak/cached_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tenpak/env.h"
#include "tenpak/http_source.h"

namespace tenpak {
namespace {

// One block being fetched by some thread; others wait on it. Once done and
// ok, `blk` points at the block's bytes inside `run` (the fetch's buffer,
// shared: no copy per waiter).
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status st;
  std::shared_ptr<const uint8_t[]> run;
  const uint8_t* blk = nullptr;
  // Set (under CachedSourceImpl::mu_) by invalidate() while the block was
  // still being fetched or stored: its bytes were found wrong, so the
  // fetcher must not leave them in the cache.
  bool stale = false;
};

constexpr uint64_t kMaxRun = 16u << 20;  // one origin read covers at most this much

// TENPAK_TRACE_READS (as for the mount's reads) also logs, on stderr (the
// daemon's log), every origin read and every wait on another thread's
// fetch, with timings: where the latency of a cold read goes.
bool trace_fetches() {
  static const bool on = env_flag("TENPAK_TRACE_READS");
  return on;
}
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class CachedSourceImpl final : public CachedSource {
 public:
  CachedSourceImpl(std::unique_ptr<BlockSource> origin, std::shared_ptr<BlockCache> cache, std::string identity, size_t block)
      : origin_(std::move(origin)), cache_(std::move(cache)), identity_(std::move(identity)), block_(block) {
    if (!cache_) cache_ = make_null_cache();
  }

  // A hint's fetch still in progress is cancelled (the origin is going away
  // with this object): a stalled origin does not hold up the shutdown.
  ~CachedSourceImpl() override {
    {
      std::lock_guard<std::mutex> g(hint_mu_);
      hint_stop_ = true;
    }
    hint_cv_.notify_all();
    if (hint_thread_.joinable()) {
      origin_->cancel();
      hint_thread_.join();
    }
  }

  void cancel() override { origin_->cancel(); }

  uint64_t size() const override { return origin_->size(); }
  const std::string& name() const override { return origin_->name(); }
  BlockSource& origin() override { return *origin_; }

  // Fetches [offset, offset+len) into the cache on a background thread, so
  // a caller that reads another range first (a frame's payload, then its
  // base range) waits for both fetches together. Blocks the hint thread
  // has claimed are in inflight_: a read that comes meanwhile waits for
  // that fetch rather than sending a second one. Only with a usable cache
  // (without one the fetched bytes would have nowhere to go); at most
  // kMaxHints queued, the rest dropped (hints are never required). (A cache
  // that refuses to store a block, e.g. one larger than a quarter of a tiny
  // LMDB cache, makes the hint's fetch wasted: the reader fetches again.)
  void will_need(uint64_t offset, size_t len) override {
    if (!cache_->usable() || len == 0 || offset >= size()) return;
    const uint64_t b0 = offset / block_, b1 = (std::min(size(), offset + len) - 1) / block_;
    bool all_cached = true;
    for (uint64_t b = b0; b <= b1 && all_cached; ++b) all_cached = cache_->contains(key(b));
    if (all_cached) return;
    constexpr size_t kMaxHints = 64;
    {
      std::lock_guard<std::mutex> g(hint_mu_);
      if (hint_stop_ || hints_.size() >= kMaxHints) return;
      hints_.emplace_back(offset, static_cast<size_t>(std::min<uint64_t>(len, size() - offset)));
      if (!hint_thread_.joinable()) hint_thread_ = std::thread([this] { hint_loop(); });
    }
    hint_cv_.notify_one();
  }

  Status read(uint64_t offset, size_t len, uint8_t* dst) override { return read_impl(offset, len, dst, false); }
  Status read_uncached(uint64_t offset, size_t len, uint8_t* dst) override { return read_impl(offset, len, dst, true); }

  // Blocks still in flight are dropped from inflight_ too (a fetch that has
  // published its bytes stays registered until they are stored; without
  // this, a retry would join it and get the same wrong bytes) and marked
  // stale, so their fetcher erases what it stores.
  void invalidate(uint64_t offset, size_t len) override {
    if (len == 0 || offset >= size()) return;
    uint64_t b0 = offset / block_, b1 = (std::min(size(), offset + len) - 1) / block_;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (uint64_t b = b0; b <= b1; ++b) {
        auto it = inflight_.find(b);
        if (it == inflight_.end()) continue;
        it->second->stale = true;
        inflight_.erase(it);
      }
    }
    for (uint64_t b = b0; b <= b1; ++b) {
      cache_->erase(key(b));
      invalidated_.fetch_add(1);
    }
  }

  CachedSourceStats cache_stats() const override {
    CachedSourceStats s;
    s.block_hits = hits_.load();
    s.block_misses = misses_.load();
    s.origin_reads = origin_reads_.load();
    s.origin_bytes = origin_bytes_.load();
    s.collapsed = collapsed_.load();
    s.invalidated = invalidated_.load();
    return s;
  }

 private:
  std::string key(uint64_t b) const { return block_cache_key(identity_, block_, b); }
  size_t block_len(uint64_t b) const { return static_cast<size_t>(std::min<uint64_t>(block_, size() - b * block_)); }

  // Copies the part of block b that overlaps [offset, offset+len) into dst.
  void copy_out(uint64_t b, const uint8_t* blk, uint64_t offset, size_t len, uint8_t* dst) const {
    uint64_t bs = b * block_, be = bs + block_len(b);
    uint64_t s = std::max(bs, offset), e = std::min(be, offset + len);
    std::memcpy(dst + (s - offset), blk + (s - bs), e - s);
  }

  Status read_impl(uint64_t offset, size_t len, uint8_t* dst, bool bypass) {
    if (offset > size() || len > size() - offset)
      return {Errc::corrupt, name() + ": range " + std::to_string(offset) + "+" + std::to_string(len) +
                                 " is past the end of the file (" + std::to_string(size()) + " bytes)"};
    if (len == 0) return Status::Ok();
    const uint64_t b0 = offset / block_, b1 = (offset + len - 1) / block_;
    std::vector<uint64_t> missing;
    if (bypass) {
      for (uint64_t b = b0; b <= b1; ++b) missing.push_back(b);
    } else {
      thread_local std::vector<uint8_t> tmp;
      tmp.resize(block_);
      for (uint64_t b = b0; b <= b1; ++b) {
        // A block fully inside the request is read straight into dst.
        uint64_t bs = b * block_;
        size_t bl = block_len(b);
        bool inside = bs >= offset && bs + bl <= offset + len;
        uint8_t* p = inside ? dst + (bs - offset) : tmp.data();
        if (cache_->get(key(b), bl, p)) {
          if (!inside) copy_out(b, p, offset, len, dst);
          hits_.fetch_add(1);
        } else {
          missing.push_back(b);
          misses_.fetch_add(1);
        }
      }
    }
    if (missing.empty()) return Status::Ok();

    // Claim the missing blocks nobody is fetching; wait for the others.
    std::vector<std::pair<uint64_t, std::shared_ptr<Pending>>> mine, theirs;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (uint64_t b : missing) {
        auto it = inflight_.find(b);
        if (it != inflight_.end() && !bypass) {
          theirs.emplace_back(b, it->second);
        } else {
          auto p = std::make_shared<Pending>();
          if (it == inflight_.end()) inflight_[b] = p;  // bypass reads do not replace another fetch
          mine.emplace_back(b, p);
        }
      }
    }
    // Another thread may have stored a block between our miss and our
    // claim: look again (its put happens before it leaves inflight_).
    if (!bypass && !mine.empty()) {
      thread_local std::vector<uint8_t> tmp;
      tmp.resize(block_);
      std::vector<std::pair<uint64_t, std::shared_ptr<Pending>>> still;
      for (auto& [b, p] : mine) {
        if (cache_->get(key(b), block_len(b), tmp.data())) {
          copy_out(b, tmp.data(), offset, len, dst);
          auto copy = std::make_shared_for_overwrite<uint8_t[]>(block_len(b));
          std::memcpy(copy.get(), tmp.data(), block_len(b));
          publish(p, Status::Ok(), copy, copy.get());
          unregister(b, p);
        } else {
          still.emplace_back(b, p);
        }
      }
      mine.swap(still);
    }
    Status first_err;
    // Fetch my blocks in runs of adjacent blocks, one origin read per run.
    for (size_t i = 0; i < mine.size();) {
      size_t j = i + 1;
      while (j < mine.size() && mine[j].first == mine[j - 1].first + 1 && (j - i + 1) * block_ <= kMaxRun) ++j;
      uint64_t rs = mine[i].first * block_;
      uint64_t re = mine[j - 1].first * block_ + block_len(mine[j - 1].first);
      // Not zero-filled: the origin read fills it or fails.
      std::shared_ptr<uint8_t[]> run = std::make_shared_for_overwrite<uint8_t[]>(re - rs);
      uint8_t* buf = run.get();
      origin_reads_.fetch_add(1);
      const double t0 = trace_fetches() ? now_ms() : 0;
      Status st = origin_->read(rs, re - rs, buf);
      if (trace_fetches())
        std::fprintf(stderr, "trace: fetch %s [%llu, +%llu) (blocks %llu..%llu) took %.3f ms%s\n", name().c_str(),
                     static_cast<unsigned long long>(rs), static_cast<unsigned long long>(re - rs),
                     static_cast<unsigned long long>(mine[i].first), static_cast<unsigned long long>(mine[j - 1].first),
                     now_ms() - t0, st.ok() ? "" : " (failed)");
      if (st.ok()) origin_bytes_.fetch_add(re - rs);
      if (!st.ok()) {
        // Unregistered first: a reader arriving now tries the origin itself
        // instead of joining a fetch that already failed.
        for (size_t k = i; k < j; ++k) unregister(mine[k].first, mine[k].second);
        for (size_t k = i; k < j; ++k) publish(mine[k].second, st, nullptr, nullptr);
      } else {
        // Waiters are served first; the blocks stay registered in inflight_
        // until stored, so a reader arriving meanwhile joins (done at once)
        // instead of missing the cache and fetching them again.
        for (size_t k = i; k < j; ++k) {
          auto& [b, p] = mine[k];
          const uint8_t* blk = buf + (b * block_ - rs);
          copy_out(b, blk, offset, len, dst);
          publish(p, st, run, blk);
        }
        for (size_t k = i; k < j; ++k) {
          auto& [b, p] = mine[k];
          cache_->put(key(b), buf + (b * block_ - rs), block_len(b));
          if (unregister(b, p)) cache_->erase(key(b));  // invalidated meanwhile
        }
      }
      if (!st.ok() && first_err.ok()) first_err = st;
      i = j;
    }
    for (auto& [b, p] : theirs) {
      std::unique_lock<std::mutex> lk(p->mu);
      const double t0 = trace_fetches() ? now_ms() : 0;
      p->cv.wait(lk, [&] { return p->done; });
      if (trace_fetches())
        std::fprintf(stderr, "trace: waited %.3f ms for block %llu of %s (another thread's fetch)\n", now_ms() - t0,
                     static_cast<unsigned long long>(b), name().c_str());
      if (!p->st.ok()) {
        if (first_err.ok()) first_err = p->st;
        continue;
      }
      copy_out(b, p->blk, offset, len, dst);
      collapsed_.fetch_add(1);
    }
    return first_err;
  }

  // Marks p done (its bytes at blk inside run when st is ok) and wakes its waiters.
  static void publish(const std::shared_ptr<Pending>& p, const Status& st,
                      std::shared_ptr<const uint8_t[]> run, const uint8_t* blk) {
    std::lock_guard<std::mutex> g(p->mu);
    if (st.ok()) {
      p->run = std::move(run);
      p->blk = blk;
    }
    p->st = st;
    p->done = true;
    p->cv.notify_all();
  }

  // Removes p from inflight_ (after its block was stored, or its fetch
  // failed). Returns whether invalidate() marked it stale meanwhile.
  bool unregister(uint64_t b, const std::shared_ptr<Pending>& p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = inflight_.find(b);
    if (it != inflight_.end() && it->second == p) inflight_.erase(it);
    return p->stale;
  }

  void hint_loop() {
    std::vector<uint8_t> scratch;
    std::unique_lock<std::mutex> lk(hint_mu_);
    for (;;) {
      hint_cv_.wait(lk, [&] { return hint_stop_ || !hints_.empty(); });
      if (hint_stop_) return;
      auto [off, len] = hints_.front();
      hints_.pop_front();
      lk.unlock();
      scratch.resize(len);
      // An error reaches the readers that joined this fetch (ModelFs
      // retries io errors); the others fetch the range themselves.
      (void)read_impl(off, len, scratch.data(), false);
      lk.lock();
    }
  }

  std::unique_ptr<BlockSource> origin_;
  std::shared_ptr<BlockCache> cache_;
  std::string identity_;
  size_t block_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> inflight_;
  // will_need(): queued hints and the thread that fetches them (started on
  // the first hint, joined by the destructor).
  std::mutex hint_mu_;
  std::condition_variable hint_cv_;
  std::deque<std::pair<uint64_t, size_t>> hints_;
  bool hint_stop_ = false;
  std::thread hint_thread_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, origin_reads_{0}, origin_bytes_{0}, collapsed_{0}, invalidated_{0};
};

}  // namespace

std::unique_ptr<CachedSource> wrap_with_cache(std::unique_ptr<BlockSource> origin, std::shared_ptr<BlockCache> cache,
                                              std::string identity, size_t block) {
  if (block == 0) block = 1u << 20;
  return std::make_unique<CachedSourceImpl>(std::move(origin), std::move(cache), std::move(identity), block);
}

std::string source_identity(const BlockSource& src) {
  if (auto* h = dynamic_cast<const HttpSource*>(&src)) return h->validator();
  struct stat st;
  if (::stat(src.name().c_str(), &st) == 0)
    return src.name() + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + "|" + std::to_string(st.st_ino);
  return src.name() + "|" + std::to_string(src.size());
}

}  // namespace tenpak
