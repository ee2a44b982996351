// The LMDB block cache.
//
// Layout (four named databases in one environment):
//   v: key -> [magic u32][payload length u32][xxh3-64 of key+payload u64][payload]
//   a: key -> last access tick (big-endian u64)
//   l: tick(be64) + key -> ""      (LRU order: oldest first)
//   m: "bytes" -> total bytes of values (u64), kept in the same transactions
//      as every change, so a reopen (after a restart or kill -9) needs no scan.
// Access ticks of hits are buffered in memory and written in batches (with
// the next put, or every kTouchBatch hits): approximate LRU, no write
// transaction per read.
//
// Damage (a truncated data.mdb, a damaged page: disk errors, an OS crash
// with MDB_NOSYNC, a stray write) must never take a process down: LMDB
// trusts its file and would fault (SIGBUS past the end of the file) or
// abort on an assertion. So the file is checked before LMDB walks it: at
// open, every B-tree page of the snapshot in use is read with pread and
// checked (lmdb_check.h; values are not read: 200k entries, a 1.7 GB file,
// took 0.1 s with its pages cached and 1.5 s cold on this VM); a value's own
// overflow page header is checked with pread before the value is used or
// its pages freed. A damaged environment is quarantined: data.mdb is
// renamed to damaged-data.mdb (replacing an older one: one is kept for a
// post-mortem, never more), lock.mdb removed, the event logged through
// CacheOptions::warn and counted (CacheStats::quarantined); at open the
// cache then starts empty, a process that finds damage later goes on
// without cache (the next opener starts empty). tenpak.lock (flock)
// serialises check-and-quarantine between processes, so one never sets
// aside a file another has just created. LMDB gives crash safety (copy-on-write B-trees) and
// multi-process sharing (its lock file); MDB_NOTLS lets read transactions
// run on any thread; they are opened per get and closed at once.
#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "lmdb_check.h"
#include "tenpak/cache.h"

namespace tenpak {
namespace {

constexpr uint32_t kMagic = 0x31435054;  // "TPC1"
constexpr size_t kHdr = 16;
constexpr size_t kMaxKey = 400;          // LMDB's default limit is 511; the LRU key adds 8
constexpr size_t kTouchBatch = 512;

uint64_t now_tick() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}
void put_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) p[7 - i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t value_hash(std::string_view key, const uint8_t* p, size_t n) {
  return XXH3_64bits_withSeed(p, n, XXH3_64bits(key.data(), key.size()));
}
// Long keys are replaced by their hash (LMDB keys are bounded).
std::string db_key(std::string_view key) {
  if (key.size() <= kMaxKey) return std::string(key);
  Xxh128 h = xxh128(key.data(), key.size());
  return "#" + hex(h);
}

// Errors that mean the environment itself is damaged (quarantined).
bool damage_code(int rc) {
  return rc == MDB_CORRUPTED || rc == MDB_PANIC || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH;
}

// An exclusive flock on DIR/tenpak.lock for the scope (best effort: when the
// lock file cannot be made, nothing is serialised).
struct DirLock {
  int fd = -1;
  explicit DirLock(const std::string& dir) {
    fd = ::open((dir + "/tenpak.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0)
      while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
      }
  }
  ~DirLock() {
    if (fd >= 0) ::close(fd);
  }
};

// Sets data.mdb aside as damaged-data.mdb and removes lock.mdb. With
// `only_ino` != 0, only when data.mdb is still that file (another process
// may have replaced it already). Call under DirLock.
bool set_aside(const std::string& dir, ino_t only_ino = 0) {
  std::string data = dir + "/data.mdb";
  struct stat st;
  if (::stat(data.c_str(), &st) != 0) return false;
  if (only_ino && st.st_ino != only_ino) return false;
  if (::rename(data.c_str(), (dir + "/damaged-data.mdb").c_str()) != 0) return false;
  ::unlink((dir + "/lock.mdb").c_str());
  return true;
}

// The snapshot check of an open environment: a read transaction pins a
// snapshot while its pages are checked with pread. Empty: no damage found.
std::string check_env(MDB_env* env, int fd, uint32_t* page_size = nullptr) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    MDB_txn* t = nullptr;
    int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &t);
    if (rc == MDB_MAP_RESIZED) {
      mdb_env_set_mapsize(env, 0);
      rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &t);
    }
    if (rc) return damage_code(rc) ? std::string(mdb_strerror(rc)) : std::string();
    lmdbcheck::FileCheck c = lmdbcheck::check_file(fd, mdb_txn_id(t));
    mdb_txn_abort(t);
    if (!c.snapshot_found) continue;  // a writer committed twice meanwhile: check the newer snapshot
    if (page_size) *page_size = c.page_size;
    return c.problem;
  }
  return "";  // busy with commits: another process is using it as we speak, and it checks too
}

