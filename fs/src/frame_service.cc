#include "frame_service.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tenpak::fsi {

namespace {
std::string ms_str(double ms) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", ms);
  return b;
}
}  // namespace

FrameService::FrameService(std::vector<std::unique_ptr<FrameSource>> sources, FrameServiceOptions opt)
    : opt_(std::move(opt)),
      sources_(std::move(sources)),
      total_frames_([&] {
        uint64_t n = 0;
        for (auto& s : sources_) n += s->frame_count();
        return n;
      }()),
      // Room for a full cache plus the frames in flight and in replies.
      pool_(std::make_shared<FramePool>(opt_.frame_cache_bytes + (32u << 20))),
      lru_(opt_.frame_cache_bytes, opt_.spent_keep_bytes, total_frames_),
      queues_(opt_.prefetch_queue_frames) {
  uint64_t g = 0;
  for (auto& s : sources_) {
    first_gid_.push_back(g);
    g += s->frame_count();
  }
  for (unsigned i = 0; i < opt_.workers; ++i) workers_.emplace_back([this] { worker(); });
}

// Reads still in progress on the workers (a prefetch waiting on a stalled
// origin) are cancelled first: the joins below do not wait them out.
FrameService::~FrameService() {
  cancel();
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void FrameService::cancel() {
  for (auto& s : sources_) s->cancel();
  // Queued jobs would only fail one by one ("cancelled"), each logged.
  std::lock_guard lk(mu_);
  queues_.clear();
  if (busy_workers_ == 0) idle_cv_.notify_all();
}

double FrameService::now_ms() const {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start_).count();
}

std::pair<uint32_t, uint32_t> FrameService::locate(uint64_t gid) const {
  auto it = std::upper_bound(first_gid_.begin(), first_gid_.end(), gid);
  uint32_t mi = static_cast<uint32_t>(it - first_gid_.begin() - 1);
  return {mi, static_cast<uint32_t>(gid - first_gid_[mi])};
}

Result<FramePtr> FrameService::get(uint64_t gid, JobKind kind, bool sparse_reread) {
  const bool worker_job = kind != JobKind::demand;
  std::unique_lock lk(mu_);
  bool rejoined = false;
  for (;;) {
    if (worker_job) {
      if (FramePtr p = lru_.peek(gid)) return p;
    } else if (FramePtr p = lru_.use(gid)) {
      return p;
    }
    auto fit = inflight_.find(gid);
    if (fit == inflight_.end()) break;
    if (worker_job) return FramePtr();
    auto inf = fit->second;
    c_.inflight_joins++;
    if (inf->prefetch) c_.join_prefetch_hits++;
    done_cv_.wait(lk, [&] { return inf->done; });
    if (inf->st.ok()) {
      lru_.mark_used(gid);
      return inf->data;
    }
    // A prefetch that failed on an origin read: read it on our own (with
    // the source's own retries), once. Other causes would fail the same way again.
    if (!inf->prefetch || rejoined || (inf->st.code() != Errc::io && inf->st.code() != Errc::unavailable)) return inf->st;
    rejoined = true;
  }
  if (worker_job && lru_.served_whole(gid)) return FramePtr();  // a job overtaken by readers (see FrameLru)
  if (kind == JobKind::prefetch) c_.prefetch_issued++;
  else c_.misses++;
  // A reader reading a frame itself takes it off the workers' queues: a job
  // left there could run after the frame was served whole and evicted
  // (spent frames leave the cache soon), and read it for nobody. A frame
  // read for a sparse re-read keeps its served_whole bit: the kernel still
  // holds the rest of it, and other short reads of it that arrive meanwhile
  // (the kernel sends a readahead's holes at once) must also be seen as sparse.
  const bool reread = sparse_reread && lru_.served_whole(gid);
  if (kind == JobKind::demand) {
    if (queues_.remove(gid) && queues_.empty() && busy_workers_ == 0) idle_cv_.notify_all();
    if (!reread) lru_.set_served_whole(gid, false);
  }
  auto inf = std::make_shared<Inflight>();
  inf->prefetch = kind == JobKind::prefetch;
  inflight_.emplace(gid, inf);
  if (kind == JobKind::demand) ++demand_active_;
  lk.unlock();

  const double t0 = opt_.trace_reads ? now_ms() : 0;
  auto [mi, k] = locate(gid);
  FrameSource& src = *sources_[mi];
  const FrameDesc d = src.frame(k);
  auto buf = std::make_shared<FrameBuf>(d.len, pool_);
  Result<FramePtr> r = Status{Errc::io, ""};
  {
    auto at = src.read(k, buf->lendable() ? buf->room() : buf->data(), buf->lendable());
    if (at.ok()) {
      if (buf->lendable()) buf->set_start(*at);
      r = FramePtr(std::move(buf));
    } else {
      r = at.status();
    }
  }
  if (opt_.trace_reads)
    log("rebuild frame " + std::to_string(k) + " of " + src.name() +
        (kind == JobKind::prefetch ? " (prefetch)" : kind == JobKind::assist ? " (assist)" : " (read)") + " at " +
        ms_str(t0) + " ms took " + ms_str(now_ms() - t0) + " ms" + (r.ok() ? "" : ": " + r.status().message()));

  lk.lock();
  inflight_.erase(gid);
  inf->done = true;
  if (r.ok()) {
    inf->data = *r;
    lru_.insert(gid, *r, kind == JobKind::prefetch, reread);
  } else {
    inf->st = r.status();
  }
  if (kind == JobKind::demand && --demand_active_ == 0) work_cv_.notify_all();
  done_cv_.notify_all();
  return r;
}

