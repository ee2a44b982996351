#include "tenpak/model_fs.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "tenpak/block_source.h"
#include "tenpak/format.h"
#include "tenpak/hash.h"

namespace tenpak {
namespace {

// Memory for rebuilt frames. A fresh 4 KiB page costs a page fault on
// first touch, and on virtual machines a fault costs 20-50 us: 5-15 ms per
// 1 MiB frame, as much as decoding it. So large frames (the common case)
// live in slots of 1 MiB (and 8 KiB of room: read_frame_in) carved out of
// 2 MiB-aligned regions that ask for transparent huge pages (one fault per
// 2 MiB), and slots are recycled when a frame leaves the cache instead of
// going back to malloc (whose freed memory may be returned to the kernel
// and faulted in again). Regions are kept until the file system is
// destroyed; beyond `max_bytes` of frames in them, frames fall back to the
// heap.
class FramePool : public std::enable_shared_from_this<FramePool> {
 public:
  // The largest frame and the room read_frame_in asks for around it (a
  // copied base range read direct lands at its offset in an aligned span).
  static constexpr size_t kSlot = kMaxFrameOut + 2 * BlockSource::kReadInAlign;
  static constexpr size_t kMinPooled = kMaxFrameOut / 2;  // smaller frames: heap
  static constexpr size_t kRegion = 32 * kSlot;           // 32 slots per mapping
  static constexpr size_t kHuge = 2u << 20;

  explicit FramePool(size_t max_bytes) : max_bytes_(max_bytes) {}
  ~FramePool() {
    for (auto& [p, n] : regions_) munmap(p, n);
  }
  // A slot, or nullptr when the pool is at its limit (or mmap failed).
  uint8_t* take() {
    std::lock_guard lk(mu_);
    if (free_.empty() && !grow_locked()) return nullptr;
    uint8_t* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give_back(uint8_t* p) {
    std::lock_guard lk(mu_);
    free_.push_back(p);
  }

 private:
  bool grow_locked() {
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
  std::mutex mu_;
  size_t max_bytes_, slots_ = 0;
  std::vector<uint8_t*> free_;
  std::vector<std::pair<void*, size_t>> regions_;
};

// The bytes of one frame: a pool slot (returned when the last reference
// goes) or a heap buffer. In a slot the bytes start where
// DeltaReader::read_frame_in put them (set_start); elsewhere at the start.
class FrameBuf {
 public:
  FrameBuf(size_t len, const std::shared_ptr<FramePool>& pool) : len_(len) {
    if (pool && len >= FramePool::kMinPooled && len <= kMaxFrameOut) {
      if (uint8_t* p = pool->take()) {
        room_ = data_ = p;
        pool_ = pool;
        return;
      }
    }
    heap_.reset(new uint8_t[len ? len : 1]);  // not zeroed: every byte is written by the rebuild
    room_ = data_ = heap_.get();
  }
  ~FrameBuf() {
    if (pool_) pool_->give_back(room_);
  }
  FrameBuf(const FrameBuf&) = delete;
  FrameBuf& operator=(const FrameBuf&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return len_; }
  // A pool slot: aligned, with the room DeltaReader::read_frame_in asks for.
  bool lendable() const { return pool_ != nullptr; }
  uint8_t* room() { return room_; }
  // Where the bytes start, inside room() (what read_frame_in returned).
  void set_start(const uint8_t* p) { data_ = room_ + (p - room_); }
  // Memory it holds (what the cache limit counts).
  size_t footprint() const { return pool_ ? FramePool::kSlot : len_; }

 private:
  size_t len_;
  uint8_t* room_ = nullptr;  // the slot or heap buffer
  uint8_t* data_ = nullptr;  // the frame's bytes, within it
  std::unique_ptr<uint8_t[]> heap_;
  std::shared_ptr<FramePool> pool_;
};

using FramePtr = std::shared_ptr<const FrameBuf>;

// Reads VmRSS / VmHWM of this process from /proc/self/status.
void read_rss(uint64_t& rss, uint64_t& peak) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    auto kb = [&](const char* key, uint64_t& out) {
      if (line.rfind(key, 0) == 0) out = std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
    };
    kb("VmRSS:", rss);
    kb("VmHWM:", peak);
  }
}

bool ends_with(const std::string& s, const char* suf) {
  size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

struct Counters {
  std::atomic<uint64_t> reads{0}, bytes_served{0}, frames_rebuilt{0}, bytes_rebuilt{0};
  std::atomic<uint64_t> cache_hits{0}, cache_misses{0}, cache_evictions{0}, spent_evictions{0}, inflight_joins{0};
  std::atomic<uint64_t> prefetch_issued{0}, prefetch_hits{0}, prefetch_wasted{0}, prefetch_dropped{0}, prefetch_failed{0};
  std::atomic<uint64_t> sparse_rereads{0};
  std::atomic<uint64_t> persistent_hits{0}, persistent_rejected{0}, persistent_stored{0}, persistent_skipped{0};
  std::atomic<uint64_t> retries{0}, retried_ok{0};
  std::atomic<uint64_t> errors_io{0}, errors_corrupt{0}, errors_base_missing{0}, errors_other{0};
  // Rebuild latency: per-bucket (not cumulative) counts, the last one is +Inf.
  std::atomic<uint64_t> rebuild_hist[kRebuildLatencyBucketCount + 1] = {};
  std::atomic<uint64_t> rebuild_sum_ns{0};
};

}  // namespace

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

bool frame_cache_policy_stores(FrameCachePolicy p, Codec c) {
  switch (p) {
    case FrameCachePolicy::all: return true;
    case FrameCachePolicy::none: return false;
    case FrameCachePolicy::slow: break;
  }
  // Rebuilding these is about as cheap as reading the frame back from LMDB
  // (copy_base, store: a copy of cached base or delta bytes; sub_lanes:
  // ~1.5 GB/s per core), and storing them would write the model into the
  // cache a second time on a cold read.
  return c != Codec::copy_base && c != Codec::store && c != Codec::sub_lanes;
}

// ---------------------------------------------------------------------------
// The inode table and the frame service.
struct ModelFs::Impl {
  struct Node {
    std::string name;
    uint64_t parent = 0;
    bool is_dir = false;
    bool hidden = false;         // not listed by readdir (the control dir)
    bool control = false;        // the stats file
    std::map<std::string, uint64_t, std::less<>> children;  // directories
    uint32_t model = 0, file = 0;  // regular files of a model
    uint64_t size = 0;
    uint32_t mode = 0555;
  };
  // Sequential-reader tracking of one file, for the prefetcher.
  struct SeqState {
    std::mutex mu;
    uint64_t next_off = UINT64_MAX;  // end of the last read (UINT64_MAX: none yet)
    bool opened = false;             // opened at least once (the open hint was given)
    uint64_t window = 0;             // bytes to keep rebuilt ahead; 0 after a far seek
    uint32_t ahead_to = 0;           // local frames below this were already requested
  };
  struct Model {
    std::string dir;
    std::unique_ptr<DeltaReader> reader;
    uint64_t first_gid = 0;  // global frame id of its frame 0
  };
  struct Entry {
    FramePtr data;
    std::list<uint64_t>::iterator lru;  // in `lru`, or in `spent` once spent
    // Byte ranges of it put into replies, merged: a range served twice (a
    // re-read) must not make a frame look served whole.
    std::vector<std::pair<uint32_t, uint32_t>> served;
    bool from_prefetch = false, used = false, is_spent = false;
    // Rebuilt for a sparse re-read (plan_prefetch) of a frame served whole:
    // the kernel dropped some of its pages and asks for those; the rest it
    // still holds. Once any byte of it is served it leaves first, like a
    // frame served whole (keeping it for the pages the kernel holds would
    // fill the cache for nothing). A few recent ones stay in `spent` for the
    // next dropped page of the same frame.
    bool reread = false;
  };
  // Who rebuilds a frame: a reader (demand), a worker ahead of a reader
  // (prefetch: speculative), or a worker on behalf of a reader that needs
  // the frame now (assist: demand work done in parallel).
  enum class Kind { demand, prefetch, assist };
  struct Inflight {
    bool done = false, prefetch = false;
    Status st;
    FramePtr data;
  };