MDB_val val(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
MDB_val val(const void* p, size_t n) { return MDB_val{n, const_cast<void*>(p)}; }

struct Txn {
  MDB_txn* t = nullptr;
  ~Txn() {
    if (t) mdb_txn_abort(t);
  }
  int commit() {
    int rc = mdb_txn_commit(t);
    t = nullptr;
    return rc;
  }
};

class LmdbCache final : public BlockCache {
 public:
  LmdbCache(std::string dir, uint64_t limit, CacheOptions opt) : dir_(std::move(dir)), limit_(limit), opt_(std::move(opt)) {}
  ~LmdbCache() override {
    if (env_) {
      if (opened_) flush_touches();
      mdb_env_close(env_);
    }
  }

  // Returns a message when the environment cannot be used.
  std::string open() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) return dir_ + ": cannot create the cache directory: " + ec.message();
    if (::access(dir_.c_str(), R_OK | W_OK | X_OK) != 0) return dir_ + ": cache directory not writable: " + std::strerror(errno);
    DirLock lock(dir_);
    for (int attempt = 0;; ++attempt) {
      std::string damage;
      int rc = open_env(damage);
      if (rc == 0 && damage.empty()) break;
      if (rc && !damage_code(rc)) return dir_ + ": cannot open the LMDB cache: " + mdb_strerror(rc);
      if (rc) damage = mdb_strerror(rc);
      mdb_env_close(env_);
      env_ = nullptr;
      if (attempt > 0) return dir_ + ": the LMDB cache is damaged again after a quarantine (" + damage + ")";
      if (!set_aside(dir_)) return dir_ + ": the LMDB cache is damaged (" + damage + ") and cannot be set aside: " + std::strerror(errno);
      quarantined_.fetch_add(1);
      say("tenpak: warning: cache " + dir_ + ": data.mdb is damaged (" + damage +
          "); set aside as damaged-data.mdb, starting with an empty cache");
    }
    int rc = 0;
    int dead = 0;
    mdb_reader_check(env_, &dead);  // slots of killed processes
    Txn tx;
    rc = mdb_txn_begin(env_, nullptr, 0, &tx.t);
    if (rc) return dir_ + ": cannot use the LMDB cache: " + mdb_strerror(rc);
    if ((rc = mdb_dbi_open(tx.t, "v", MDB_CREATE, &v_)) || (rc = mdb_dbi_open(tx.t, "a", MDB_CREATE, &a_)) ||
        (rc = mdb_dbi_open(tx.t, "l", MDB_CREATE, &l_)) || (rc = mdb_dbi_open(tx.t, "m", MDB_CREATE, &m_)))
      return dir_ + ": cannot use the LMDB cache: " + mdb_strerror(rc);
    rc = tx.commit();
    if (rc) return dir_ + ": cannot use the LMDB cache: " + mdb_strerror(rc);
    opened_ = true;
    return "";
  }

  // Opens the environment and checks its snapshot (fd_, page_size_ set).
  // Returns an LMDB code; `damage` says what the check found.
  int open_env(std::string& damage) {
    int rc = mdb_env_create(&env_);
    if (rc) return rc;
    // Room for the values plus B-tree pages, copy-on-write and free pages
    // (lmdb_file_bound): the map bounds the file, which grows only as used.
    mdb_env_set_mapsize(env_, lmdb_file_bound(limit_));
    mdb_env_set_maxdbs(env_, 8);
    mdb_env_set_maxreaders(env_, 1024);
    unsigned flags = MDB_NOTLS | MDB_NOMETASYNC | (opt_.sync ? 0 : MDB_NOSYNC);
    if ((rc = mdb_env_open(env_, dir_.c_str(), flags, 0644))) return rc;
    if ((rc = mdb_env_get_fd(env_, &fd_))) return rc;
    struct stat st;
    if (::fstat(fd_, &st) == 0) ino_ = st.st_ino;
    damage = check_env(env_, fd_, &page_size_);
    return 0;
  }

  void say(const std::string& msg) const {
    if (opt_.warn) opt_.warn(msg);
    else std::fprintf(stderr, "%s\n", msg.c_str());
  }

  // Damage found while in use: no more cache in this process, the file set
  // aside for the next opener (unless someone replaced it already).
  void damaged(const std::string& what) {
    if (broken_.exchange(true)) return;
    bool moved;
    {
      DirLock lock(dir_);
      moved = set_aside(dir_, ino_);
    }
    if (moved) quarantined_.fetch_add(1);
    say("tenpak: warning: cache " + dir_ + ": data.mdb is damaged (" + what + ")" +
        (moved ? "; set aside as damaged-data.mdb" : "") + "; continuing without cache");
  }


  bool get(std::string_view key_in, size_t len, uint8_t* out) override {
    if (broken_.load()) return miss();
    std::string key = db_key(key_in);
    bool corrupt = false;
    {
      Txn tx;
      int rc = begin(MDB_RDONLY, tx);
      if (rc) return backend_error(rc, "read");
      MDB_val k = val(key), v;
      rc = mdb_get(tx.t, v_, &k, &v);
      if (rc == MDB_NOTFOUND) return miss();
      if (rc) return backend_error(rc, "read");
      uint8_t hdr[kHdr];
      const bool want = v.mv_size == kHdr + len;
      if (v.mv_size < kHdr) {
        corrupt = true;
      } else if (!value_pages_ok(v)) {
        damaged("the page header of a value is damaged");
        return miss();
      } else if (!copy_value(v.mv_data, hdr, want ? out : nullptr, want ? len : 0)) {
        return miss();  // an I/O error: say miss, keep the entry
      } else {
        uint32_t magic, n;
        uint64_t h;
        std::memcpy(&magic, hdr, 4);
        std::memcpy(&n, hdr + 4, 4);
        std::memcpy(&h, hdr + 8, 8);
        if (magic != kMagic || n != v.mv_size - kHdr) corrupt = true;
        else if (!want) return miss();  // another length: not what the caller wants (checked when asked for)
        else if (value_hash(key_in, out, len) != h) corrupt = true;  // checked on the copy
      }
    }
    if (corrupt) {
      corrupt_.fetch_add(1);
      erase_key(key);
      return miss();
    }
    hits_.fetch_add(1);
    touch(key);
    return true;
  }

  // Copies a value's header (kHdr bytes) and then `len` bytes of it into
  // `out`, from `p`, its address in the map (inside a read transaction,
  // which keeps the pages from being reused meanwhile). Read with preadv
  // from data.mdb when the file offset of `p` is known: the map's pages
  // would each cost a page fault on first touch in this process (20-50 us
  // on virtual machines: more than the copy), and they would count in the
  // process's resident memory. Else copied from the map. False on an I/O
  // error or a short read.
  bool copy_value(const void* p, uint8_t* hdr, uint8_t* out, size_t len) {
    uint64_t off;
    if (!file_offset(p, off)) {
      std::memcpy(hdr, p, kHdr);
      if (len) std::memcpy(out, static_cast<const uint8_t*>(p) + kHdr, len);
      return true;
    }
    iovec iov[2] = {{hdr, kHdr}, {out, len}};
    size_t want = kHdr + len, got = 0;
    while (got < want) {  // preadv may return short; resume where it stopped
      ssize_t r;
      if (got < kHdr) {
        iovec rest[2] = {{hdr + got, kHdr - got}, iov[1]};
        r = ::preadv(fd_, rest, len ? 2 : 1, static_cast<off_t>(off + got));
      } else {
        r = ::pread(fd_, out + (got - kHdr), want - got, static_cast<off_t>(off + got));
      }
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }

  // The offset in data.mdb of address `p`, a pointer into LMDB's map (from
  // mdb_get, inside a read transaction): the mapping of this process that
  // holds `p` tells it (/proc/self/maps). The mapping found is kept and
  // looked up again only for a `p` outside it; begin() forgets it when LMDB
  // maps the file anew. False when unknown (no /proc, or no file mapping
  // holds `p`): the caller copies from the map, and, until the next remap,
  // without looking again (unless `remember_failure` is false: a pointer
  // that may lie outside the map).
  bool file_offset(const void* p, uint64_t& off, bool remember_failure = true) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> g(map_mu_);
    if (!(a >= map_.start && a < map_.end)) {
      MapRange found;
      if (map_failed_ || !find_mapping(a, found)) {
        if (remember_failure) map_failed_ = true;
        return false;
      }
      map_ = found;
    }
    off = map_.file_off + (a - map_.start);
    return true;
  }

  struct MapRange {
    uintptr_t start = 0, end = 0;
    uint64_t file_off = 0;
  };
  // The file mapping of this process that holds address `a`.
  static bool find_mapping(uintptr_t a, MapRange& out) {
    std::FILE* f = std::fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[4096];
    bool found = false;
    while (!found && std::fgets(line, sizeof line, f)) {
      unsigned long long start, end, offset, ino;
      if (std::sscanf(line, "%llx-%llx %*s %llx %*x:%*x %llu", &start, &end, &offset, &ino) != 4) continue;
      if (a < start || a >= end || ino == 0) continue;
      out = {static_cast<uintptr_t>(start), static_cast<uintptr_t>(end), offset};
      found = true;
    }
    std::fclose(f);
    return found;
  }

  // Whether the pages of a value read in this transaction are sound (its
  // overflow header, read with pread), before the value is read or freed.
  bool value_pages_ok(const MDB_val& v) {
    uint64_t off;
    // Not in the file: a page of the current write transaction (or no
    // /proc: then values are checked by their hash only).
    if (!file_offset(v.mv_data, off, false)) return true;
    return lmdbcheck::check_overflow_header(fd_, page_size_, off, v.mv_size);
  }

  bool contains(std::string_view key_in) override {
    if (broken_.load()) return false;
    std::string key = db_key(key_in);
    Txn tx;
    if (begin(MDB_RDONLY, tx)) return false;
    MDB_val k = val(key), v;
    return mdb_get(tx.t, v_, &k, &v) == 0;
  }

  void put(std::string_view key_in, const uint8_t* data, size_t len) override {
    if (broken_.load()) return;
    size_t vsize = kHdr + len;
    if (vsize > limit_ / 4 || len > 0xffffffffu) return;  // never let one value flush a quarter of the cache
    std::string key = db_key(key_in);
    uint64_t h = value_hash(key_in, data, len);
    // A full map (free pages too fragmented for this value, or held by a
    // long reader) makes room in a transaction of its own, since pages
    // freed by a transaction are reused only after it commits: down to half
    // the limit, then to nothing. The file never grows past the map.
    for (int attempt = 0; attempt < 3; ++attempt) {
      int rc = attempt == 0 ? 0 : make_room(attempt == 1 ? limit_ / 2 : 0);
      if (rc == 0) rc = put_txn(key, data, len, h);
      if (rc == 0) {
        puts_.fetch_add(1);
        return;
      }
      if (rc != MDB_MAP_FULL && rc != MDB_TXN_FULL) {
        backend_error(rc, "write");
        return;
      }
    }
    errors_.fetch_add(1);  // still no room: this value is not stored (counted, not fatal)
  }

  // Evicts down to `target` bytes and commits.
  int make_room(uint64_t target) {
    Txn tx;
    int rc = begin(0, tx);
    if (rc) return rc;
    uint64_t bytes = read_bytes(tx.t);
    if ((rc = evict_to(tx.t, bytes, target))) return rc;
    if ((rc = write_bytes(tx.t, bytes))) return rc;
    return tx.commit();
  }

  void erase(std::string_view key) override { erase_key(db_key(key)); }

  CacheStats stats() const override {
    CacheStats s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.puts = puts_.load();
    s.evictions = evictions_.load();
    s.corrupt_dropped = corrupt_.load();
    s.errors = errors_.load();
    s.quarantined = quarantined_.load();
    s.bytes_limit = limit_;
    if (!broken_.load()) {
      Txn tx;
      if (const_cast<LmdbCache*>(this)->begin(MDB_RDONLY, tx) == 0) s.bytes_used = read_bytes(tx.t);
    }
    return s;
  }
  bool usable() const override { return !broken_.load(); }
  std::string describe() const override { return "lmdb:" + dir_; }

 private:
  int begin(unsigned flags, Txn& tx) {
    int rc = mdb_txn_begin(env_, nullptr, flags, &tx.t);
    if (rc == MDB_MAP_RESIZED) {  // another process grew the map: adopt its size
      mdb_env_set_mapsize(env_, 0);
      std::lock_guard<std::mutex> g(map_mu_);  // the map may have moved
      map_ = {};
      map_failed_ = false;
      rc = mdb_txn_begin(env_, nullptr, flags, &tx.t);
    }
    if (rc) tx.t = nullptr;
    return rc;
  }

  uint64_t read_bytes(MDB_txn* t) const {
    static const std::string k = "bytes";
    MDB_val kk = val(k), v;
    if (mdb_get(t, m_, &kk, &v) != 0 || v.mv_size != 8) return 0;
    uint64_t b;
    std::memcpy(&b, v.mv_data, 8);
    return b;
  }
  int write_bytes(MDB_txn* t, uint64_t b) {
    static const std::string k = "bytes";
    MDB_val kk = val(k), v = val(&b, 8);
    return mdb_put(t, m_, &kk, &v, 0);
  }

  // Removes key from v, a, l; returns the value size removed (0 if absent).
  int remove_in(MDB_txn* t, const std::string& key, uint64_t& removed) {
    removed = 0;
    MDB_val k = val(key), v;
    int rc = mdb_get(t, v_, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (!value_pages_ok(v)) return MDB_CORRUPTED;  // freeing its pages would free by a damaged count
    removed = v.mv_size;
    if ((rc = mdb_del(t, v_, &k, nullptr))) return rc;
    MDB_val at;
    rc = mdb_get(t, a_, &k, &at);
    if (rc == 0 && at.mv_size == 8) {
      std::string lk(static_cast<const char*>(at.mv_data), 8);
      lk += key;
      MDB_val lkv = val(lk);
      mdb_del(t, l_, &lkv, nullptr);
      mdb_del(t, a_, &k, nullptr);
    }
    return 0;
  }

  // Sets key's access tick (when the key is still present).
  int set_tick(MDB_txn* t, const std::string& key, uint64_t tick, bool must_exist) {
    MDB_val k = val(key), at;
    int rc = mdb_get(t, a_, &k, &at);
    if (rc == 0 && at.mv_size == 8) {
      std::string old(static_cast<const char*>(at.mv_data), 8);
      old += key;
      MDB_val ov = val(old);
      mdb_del(t, l_, &ov, nullptr);
    } else if (must_exist) {
      return 0;  // evicted meanwhile
    }
    uint8_t tb[8];
    put_be64(tb, tick);
    MDB_val tv = val(tb, 8);
    if ((rc = mdb_put(t, a_, &k, &tv, 0))) return rc;
    std::string lk(reinterpret_cast<char*>(tb), 8);
    lk += key;
    MDB_val lkv = val(lk), empty = val("", 0);
    return mdb_put(t, l_, &lkv, &empty, 0);
  }

  // Evicts oldest entries until bytes <= target. Returns an LMDB code.
  int evict_to(MDB_txn* t, uint64_t& bytes, uint64_t target) {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(t, l_, &c);
    if (rc) return rc;
    std::vector<std::string> victims;
    MDB_val k, v;
    uint64_t b = bytes;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && b > target; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      if (k.mv_size < 8) continue;
      std::string key(static_cast<const char*>(k.mv_data) + 8, k.mv_size - 8);
      MDB_val kk = val(key), vv;
      if (mdb_get(t, v_, &kk, &vv) == 0) b -= std::min<uint64_t>(b, vv.mv_size);
      victims.push_back(std::move(key));
    }
    mdb_cursor_close(c);
    for (auto& key : victims) {
      uint64_t removed;
      if ((rc = remove_in(t, key, removed))) return rc;
      bytes -= std::min(bytes, removed);
      evictions_.fetch_add(1);
    }
    return 0;
  }

  int put_txn(const std::string& key, const uint8_t* data, size_t len, uint64_t h) {
    std::vector<std::pair<std::string, uint64_t>> touches = take_touches();
    Txn tx;
    int rc = begin(0, tx);
    if (rc) return rc;
    uint64_t bytes = read_bytes(tx.t);
    for (auto& [k, tick] : touches)
      if ((rc = set_tick(tx.t, k, tick, true))) return rc;
    uint64_t removed;
    if ((rc = remove_in(tx.t, key, removed))) return rc;
    bytes -= std::min(bytes, removed);
    size_t vsize = kHdr + len;
    // Evict in batches: down to 90% of the limit.
    if (bytes + vsize > limit_) {
      uint64_t target = limit_ - limit_ / 10;
      target = target > vsize ? target - vsize : 0;
      if ((rc = evict_to(tx.t, bytes, target))) return rc;
    }
    MDB_val k = val(key), v;
    v.mv_size = vsize;
    if ((rc = mdb_put(tx.t, v_, &k, &v, MDB_RESERVE))) return rc;
    uint8_t* p = static_cast<uint8_t*>(v.mv_data);
    uint32_t n = static_cast<uint32_t>(len);
    std::memcpy(p, &kMagic, 4);
    std::memcpy(p + 4, &n, 4);
    std::memcpy(p + 8, &h, 8);
    std::memcpy(p + kHdr, data, len);
    if ((rc = set_tick(tx.t, key, now_tick(), false))) return rc;
    if ((rc = write_bytes(tx.t, bytes + vsize))) return rc;
    return tx.commit();
  }

  void erase_key(const std::string& key) {
    if (broken_.load()) return;
    Txn tx;
    int rc = begin(0, tx);
    if (rc) {
      backend_error(rc, "write");
      return;
    }
    uint64_t removed = 0;
    rc = remove_in(tx.t, key, removed);
    if (rc == 0 && removed) rc = write_bytes(tx.t, read_bytes(tx.t) - std::min(read_bytes(tx.t), removed));
    if (rc == 0) rc = tx.commit();
    if (rc) backend_error(rc, "write");
  }

  void touch(const std::string& key) {
    bool flush = false;
    {
      std::lock_guard<std::mutex> g(touch_mu_);
      touches_[key] = now_tick();
      flush = touches_.size() >= kTouchBatch;
    }
    if (flush) flush_touches();
  }
  std::vector<std::pair<std::string, uint64_t>> take_touches() {
    std::lock_guard<std::mutex> g(touch_mu_);
    std::vector<std::pair<std::string, uint64_t>> out(touches_.begin(), touches_.end());
    touches_.clear();
    return out;
  }
  void flush_touches() {
    auto t = take_touches();
    if (t.empty() || broken_.load()) return;
    Txn tx;
    if (begin(0, tx)) return;
    for (auto& [k, tick] : t)
      if (set_tick(tx.t, k, tick, true)) return;
    tx.commit();
  }

  bool miss() {
    misses_.fetch_add(1);
    return false;
  }
  // Counts the error; errors that mean the cache cannot work any more
  // (disk full, I/O error) disable it with one warning, damage quarantines it.
  bool backend_error(int rc, const char* what) {
    errors_.fetch_add(1);
    misses_.fetch_add(1);
    if (damage_code(rc)) {
      damaged(std::string(what) + " failed: " + mdb_strerror(rc));
      return false;
    }
    bool fatal = rc == ENOSPC || rc == EIO || rc == EDQUOT || rc == EROFS;
    if (fatal && !broken_.exchange(true)) {
      std::string msg = "tenpak: warning: cache " + dir_ + ": " + what + " failed (" + mdb_strerror(rc) +
                        "); continuing without cache";
      if (opt_.warn) opt_.warn(msg);
      else std::fprintf(stderr, "%s\n", msg.c_str());
    }
    return false;
  }

  std::string dir_;
  uint64_t limit_;
  CacheOptions opt_;
  MDB_env* env_ = nullptr;
  int fd_ = -1;  // data.mdb (LMDB's descriptor), for reading values
  ino_t ino_ = 0;  // its inode: the file this process checked and uses
  uint32_t page_size_ = 0;
  std::mutex map_mu_;
  MapRange map_;             // the mapping of data.mdb found last (file_offset)
  bool map_failed_ = false;  // none found since the last remap
  bool opened_ = false;
  MDB_dbi v_ = 0, a_ = 0, l_ = 0, m_ = 0;
  std::atomic<bool> broken_{false};
  std::atomic<uint64_t> hits_{0}, misses_{0}, puts_{0}, evictions_{0}, corrupt_{0}, errors_{0}, quarantined_{0};
  std::mutex touch_mu_;
  std::unordered_map<std::string, uint64_t> touches_;
};