bool FrameService::enqueue(uint64_t g0, uint64_t g1, JobKind kind, bool urgent_line) {
  if (workers_.empty()) return false;
  if (g0 >= g1) return true;
  std::lock_guard lk(mu_);
  for (uint64_t g = g0; g < g1; ++g) {
    if (lru_.contains(g) || inflight_.count(g)) continue;
    lru_.set_served_whole(g, false);  // asked for anew (a re-read: the kernel dropped it)
    if (queues_.push(g, kind, urgent_line) == WorkQueues::Push::full) {
      c_.prefetch_dropped += g1 - g;
      work_cv_.notify_all();
      return false;
    }
  }
  work_cv_.notify_all();
  return true;
}

void FrameService::served(const std::vector<Served>& s) {
  std::lock_guard lk(mu_);
  for (const Served& sv : s) lru_.served(sv.gid, sv.from, sv.len);
}

bool FrameService::served_whole(uint64_t gid) const {
  std::lock_guard lk(mu_);
  return lru_.served_whole(gid);
}

void FrameService::drain() {
  std::unique_lock lk(mu_);
  idle_cv_.wait(lk, [&] { return queues_.empty() && busy_workers_ == 0; });
}

std::pair<size_t, size_t> FrameService::cache_bytes() const {
  std::lock_guard lk(mu_);
  return {lru_.bytes(), lru_.spent_bytes()};
}

FrameSourceStats FrameService::source_stats() const {
  FrameSourceStats s;
  for (auto& src : sources_) src->add_stats(s);
  return s;
}

// Jobs of the prefetch line run at a lower CPU priority (opt_.prefetch_nice)
// so that a reader's own reads win the cores; urgent jobs are taken first
// and run at normal priority.
void FrameService::worker() {
  int nice_now = 0;
  auto set_nice = [&](int v) {  // best effort: raising it back needs CAP_SYS_NICE
    if (v == nice_now) return;
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), v) == 0) nice_now = v;
  };
  std::unique_lock lk(mu_);
  for (;;) {
    work_cv_.wait(lk, [&] { return stopping_ || queues_.has_work(demand_active_ == 0); });
    if (stopping_) return;
    const WorkQueues::Job job = *queues_.pop(demand_active_ == 0);
    ++busy_workers_;
    if (job.urgent) ++demand_active_;
    lk.unlock();
    if (opt_.on_job_taken) opt_.on_job_taken(job.gid);
    // Urgent jobs (also the guesses of an open hint) are about to be waited
    // for: a niced thread there would be a priority inversion.
    set_nice(job.urgent ? 0 : opt_.prefetch_nice);
    auto r = get(job.gid, job.kind);
    if (!r.ok()) {
      if (job.kind == JobKind::prefetch) c_.prefetch_failed++;
      auto [mi, k] = locate(job.gid);
      log(std::string(job.kind == JobKind::prefetch ? "prefetch" : "assisted rebuild") + " of frame " + std::to_string(k) +
          " of " + sources_[mi]->name() + " failed (a reader will retry): " + r.status().message());
    }
    lk.lock();
    --busy_workers_;
    if (job.urgent && --demand_active_ == 0) work_cv_.notify_all();
    if (queues_.empty() && busy_workers_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace tenpak::fsi