  FsOptions opt;
  std::shared_ptr<FramePool> pool;  // null: frames on the heap
  const std::chrono::steady_clock::time_point t_start = std::chrono::steady_clock::now();
  std::vector<Model> models;
  std::vector<Node> nodes;  // ino = index + 1
  // A read shorter than this, of a frame served whole before and not
  // contiguous with the file's last read, is a page the kernel dropped asked
  // for again (see plan_prefetch).
  static constexpr uint64_t kShortRead = 128u << 10;
  std::vector<std::unique_ptr<SeqState>> seq;  // per node (files only)
  uint64_t total_frames = 0;
  Counters c;

  // Frame service state, all under mu.
  mutable std::mutex mu;
  std::condition_variable cv;       // an in-flight rebuild finished
  std::condition_variable work_cv;  // prefetch queue changed / stopping
  std::condition_variable idle_cv;  // prefetch queue drained
  std::unordered_map<uint64_t, Entry> cache;
  std::list<uint64_t> lru;  // front: most recent
  // Frames whose every byte has gone out in replies: the kernel's page
  // cache holds them now, so only a re-read after the kernel dropped them
  // would ask again. Keeping them up to the cache limit made a sequential
  // read cycle through the whole limit of slot memory (each new frame took
  // the slot of one served tens of MiB before): the daemon's resident
  // memory was the cache limit plus the rest, for nothing. So they live in a
  // short list of their own (opt.spent_keep_bytes), evicted first; the
  // cache limit is left to frames not yet (fully) read: prefetched ones and
  // those a reader takes in parts.
  std::list<uint64_t> spent;  // front: most recent
  size_t cache_bytes = 0, spent_bytes = 0;  // spent_bytes: of `spent` (opt.spent_keep_bytes at most)
  // Per global frame id: its bytes are in the kernel's page cache as far as
  // the daemon knows: served whole (or rebuilt for a sparse re-read and
  // served, Entry::reread) since a reader or the queues last asked for it. A
  // worker that took a job before a reader rebuilt the frame itself may get
  // to it only after the frame was served and evicted: it then skips it
  // instead of rebuilding it for nobody. A short read of such a frame is a
  // page the kernel dropped (plan_prefetch).
  std::vector<bool> served_whole;
  std::unordered_map<uint64_t, std::shared_ptr<Inflight>> inflight;
  // Two queues for the workers: `urgent` (frames a reader waits for, or the
  // start of a file just opened) before `queue` (prefetch ahead of a
  // sequential reader). A prefetch job only starts while no reader rebuilds
  // a frame itself and no urgent job runs: on a machine with few cores,
  // speculative work must not slow down the bytes someone is waiting for.
  std::deque<uint64_t> urgent, queue;
  std::unordered_map<uint64_t, Kind> queued;  // frames in either queue
  unsigned busy_workers = 0;
  unsigned demand_active = 0;  // rebuilds done by readers themselves or for them (assist, urgent)
  bool stopping = false;
  std::atomic<bool> shutting_down{false};  // set first by ~ModelFs (no retries any more)
  std::vector<std::thread> workers;

  // Milliseconds since the file system was created (trace lines).
  double now_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  }
  static std::string ms_str(double ms) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", ms);
    return b;
  }

  void log(const std::string& line) const {
    if (opt.log) opt.log(line);
    else std::fprintf(stderr, "tenpak-fs: %s\n", line.c_str());
  }

  const Node* node(uint64_t ino) const {
    if (ino == 0 || ino > nodes.size()) return nullptr;
    return &nodes[ino - 1];
  }