// Opens an existing environment for maintenance (no creation).
struct EnvHandle {
  MDB_env* env = nullptr;
  ~EnvHandle() {
    if (env) mdb_env_close(env);
  }
};
// Errc::corrupt when the environment is damaged (checked before use).
Status open_existing(const std::string& dir, EnvHandle& h) {
  struct stat st;
  if (::stat((dir + "/data.mdb").c_str(), &st) != 0) return {Errc::not_found, dir + ": no TenPak cache here"};
  int rc = mdb_env_create(&h.env);
  if (!rc) rc = mdb_env_set_maxdbs(h.env, 8);
  if (!rc) rc = mdb_env_set_maxreaders(h.env, 1024);
  if (!rc) rc = mdb_env_open(h.env, dir.c_str(), MDB_NOTLS, 0644);
  auto damaged = [&](const std::string& why) {
    return Status{Errc::corrupt, dir + ": the cache is damaged (" + why + "); `tenpak cache clear` removes it"};
  };
  if (rc && damage_code(rc)) return damaged(mdb_strerror(rc));
  if (rc) return {Errc::io, dir + ": cannot open the cache: " + mdb_strerror(rc)};
  int fd = -1;
  if ((rc = mdb_env_get_fd(h.env, &fd))) return {Errc::io, dir + ": cannot open the cache: " + mdb_strerror(rc)};
  std::string problem = check_env(h.env, fd);
  if (!problem.empty()) return damaged(problem);
  return Status::Ok();
}

}  // namespace