  FsAttr attr_of(uint64_t ino) const {
    const Node& n = nodes[ino - 1];
    FsAttr a;
    a.ino = ino;
    a.is_dir = n.is_dir;
    a.mode = n.mode;
    if (n.is_dir) {
      a.nlink = 2;
      for (auto& [_, ch] : n.children)
        if (nodes[ch - 1].is_dir) ++a.nlink;
    } else {
      a.size = n.control ? kStatsFileSize : n.size;
    }
    return a;
  }

  // Directory `path` (relative, "" = root), created as needed.
  Result<uint64_t> make_dir(const std::string& path) {
    uint64_t cur = kRootIno;
    size_t p = 0;
    while (p < path.size()) {
      size_t q = path.find('/', p);
      if (q == std::string::npos) q = path.size();
      std::string comp = path.substr(p, q - p);
      p = q + 1;
      auto it = nodes[cur - 1].children.find(comp);
      if (it != nodes[cur - 1].children.end()) {
        if (!nodes[it->second - 1].is_dir)
          return Status{Errc::invalid, "'" + path + "': '" + comp + "' is a file of another model"};
        cur = it->second;
        continue;
      }
      Node d;
      d.name = comp;
      d.parent = cur;
      d.is_dir = true;
      nodes.push_back(std::move(d));
      uint64_t ino = nodes.size();
      nodes[cur - 1].children.emplace(comp, ino);
      cur = ino;
    }
    return cur;
  }

  Status add_model(uint32_t mi) {
    const Model& m = models[mi];
    const Manifest& man = m.reader->manifest();
    for (uint32_t fi = 0; fi < man.out_files.size(); ++fi) {
      const OutFile& of = man.out_files[fi];
      std::string full = m.dir.empty() ? of.name : m.dir + "/" + of.name;
      size_t slash = full.rfind('/');
      auto dir = make_dir(slash == std::string::npos ? "" : full.substr(0, slash));
      if (!dir.ok()) return dir.status();
      std::string base = slash == std::string::npos ? full : full.substr(slash + 1);
      if (nodes[*dir - 1].children.count(base))
        return {Errc::invalid, m.reader->name() + ": '" + full + "' is already used by another model or file"};
      Node f;
      f.name = base;
      f.parent = *dir;
      f.model = mi;
      f.file = fi;
      f.size = of.size;
      f.mode = (of.mode & 0444) ? (of.mode & 0555) : 0444;  // read-only view of the recorded mode
      nodes.push_back(std::move(f));
      nodes[*dir - 1].children.emplace(base, nodes.size());
    }
    return Status::Ok();
  }

  // --- frame service -------------------------------------------------------

  std::pair<uint32_t, uint32_t> locate(uint64_t gid) const {
    auto it = std::upper_bound(models.begin(), models.end(), gid,
                               [](uint64_t g, const Model& m) { return g < m.first_gid; });
    uint32_t mi = static_cast<uint32_t>(it - models.begin() - 1);
    return {mi, static_cast<uint32_t>(gid - models[mi].first_gid)};
  }

  void insert_locked(uint64_t gid, FramePtr data, bool prefetch, bool reread = false) {
    if (cache.count(gid)) return;
    lru.push_front(gid);
    Entry e;
    e.data = data;
    e.lru = lru.begin();
    e.from_prefetch = prefetch;
    e.reread = reread;
    e.used = !prefetch;
    cache_bytes += data->footprint();
    cache.emplace(gid, std::move(e));
    while (cache_bytes > opt.frame_cache_bytes && (!spent.empty() || lru.size() > 1)) evict_locked(!spent.empty());
  }

  // Drops the least recent frame of `spent` (or of `lru`). Replies being
  // written still hold their frames (FramePtr), so this never frees bytes in use.
  void evict_locked(bool from_spent) {
    std::list<uint64_t>& l = from_spent ? spent : lru;
    auto vit = cache.find(l.back());
    const size_t fp = vit->second.data->footprint();
    if (vit->second.from_prefetch && !vit->second.used) c.prefetch_wasted++;
    cache_bytes -= fp;
    if (from_spent) spent_bytes -= fp;
    cache.erase(vit);
    l.pop_back();
    (from_spent ? c.spent_evictions : c.cache_evictions)++;
  }

  // Bytes [from, from+n) of frame `gid` went into a reply; a frame served
  // whole moves to `spent`.
  void served_locked(uint64_t gid, uint32_t from, uint32_t n) {
    auto it = cache.find(gid);
    if (it == cache.end()) return;  // evicted meanwhile (its reply holds it)
    Entry& e = it->second;
    if (e.is_spent) return;
    if (e.reread) {
      make_spent_locked(gid, e);
      return;
    }
    // Merge [from, from+n) into the sorted, disjoint ranges (a frame is
    // served by a few requests: these lists stay short).
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
    make_spent_locked(gid, e);
  }

  // Frame `gid` (cached as `e`) is in the kernel's page cache as far as
  // the daemon knows: it moves to `spent`, evicted first.
  void make_spent_locked(uint64_t gid, Entry& e) {
    e.is_spent = true;
    served_whole[gid] = true;
    spent.splice(spent.begin(), lru, e.lru);
    spent_bytes += e.data->footprint();
    while (spent_bytes > opt.spent_keep_bytes && !spent.empty()) evict_locked(true);
  }

  void record_latency(std::chrono::steady_clock::duration d) {
    const double s = std::chrono::duration<double>(d).count();
    size_t i = 0;
    while (i < kRebuildLatencyBucketCount && s > kRebuildLatencyBuckets[i]) ++i;
    c.rebuild_hist[i]++;
    c.rebuild_sum_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }

  // Rebuilds frame `gid`; the persistent cache first when there is one.
  // io errors (an origin read that failed) and corrupt frames (wrong bytes:
  // DeltaReader already rebuilt once more from the origins, cached copies
  // dropped; bytes flipped in transit or served wrong for a while heal on a
  // later fetch) are retried with back-off; a missing base does not heal by
  // waiting.
  Result<FramePtr> rebuild(uint64_t gid) {
    auto [mi, k] = locate(gid);
    DeltaReader& r = *models[mi].reader;
    const Frame& f = r.manifest().frames[k];
    auto buf = std::make_shared<FrameBuf>(f.out_len, pool);
#if TENPAK_HAVE_CACHE
    if (opt.block_cache) {
      if (opt.block_cache->get(frame_cache_key(f.hash), f.out_len, buf->data())) {
        if (xxh128(buf->data(), buf->size()) == f.hash) {
          c.persistent_hits++;
          return FramePtr(std::move(buf));
        }
        c.persistent_rejected++;  // never served: dropped, rebuilt from the origin below
        opt.block_cache->erase(frame_cache_key(f.hash));
      }
    }
#endif
    Status st;
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned attempt = 0;; ++attempt) {
      if (buf->lendable()) {
        auto at = r.read_frame_in(k, buf->room());
        st = at.status();
        if (st.ok()) buf->set_start(*at);
      } else {
        st = r.read_frame(k, buf->data());
      }
      if (st.ok()) {
        if (attempt > 0) c.retried_ok++;
        break;
      }
      if ((st.code() != Errc::io && st.code() != Errc::corrupt) || attempt >= opt.retries || shutting_down.load()) break;
      c.retries++;
      log("retrying frame rebuild (attempt " + std::to_string(attempt + 2) + "): " + st.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<uint64_t>(opt.retry_delay_ms) << attempt));
    }
    if (!st.ok()) return st;
    record_latency(std::chrono::steady_clock::now() - t0);
    c.frames_rebuilt++;
    c.bytes_rebuilt += buf->size();
#if TENPAK_HAVE_CACHE
    if (opt.block_cache) {
      if (frame_cache_policy_stores(opt.cache_frames, f.codec)) {
        opt.block_cache->put(frame_cache_key(f.hash), buf->data(), buf->size());
        c.persistent_stored++;
      } else {
        c.persistent_skipped++;
      }
    }
#endif
    return FramePtr(std::move(buf));
  }

  // The verified bytes of frame `gid`: from the cache, by joining a rebuild
  // in flight, or by rebuilding it. Workers (kind prefetch or assist) return
  // at once when the frame is cached or in flight.
  Result<FramePtr> get(uint64_t gid, Kind kind, bool sparse_reread = false) {
    const bool prefetch = kind != Kind::demand;
    std::unique_lock lk(mu);
    bool rejoined = false;
    for (;;) {
      auto it = cache.find(gid);
      if (it != cache.end()) {
        if (prefetch) return it->second.data;
        std::list<uint64_t>& l = it->second.is_spent ? spent : lru;
        l.splice(l.begin(), l, it->second.lru);
        c.cache_hits++;
        if (it->second.from_prefetch && !it->second.used) c.prefetch_hits++;
        it->second.used = true;
        return it->second.data;
      }
      auto fit = inflight.find(gid);
      if (fit == inflight.end()) break;
      if (prefetch) return FramePtr();
      auto inf = fit->second;
      c.inflight_joins++;
      if (inf->prefetch) c.prefetch_hits++;
      cv.wait(lk, [&] { return inf->done; });
      if (inf->st.ok()) {
        auto e = cache.find(gid);
        if (e != cache.end()) e->second.used = true;
        return inf->data;
      }
      // A prefetch that failed on an origin read: rebuild on our own (with
      // our own retries), once. Other causes would fail the same way again.
      if (!inf->prefetch || rejoined || inf->st.code() != Errc::io) return inf->st;
      rejoined = true;
    }
    if (prefetch && served_whole[gid]) return FramePtr();  // a job overtaken by readers (see served_whole)
    if (kind == Kind::prefetch) c.prefetch_issued++;
    else c.cache_misses++;
    // A reader rebuilding a frame itself takes it off the workers' queues: a
    // job left there could run after the frame was served whole and evicted
    // (spent frames leave the cache soon), and rebuild it for nobody.
    // A frame rebuilt for a sparse re-read keeps its served_whole bit: the
    // kernel still holds the rest of it, and other short reads of it that
    // arrive meanwhile (the kernel sends a readahead's holes at once) must
    // also be seen as sparse.
    const bool reread = sparse_reread && served_whole[gid];
    if (kind == Kind::demand) {
      unqueue_locked(gid);
      if (!reread) served_whole[gid] = false;
    }
    auto inf = std::make_shared<Inflight>();
    inf->prefetch = kind == Kind::prefetch;
    inflight.emplace(gid, inf);
    if (kind == Kind::demand) ++demand_active;
    lk.unlock();
    const double t0 = opt.trace_reads ? now_ms() : 0;
    auto r = rebuild(gid);
    if (opt.trace_reads) {
      auto [mi, k] = locate(gid);
      log("rebuild frame " + std::to_string(k) + " of " + models[mi].reader->name() +
          (kind == Kind::prefetch ? " (prefetch)" : kind == Kind::assist ? " (assist)" : " (read)") +
          " at " + ms_str(t0) + " ms took " + ms_str(now_ms() - t0) + " ms" + (r.ok() ? "" : ": " + r.status().message()));
    }
    lk.lock();
    inflight.erase(gid);
    inf->done = true;
    if (r.ok()) {
      inf->data = *r;
      insert_locked(gid, *r, kind == Kind::prefetch, reread);
    } else {
      inf->st = r.status();
    }
    if (kind == Kind::demand && --demand_active == 0) work_cv.notify_all();
    cv.notify_all();
    if (!r.ok()) return r.status();
    return *r;
  }

  // Drops frame `gid` from the workers' queues, if there.
  void unqueue_locked(uint64_t gid) {
    auto q = queued.find(gid);
    if (q == queued.end()) return;
    for (auto* d : {&urgent, &queue})
      if (auto it = std::find(d->begin(), d->end(), gid); it != d->end()) {
        d->erase(it);
        break;
      }
    queued.erase(q);
    if (queue.empty() && urgent.empty() && busy_workers == 0) idle_cv.notify_all();
  }

  // Queues frames for the prefetch workers (dropped when the queue is
  // full), or, `urgent`, at the front of the line: `kind` says whether a
  // reader needs them (assist) or they are a guess (prefetch).
  // Returns false when frames were dropped (queue full) or there are no workers.
  bool enqueue(uint64_t g0, uint64_t g1, Kind kind = Kind::prefetch, bool urgent_line = false) {
    if (workers.empty()) return false;
    if (g0 >= g1) return true;
    std::lock_guard lk(mu);
    for (uint64_t g = g0; g < g1; ++g) {
      if (cache.count(g) || inflight.count(g)) continue;
      served_whole[g] = false;  // asked for anew (a re-read: the kernel dropped it)
      auto q = queued.find(g);
      if (q != queued.end()) {
        if (!urgent_line) continue;
        // Promote: a reader now needs a frame queued as a prefetch.
        if (q->second == Kind::prefetch) {
          auto it = std::find(queue.begin(), queue.end(), g);
          if (it != queue.end()) {
            queue.erase(it);
            urgent.push_back(g);
          }
        }
        q->second = kind;
        continue;
      }
      if (urgent_line) {
        urgent.push_back(g);
      } else {
        if (queue.size() >= opt.prefetch_queue_frames) {
          c.prefetch_dropped += g1 - g;
          work_cv.notify_all();
          return false;
        }
        queue.push_back(g);
      }
      queued.emplace(g, kind);
    }
    work_cv.notify_all();
    return true;
  }

  // A worker thread. Jobs of the prefetch queue run at a lower CPU priority
  // (opt.prefetch_nice) so that a reader's own rebuilds win the cores;
  // urgent jobs are taken first and run at normal priority.
  void worker() {
    int nice_now = 0;
    auto set_nice = [&](int v) {  // best effort: raising it back needs CAP_SYS_NICE
      if (v == nice_now) return;
      if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), v) == 0) nice_now = v;
    };
    std::unique_lock lk(mu);
    for (;;) {
      work_cv.wait(lk, [&] { return stopping || !urgent.empty() || (!queue.empty() && demand_active == 0); });
      if (stopping) return;
      const bool is_urgent = !urgent.empty();
      std::deque<uint64_t>& q = is_urgent ? urgent : queue;
      uint64_t g = q.front();
      q.pop_front();
      Kind kind = Kind::prefetch;
      if (auto it = queued.find(g); it != queued.end()) {
        kind = it->second;
        queued.erase(it);
      }
      ++busy_workers;
      if (is_urgent) ++demand_active;
      lk.unlock();
      if (opt.on_job_taken) opt.on_job_taken(g);
      // Urgent jobs (also the guesses of an open hint) are about to be waited
      // for: a niced thread there would be a priority inversion.
      set_nice(is_urgent ? 0 : opt.prefetch_nice);
      auto r = get(g, kind);
      if (!r.ok()) {
        if (kind == Kind::prefetch) c.prefetch_failed++;
        auto [mi, k] = locate(g);
        log(std::string(kind == Kind::prefetch ? "prefetch" : "assisted rebuild") + " of frame " + std::to_string(k) + " of " +
            models[mi].reader->name() + " failed (a reader will retry): " + r.status().message());
      }
      lk.lock();
      --busy_workers;
      if (is_urgent && --demand_active == 0) work_cv.notify_all();
      if (queue.empty() && urgent.empty() && busy_workers == 0) idle_cv.notify_all();
    }
  }

  // Global frame ids [g0, g1) of the head of file node `n`: its first frame
  // (a safetensors header is frames of its own) and opt.open_hint_bytes
  // after it, the start of the first tensor, which a loader reads next.
  std::pair<uint64_t, uint64_t> head_frames(const Node& n) const {
    const Model& m = models[n.model];
    const Manifest& man = m.reader->manifest();
    const OutFile& of = man.out_files[n.file];
    const uint64_t want = std::min<uint64_t>(n.size, man.frames[of.first_frame].out_len + opt.open_hint_bytes);
    auto [a, b] = m.reader->frames_for(n.file, 0, want);
    return {m.first_gid + a, m.first_gid + b};
  }

  // Prefetch policy for a demand read of [off, off+len) of file node `n`
  // whose frames are [a, b) (local indices). Returns true for a sparse
  // re-read (below), which plans nothing.
  bool plan_prefetch(uint64_t ino, const Node& n, uint64_t off, uint64_t len, uint32_t a, uint32_t b) {
    const Model& m = models[n.model];
    const OutFile& of = m.reader->manifest().out_files[n.file];
    const uint64_t max_window = std::max<uint64_t>(1, std::min<uint64_t>(opt.prefetch_window_bytes, opt.frame_cache_bytes / 4));
    // Kernel readahead requests of one window arrive out of order across
    // FUSE threads: within this distance of the last read counts as sequential.
    const uint64_t slack = 4u << 20;
    // A short read of a frame already served whole means the kernel dropped
    // some of its pages. When the file was read before and the kernel then
    // let a few scattered pages go, a reader passing over it again asks for
    // just those: short requests with gaps between them (readahead skips the
    // pages still cached), which look sequential within `slack`. Prefetching
    // then would rebuild frames whose bytes the kernel still holds. So such a
    // read (short, frame served whole, not contiguous with the last one)
    // plans nothing (and the frames it rebuilds leave the frame cache first:
    // Entry::reread). A re-read of a file the kernel dropped as a whole asks
    // for contiguous, growing requests: it is planned as usual from its
    // second request on (also when its first request looked sparse).
    bool reread = false;
    if (len < kShortRead) {
      std::lock_guard lk(mu);
      reread = served_whole[m.first_gid + a];
    }
    SeqState& s = *seq[ino - 1];
    uint32_t from, to;
    {
      std::lock_guard lk(s.mu);
      if (reread && off != s.next_off) {
        s.next_off = off + len;
        s.ahead_to = b;  // a reader that goes on from here is planned from here
        c.sparse_rereads++;
        return true;
      }
      if (workers.empty()) return false;
      bool header = off == 0 && ends_with(of.name, ".safetensors");
      bool sequential = s.next_off != UINT64_MAX && off + slack >= s.next_off && off <= s.next_off + slack;
      // A jump: frames requested ahead of the old position say nothing about
      // this one (a second pass from the start must be prefetched again; a
      // read at 0 is one, also in a file shorter than `slack`).
      if (!sequential || off == 0) s.ahead_to = b;
      if (header) s.window = max_window;
      else if (sequential) s.window = std::min<uint64_t>(max_window, s.window ? s.window * 2 : (2u << 20));
      else s.window = 0;  // far seek: read only what is asked
      s.next_off = sequential ? std::max(s.next_off, off + len) : off + len;
      if (s.window == 0) return false;  // (ahead_to was reset above: no window means a jump)
      uint64_t end = std::min<uint64_t>(of.size, off + len + s.window);
      to = end > off + len ? m.reader->frames_for(n.file, off + len, end - off - len).second : b;
      from = std::max(s.ahead_to, b);
      if (to <= from) return false;
      s.ahead_to = to;
    }
    enqueue(m.first_gid + from, m.first_gid + to);
    return false;
  }

  void count_error(const Status& st) {
    switch (st.code()) {
      case Errc::io: c.errors_io++; break;
      case Errc::corrupt: c.errors_corrupt++; break;
      case Errc::invalid: c.errors_base_missing++; break;
      default: c.errors_other++; break;
    }
  }
  static const char* cause_name(Errc e) {
    switch (e) {
      case Errc::io: return "io (origin read failed)";
      case Errc::corrupt: return "corrupt (frame does not decode to its hash)";
      case Errc::invalid: return "base_missing";
      default: return errc_name(e);
    }
  }

};