Result<LmdbCacheInfo> inspect_lmdb_cache(const std::string& dir) {
  EnvHandle h;
  TP_RETURN_IF_ERROR(open_existing(dir, h));
  LmdbCacheInfo info;
  struct stat st;
  if (::stat((dir + "/data.mdb").c_str(), &st) == 0) info.file_bytes = static_cast<uint64_t>(st.st_size);
  Txn tx;
  int rc = mdb_txn_begin(h.env, nullptr, MDB_RDONLY, &tx.t);
  MDB_dbi v, m;
  if (!rc) rc = mdb_dbi_open(tx.t, "v", 0, &v);
  if (!rc) rc = mdb_dbi_open(tx.t, "m", 0, &m);
  if (rc == MDB_NOTFOUND) return info;  // created but never written
  if (rc) return Status{Errc::io, dir + ": cannot read the cache: " + mdb_strerror(rc)};
  MDB_stat ms;
  if (mdb_stat(tx.t, v, &ms) == 0) info.entries = ms.ms_entries;
  std::string k = "bytes";
  MDB_val kk = val(k), bv;
  if (mdb_get(tx.t, m, &kk, &bv) == 0 && bv.mv_size == 8) std::memcpy(&info.bytes_used, bv.mv_data, 8);
  return info;
}