ModelFs::ModelFs(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Reads still in progress on the workers (a prefetch waiting on a stalled
// origin) are cancelled first: the joins below do not wait them out.
ModelFs::~ModelFs() {
  cancel_reads();
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  for (auto& t : impl_->workers) t.join();
}

void ModelFs::cancel_reads() {
  impl_->shutting_down = true;
  for (auto& m : impl_->models) m.reader->cancel();
  // Queued jobs would only fail one by one ("cancelled"), each logged.
  std::lock_guard lk(impl_->mu);
  impl_->urgent.clear();
  impl_->queue.clear();
  impl_->queued.clear();
  if (impl_->busy_workers == 0) impl_->idle_cv.notify_all();
}

Result<std::unique_ptr<ModelFs>> ModelFs::create(std::vector<FsModel> models, FsOptions opt) {
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(opt);
  Impl::Node root;
  root.is_dir = true;
  root.parent = kRootIno;
  impl->nodes.push_back(std::move(root));
  // Sorted by dir so that inodes do not depend on the order models were found in.
  std::sort(models.begin(), models.end(), [](const FsModel& a, const FsModel& b) { return a.dir < b.dir; });
  uint64_t gid = 0;
  for (auto& m : models) {
    if (!m.reader) return Status{Errc::invalid, "model '" + m.dir + "' has no reader"};
    if (!m.dir.empty() && !is_safe_relative_path(m.dir))
      return Status{Errc::invalid, "'" + m.dir + "': not a safe relative path for a model"};
    if (m.dir == kControlDir || m.dir.rfind(std::string(kControlDir) + "/", 0) == 0)
      return Status{Errc::invalid, "'" + m.dir + "': reserved name"};
    Impl::Model im;
    im.dir = m.dir;
    im.first_gid = gid;
    gid += m.reader->manifest().frames.size();
    im.reader = std::move(m.reader);
    impl->models.push_back(std::move(im));
  }
  impl->total_frames = gid;
  impl->served_whole.assign(gid, false);
  // Room for a full cache plus the frames in flight and in replies.
  impl->pool = std::make_shared<FramePool>(impl->opt.frame_cache_bytes + (32u << 20));
  for (uint32_t mi = 0; mi < impl->models.size(); ++mi) {
    const std::string& d = impl->models[mi].dir;
    if (!d.empty()) {
      auto r = impl->make_dir(d);
      if (!r.ok()) return r.status();
    }
    TP_RETURN_IF_ERROR(impl->add_model(mi));
  }
  if (impl->nodes[0].children.count(kControlDir))
    return Status{Errc::invalid, std::string("a model has a file named '") + kControlDir + "' at the root (reserved)"};
  // The control directory, after every model node so model inodes do not move.
  Impl::Node cd;
  cd.name = kControlDir;
  cd.parent = kRootIno;
  cd.is_dir = true;
  cd.hidden = true;
  impl->nodes.push_back(std::move(cd));
  uint64_t cd_ino = impl->nodes.size();
  impl->nodes[0].children.emplace(kControlDir, cd_ino);
  Impl::Node sf;
  sf.name = kStatsFile;
  sf.parent = cd_ino;
  sf.control = true;
  sf.mode = 0444;
  impl->nodes.push_back(std::move(sf));
  impl->nodes[cd_ino - 1].children.emplace(kStatsFile, impl->nodes.size());

  impl->seq.resize(impl->nodes.size());
  for (size_t i = 0; i < impl->nodes.size(); ++i)
    if (!impl->nodes[i].is_dir && !impl->nodes[i].control) impl->seq[i] = std::make_unique<Impl::SeqState>();

  Impl* raw = impl.get();
  for (unsigned i = 0; i < raw->opt.prefetch_workers; ++i) raw->workers.emplace_back([raw] { raw->worker(); });
  return std::unique_ptr<ModelFs>(new ModelFs(std::move(impl)));
}

std::optional<FsAttr> ModelFs::lookup(uint64_t parent, std::string_view name) const {
  const Impl::Node* p = impl_->node(parent);
  if (!p || !p->is_dir) return std::nullopt;
  auto it = p->children.find(name);
  if (it == p->children.end()) return std::nullopt;
  return impl_->attr_of(it->second);
}

std::optional<FsAttr> ModelFs::getattr(uint64_t ino) const {
  if (!impl_->node(ino)) return std::nullopt;
  return impl_->attr_of(ino);
}

std::optional<std::vector<FsDirEntry>> ModelFs::readdir(uint64_t ino) const {
  const Impl::Node* n = impl_->node(ino);
  if (!n || !n->is_dir) return std::nullopt;
  std::vector<FsDirEntry> out;
  for (auto& [name, ch] : n->children) {
    if (impl_->nodes[ch - 1].hidden) continue;
    out.push_back({name, impl_->attr_of(ch)});
  }
  return out;
}

bool ModelFs::is_control_file(uint64_t ino) const {
  const Impl::Node* n = impl_->node(ino);
  return n && n->control;
}

Result<std::vector<ModelFs::Slice>> ModelFs::read_slices(uint64_t ino, uint64_t off, size_t len) {
  const Impl::Node* n = impl_->node(ino);
  if (!n) return Status{Errc::invalid, "no such inode " + std::to_string(ino)};
  if (n->is_dir) return Status{Errc::invalid, "'" + n->name + "' is a directory"};
  std::vector<Slice> out;
  if (n->control) {
    auto s = std::make_shared<std::vector<uint8_t>>();
    std::string j = stats_json() + "\n";
    j.resize(kStatsFileSize, ' ');  // fixed size: what stat() reported (the JSON is far smaller)
    s->assign(j.begin(), j.end());
    if (off < s->size()) out.push_back({s, s->data() + off, std::min<size_t>(len, s->size() - off)});
    return out;
  }
  if (off >= n->size || len == 0) return out;
  len = static_cast<size_t>(std::min<uint64_t>(len, n->size - off));
  impl_->c.reads++;
  const double t0 = impl_->opt.trace_reads ? impl_->now_ms() : 0;
  Impl::Model& m = impl_->models[n->model];
  auto [a, b] = m.reader->frames_for(n->file, off, len);
  const bool sparse = impl_->plan_prefetch(ino, *n, off, len, a, b);
  // Frames after the first that this read needs go to the workers at once,
  // so they are rebuilt in parallel with the first (done here). Not for a
  // sparse re-read across a frame boundary: both frames are rebuilt here in
  // turn, as the reader's own, so that both are known as re-read frames
  // (Entry::reread); a small cost in latency for a rare case.
  if (b - a > 1 && !sparse) impl_->enqueue(m.first_gid + a + 1, m.first_gid + b, Impl::Kind::assist, true);
  const Manifest& man = m.reader->manifest();
  struct Served {
    uint64_t gid;
    uint32_t from, len;  // the slice's bytes within its frame
  };
  std::vector<Served> served;  // one per slice of `out`
  for (uint32_t k = a; k < b; ++k) {
    const Frame& f = man.frames[k];
    auto r = impl_->get(m.first_gid + k, Impl::Kind::demand, sparse);
    if (!r.ok()) {
      impl_->count_error(r.status());
      const OutFile& of = man.out_files[n->file];
      impl_->log("EIO: " + (m.dir.empty() ? of.name : m.dir + "/" + of.name) + " offset " + std::to_string(off) +
                 " length " + std::to_string(len) + ": cause " + Impl::cause_name(r.status().code()) + ": " +
                 r.status().message());
      return r.status();
    }
    uint64_t s0 = std::max<uint64_t>(off, f.out_offset), s1 = std::min<uint64_t>(off + len, f.out_offset + f.out_len);
    if (s1 <= s0) continue;
    const FramePtr& fp = *r;
    out.push_back({fp, fp->data() + (s0 - f.out_offset), static_cast<size_t>(s1 - s0)});
    served.push_back({m.first_gid + k, static_cast<uint32_t>(s0 - f.out_offset), static_cast<uint32_t>(s1 - s0)});
  }
  {
    std::lock_guard lk(impl_->mu);
    for (const Served& sv : served) impl_->served_locked(sv.gid, sv.from, sv.len);
  }
  impl_->c.bytes_served += len;
  if (impl_->opt.trace_reads)
    impl_->log("read ino " + std::to_string(ino) + " offset " + std::to_string(off) + " length " + std::to_string(len) +
               " frames " + std::to_string(a) + ".." + std::to_string(b) + " at " + Impl::ms_str(t0) + " ms took " +
               Impl::ms_str(impl_->now_ms() - t0) + " ms");
  return out;
}

void ModelFs::opened(uint64_t ino) {
  const Impl::Node* n = impl_->node(ino);
  if (!n || n->is_dir || n->control || n->size == 0) return;
  {
    Impl::SeqState& s = *impl_->seq[ino - 1];
    std::lock_guard lk(s.mu);
    if (s.opened) return;
    s.opened = true;
  }
  if (impl_->opt.open_hint_bytes == 0) return;
  auto [g0, g1] = impl_->head_frames(*n);
  impl_->enqueue(g0, g1, Impl::Kind::prefetch, true);
}

uint64_t ModelFs::warm_heads() {
  const FsOptions& o = impl_->opt;
  const uint64_t budget = std::min<uint64_t>(o.warm_bytes, o.frame_cache_bytes / 4);
  uint64_t queued = 0;
  for (uint64_t ino = 1; ino <= impl_->nodes.size(); ++ino) {
    const Impl::Node& n = impl_->nodes[ino - 1];
    if (n.is_dir || n.control || n.size == 0) continue;
    const Impl::Model& m = impl_->models[n.model];
    const Manifest& man = m.reader->manifest();
    auto [g0, g1] = impl_->head_frames(n);
    uint64_t bytes = 0;
    for (uint64_t g = g0; g < g1; ++g) bytes += man.frames[g - m.first_gid].out_len;
    if (queued + bytes > budget) break;
    if (!impl_->enqueue(g0, g1, Impl::Kind::prefetch, false)) break;  // no workers, or queue full
    queued += bytes;
  }
  if (queued) impl_->log("warming the heads of the files: " + std::to_string(queued) + " bytes queued");
  return queued;
}

Result<size_t> ModelFs::read(uint64_t ino, uint64_t off, size_t len, uint8_t* dst) {
  auto r = read_slices(ino, off, len);
  if (!r.ok()) return r.status();
  size_t n = 0;
  for (auto& s : *r) {
    std::memcpy(dst + n, s.data, s.len);
    n += s.len;
  }
  return n;
}

FsStats ModelFs::stats() const {
  const Counters& c = impl_->c;
  FsStats s;
  s.reads = c.reads;
  s.bytes_served = c.bytes_served;
  s.frames_rebuilt = c.frames_rebuilt;
  s.bytes_rebuilt = c.bytes_rebuilt;
  s.cache_hits = c.cache_hits;
  s.cache_misses = c.cache_misses;
  s.cache_evictions = c.cache_evictions;
  s.spent_evictions = c.spent_evictions;
  s.inflight_joins = c.inflight_joins;
  s.prefetch_issued = c.prefetch_issued;
  s.prefetch_hits = c.prefetch_hits;
  s.prefetch_wasted = c.prefetch_wasted;
  s.sparse_rereads = c.sparse_rereads;
  s.prefetch_dropped = c.prefetch_dropped;
  s.prefetch_failed = c.prefetch_failed;
  s.persistent_hits = c.persistent_hits;
  s.persistent_rejected = c.persistent_rejected;
  s.persistent_stored = c.persistent_stored;
  s.persistent_skipped = c.persistent_skipped;
  s.retries = c.retries;
  s.retried_ok = c.retried_ok;
  s.errors_io = c.errors_io;
  s.errors_corrupt = c.errors_corrupt;
  s.errors_base_missing = c.errors_base_missing;
  s.errors_other = c.errors_other;
  // Read the +Inf bucket first and the sum last: a rebuild recorded
  // meanwhile makes the total at least the sum of the buckets read.
  uint64_t cum = 0;
  for (size_t i = 0; i < kRebuildLatencyBucketCount; ++i) {
    cum += c.rebuild_hist[i];
    s.rebuild_latency_buckets[i] = cum;
  }
  s.rebuild_latency_count = cum + c.rebuild_hist[kRebuildLatencyBucketCount];
  s.rebuild_latency_sum_s = static_cast<double>(c.rebuild_sum_ns.load()) / 1e9;
  {
    std::lock_guard lk(impl_->mu);
    s.cache_bytes = impl_->cache_bytes;
    s.spent_bytes = impl_->spent_bytes;
  }
  s.cache_limit = impl_->opt.frame_cache_bytes;
  read_rss(s.rss_bytes, s.peak_rss_bytes);
  return s;
}

std::string ModelFs::stats_json() const {
  FsStats s = stats();
  nlohmann::ordered_json j = {
      {"pid", static_cast<int64_t>(getpid())},
      {"models", impl_->models.size()},
      {"reads", s.reads},
      {"bytes_served", s.bytes_served},
      {"frames_rebuilt", s.frames_rebuilt},
      {"bytes_rebuilt", s.bytes_rebuilt},
      {"frame_cache", {{"hits", s.cache_hits}, {"misses", s.cache_misses}, {"evictions", s.cache_evictions},
                       {"spent_evictions", s.spent_evictions}, {"bytes", s.cache_bytes},
                       {"spent_bytes", s.spent_bytes}, {"limit", s.cache_limit}}},
      {"inflight_joins", s.inflight_joins},
      {"prefetch", {{"issued", s.prefetch_issued}, {"hits", s.prefetch_hits}, {"wasted", s.prefetch_wasted},
                    {"dropped", s.prefetch_dropped}, {"failed", s.prefetch_failed},
                    {"sparse_rereads", s.sparse_rereads}}},
      {"base_reads", {{"direct_bytes", local_read_stats().direct_bytes},
                      {"page_cache_bytes", local_read_stats().page_cache_bytes}}},
      {"persistent_cache", {{"enabled", static_cast<bool>(impl_->opt.block_cache)},
                            {"frames", frame_cache_policy_name(impl_->opt.cache_frames)},
                            {"hits", s.persistent_hits},
                            {"rejected", s.persistent_rejected},
                            {"stored", s.persistent_stored},
                            {"skipped", s.persistent_skipped}}},
      {"retries", s.retries},
      {"retried_ok", s.retried_ok},
      {"errors", {{"io", s.errors_io}, {"corrupt", s.errors_corrupt}, {"base_missing", s.errors_base_missing},
                  {"other", s.errors_other}}},
      {"rss_bytes", s.rss_bytes},
      {"peak_rss_bytes", s.peak_rss_bytes},
  };
  // Cumulative counts per upper bound, as in the Prometheus export.
  nlohmann::ordered_json le = nlohmann::ordered_json::array(), counts = nlohmann::ordered_json::array();
  for (size_t i = 0; i < kRebuildLatencyBucketCount; ++i) {
    le.push_back(kRebuildLatencyBuckets[i]);
    counts.push_back(s.rebuild_latency_buckets[i]);
  }
  j["rebuild_latency"] = {{"le_s", le}, {"cumulative_counts", counts}, {"count", s.rebuild_latency_count},
                          {"sum_s", s.rebuild_latency_sum_s}};
  return j.dump(1);
}

void ModelFs::drain_prefetch() {
  std::unique_lock lk(impl_->mu);
  impl_->idle_cv.wait(lk, [&] { return impl_->queue.empty() && impl_->urgent.empty() && impl_->busy_workers == 0; });
}

}  // namespace tenpak