Status clear_lmdb_cache(const std::string& dir) {
  DirLock lock(dir);
  ::unlink((dir + "/damaged-data.mdb").c_str());
  EnvHandle h;
  Status open = open_existing(dir, h);
  if (open.code() == Errc::corrupt) {
    // Damaged: LMDB cannot be trusted to walk it (mdb_drop aborts on a bad
    // page), so the files go. A process still using them keeps its open
    // copy; the next opener creates a new environment.
    mdb_env_close(h.env);
    h.env = nullptr;
    if (::unlink((dir + "/data.mdb").c_str()) != 0 && errno != ENOENT)
      return {Errc::io, dir + "/data.mdb: cannot remove the damaged cache: " + std::strerror(errno)};
    ::unlink((dir + "/lock.mdb").c_str());
    int rc = mdb_env_create(&h.env);  // an empty environment in its place
    if (!rc) rc = mdb_env_set_maxdbs(h.env, 8);
    if (!rc) rc = mdb_env_open(h.env, dir.c_str(), MDB_NOTLS, 0644);
    if (rc) return {Errc::io, dir + ": cannot create an empty cache: " + mdb_strerror(rc)};
    return Status::Ok();
  }
  TP_RETURN_IF_ERROR(open);
  Txn tx;
  int rc = mdb_txn_begin(h.env, nullptr, 0, &tx.t);
  for (const char* name : {"v", "a", "l", "m"}) {
    MDB_dbi d;
    if (rc) break;
    rc = mdb_dbi_open(tx.t, name, 0, &d);
    if (rc == MDB_NOTFOUND) {
      rc = 0;
      continue;
    }
    if (!rc) rc = mdb_drop(tx.t, d, 0);  // empty it, keep the database
  }
  if (!rc) rc = tx.commit();
  if (rc) return {Errc::io, dir + ": cannot clear the cache: " + mdb_strerror(rc)};
  return Status::Ok();
}

uint64_t lmdb_file_bound(uint64_t limit) { return limit + limit / 8 + (64ull << 20); }

std::shared_ptr<BlockCache> open_lmdb_cache(const std::string& dir, uint64_t size_limit, const CacheOptions& opt) {
  auto c = std::make_shared<LmdbCache>(dir, size_limit, opt);
  std::string err = c->open();
  if (err.empty()) return c;
  std::string msg = "tenpak: warning: " + err + "; continuing without cache";
  if (opt.warn) opt.warn(msg);
  else std::fprintf(stderr, "%s\n", msg.c_str());
  return make_null_cache(err);
}

}  // namespace tenpak
