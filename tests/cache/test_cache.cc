// The block caches (LMDB, memory) and the caching BlockSource decorator.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <mutex>
#include <thread>

#include "../test_util.h"
#include "tenpak/cache.h"
#include "tenpak/cached_source.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 g(seed);
  for (auto& b : v) b = static_cast<uint8_t>(g());
  return v;
}

struct Warnings {
  std::vector<std::string> msgs;
  CacheOptions opts() {
    CacheOptions o;
    o.warn = [this](const std::string& m) { msgs.push_back(m); };
    return o;
  }
};

// An in-memory origin that counts reads and can be slowed down or broken.
class FakeOrigin : public BlockSource {
 public:
  explicit FakeOrigin(std::vector<uint8_t> d) : data_(std::move(d)) {}
  uint64_t size() const override { return data_.size(); }
  const std::string& name() const override { return name_; }
  Status read(uint64_t off, size_t len, uint8_t* dst) override {
    reads++;
    bytes += len;
    if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (fail) return {Errc::io, "origin down"};
    if (off > data_.size() || len > data_.size() - off) return {Errc::corrupt, "past end"};
    std::memcpy(dst, data_.data() + off, len);
    return Status::Ok();
  }
  std::vector<uint8_t> data_;
  std::string name_ = "fake";
  std::atomic<int> reads{0};
  std::atomic<uint64_t> bytes{0};
  int delay_ms = 0;
  std::atomic<bool> fail{false};
};

TEST(MemoryCache, GetPutAndLru) {
  auto c = make_memory_cache(3000);
  auto a = pattern(1000, 1), b = pattern(1000, 2), d = pattern(1000, 3), e = pattern(1000, 4);
  c->put("a", a.data(), a.size());
  c->put("b", b.data(), b.size());
  c->put("d", d.data(), d.size());
  std::vector<uint8_t> out(1000);
  EXPECT_TRUE(c->get("a", 1000, out.data()));  // a is now the most recent
  EXPECT_EQ(out, a);
  EXPECT_FALSE(c->get("a", 999, out.data()));  // wrong length: a miss
  c->put("e", e.data(), e.size());             // evicts b, the least recently used
  EXPECT_FALSE(c->get("b", 1000, out.data()));
  EXPECT_TRUE(c->get("a", 1000, out.data()));
  EXPECT_LE(c->stats().bytes_used, 3000u);
  EXPECT_EQ(c->stats().evictions, 1u);
}

TEST(LmdbCache, PersistsAcrossReopen) {
  std::string dir = tptest::temp_dir("lmdb");
  auto v = pattern(100000, 5);
  {
    auto c = open_lmdb_cache(dir, 64 << 20);
    ASSERT_TRUE(c->usable());
    c->put("k1", v.data(), v.size());
    std::vector<uint8_t> out(v.size());
    EXPECT_TRUE(c->get("k1", v.size(), out.data()));
    EXPECT_EQ(out, v);
    EXPECT_FALSE(c->get("k2", 10, out.data()));
  }
  auto c = open_lmdb_cache(dir, 64 << 20);
  std::vector<uint8_t> out(v.size());
  EXPECT_TRUE(c->get("k1", v.size(), out.data()));
  EXPECT_EQ(out, v);
  EXPECT_EQ(c->stats().bytes_used, v.size() + 16);  // kept, not rescanned
  // Long keys work (hashed internally).
  std::string longkey(2000, 'x');
  c->put(longkey, v.data(), 10);
  EXPECT_TRUE(c->get(longkey, 10, out.data()));
  c->erase(longkey);
  EXPECT_FALSE(c->get(longkey, 10, out.data()));
  fs::remove_all(dir);
}

// Flips one byte of a stored value inside data.mdb.
bool corrupt_value_in_file(const std::string& dir, const std::vector<uint8_t>& v) {
  std::string f = tptest::read_file(dir + "/data.mdb");
  auto pos = std::string_view(f).find(std::string_view(reinterpret_cast<const char*>(v.data()) + 1000, 64));
  if (pos == std::string::npos) return false;
  int fd = ::open((dir + "/data.mdb").c_str(), O_WRONLY);
  char b = static_cast<char>(f[pos] ^ 0x40);
  bool ok = ::pwrite(fd, &b, 1, static_cast<off_t>(pos)) == 1;
  ::close(fd);
  return ok;
}

TEST(LmdbCache, CorruptEntryIsDroppedAndRefetched) {
  std::string dir = tptest::temp_dir("lmdb-corrupt");
  auto data = pattern(3 << 20, 9);
  {
    auto c = open_lmdb_cache(dir, 64 << 20);
    auto src = wrap_with_cache(std::make_unique<FakeOrigin>(data), c, "id", 1 << 20);
    std::vector<uint8_t> out(1 << 20);
    ASSERT_TRUE(src->read(1 << 20, out.size(), out.data()).ok());
  }
  std::vector<uint8_t> block1(data.begin() + (1 << 20), data.begin() + (2 << 20));
  ASSERT_TRUE(corrupt_value_in_file(dir, block1));
  auto c = open_lmdb_cache(dir, 64 << 20);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  auto src = wrap_with_cache(std::move(origin), c, "id", 1 << 20);
  std::vector<uint8_t> out(1 << 20);
  ASSERT_TRUE(src->read(1 << 20, out.size(), out.data()).ok());
  EXPECT_EQ(out, block1) << "the corrupt entry must not be served";
  EXPECT_EQ(o->reads.load(), 1) << "refetched from the origin";
  EXPECT_EQ(c->stats().corrupt_dropped, 1u);
  ASSERT_TRUE(src->read(1 << 20, out.size(), out.data()).ok());
  EXPECT_EQ(o->reads.load(), 1) << "the refetched block is cached again";
  EXPECT_EQ(out, block1);
  fs::remove_all(dir);
}

TEST(LmdbCache, EvictionKeepsTheSizeLimitLru) {
  std::string dir = tptest::temp_dir("lmdb-evict");
  const uint64_t limit = 8 << 20;
  auto c = open_lmdb_cache(dir, limit);
  std::vector<uint8_t> out(1 << 20);
  auto v0 = pattern(1 << 20, 100);
  c->put("k0", v0.data(), v0.size());
  for (int i = 1; i < 40; ++i) {
    auto v = pattern(1 << 20, 100 + i);
    c->put("k" + std::to_string(i), v.data(), v.size());
    EXPECT_TRUE(c->get("k0", v0.size(), out.data())) << "k0 is used all the time: never evicted (i=" << i << ")";
    EXPECT_LE(c->stats().bytes_used, limit);
  }
  CacheStats s = c->stats();
  EXPECT_GT(s.evictions, 25u);
  EXPECT_LE(s.bytes_used, limit);
  EXPECT_FALSE(c->get("k1", 1 << 20, out.data())) << "an old, unused entry was evicted";
  EXPECT_TRUE(c->get("k39", 1 << 20, out.data()));
  EXPECT_EQ(out, pattern(1 << 20, 139));
  // The file stays bounded too (LMDB reuses freed pages).
  EXPECT_LT(fs::file_size(dir + "/data.mdb"), 4 * limit);
  fs::remove_all(dir);
}

// A writer killed with SIGKILL in the middle of its puts leaves a cache that
// reopens without a scan, serves every committed entry intact and takes more.
TEST(LmdbCache, SurvivesKillDashNineOfAWriter) {
  std::string dir = tptest::temp_dir("lmdb-kill");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    auto c = open_lmdb_cache(dir, 256 << 20);
    for (int i = 0; i < 100000; ++i) {  // bounded; killed long before
      auto v = pattern(64 << 10, i);
      c->put("k" + std::to_string(i), v.data(), v.size());
      if (i == 50) [[maybe_unused]] auto w = ::write(pipefd[1], "x", 1);
    }
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char x;
  ASSERT_EQ(::read(pipefd[0], &x, 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(pid, SIGKILL);
  int st;
  ::waitpid(pid, &st, 0);
  ::close(pipefd[0]);
  ASSERT_TRUE(WIFSIGNALED(st));
  auto c = open_lmdb_cache(dir, 256 << 20);
  ASSERT_TRUE(c->usable());
  std::vector<uint8_t> out(64 << 10);
  int found = 0;
  for (int i = 0; i < 100000; ++i) {
    if (!c->get("k" + std::to_string(i), out.size(), out.data())) break;
    ASSERT_EQ(out, pattern(64 << 10, i)) << "entry " << i;
    ++found;
  }
  EXPECT_GE(found, 51);
  EXPECT_EQ(c->stats().corrupt_dropped, 0u);
  EXPECT_EQ(c->stats().bytes_used, uint64_t(found) * ((64 << 10) + 16));
  auto v = pattern(1000, 7);
  c->put("after", v.data(), v.size());
  std::vector<uint8_t> o2(1000);
  EXPECT_TRUE(c->get("after", 1000, o2.data()));
  fs::remove_all(dir);
}

TEST(LmdbCache, SharedByTwoProcesses) {
  std::string dir = tptest::temp_dir("lmdb-shared");
  auto c = open_lmdb_cache(dir, 64 << 20);  // open here first, then the child writes
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto cc = open_lmdb_cache(dir, 64 << 20);
    auto v = pattern(5000, 77);
    cc->put("from-child", v.data(), v.size());
    ::_exit(cc->usable() ? 0 : 1);
  }
  int st;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  std::vector<uint8_t> out(5000);
  EXPECT_TRUE(c->get("from-child", 5000, out.data()));
  EXPECT_EQ(out, pattern(5000, 77));
  fs::remove_all(dir);
}

TEST(LmdbCache, UnusableDirectoryDegradesWithOneWarning) {
  std::string dir = tptest::temp_dir("lmdb-bad");
  tptest::write_file(dir + "/file", "x");
  Warnings w;
  auto c = open_lmdb_cache(dir + "/file/sub", 1 << 20, w.opts());  // parent is a file
  EXPECT_FALSE(c->usable());
  ASSERT_EQ(w.msgs.size(), 1u);
  EXPECT_NE(w.msgs[0].find(dir + "/file/sub"), std::string::npos) << w.msgs[0];
  EXPECT_NE(w.msgs[0].find("without cache"), std::string::npos);
  uint8_t b[4] = {1, 2, 3, 4};
  c->put("k", b, 4);
  EXPECT_FALSE(c->get("k", 4, b));
  // A corrupt environment (garbage data.mdb): set aside, one warning, and
  // a new empty cache that works.
  std::string bad = dir + "/garbage";
  tptest::write_file(bad + "/data.mdb", std::string(1 << 16, '\xab'));
  Warnings w2;
  auto c2 = open_lmdb_cache(bad, 1 << 20, w2.opts());
  EXPECT_TRUE(c2->usable());
  EXPECT_EQ(c2->stats().quarantined, 1u);
  EXPECT_EQ(w2.msgs.size(), 1u);
  // No permission (meaningless as root, who may write anywhere).
  if (::geteuid() != 0) {
    std::string ro = dir + "/ro";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    Warnings w3;
    auto c3 = open_lmdb_cache(ro, 1 << 20, w3.opts());
    EXPECT_FALSE(c3->usable());
    EXPECT_EQ(w3.msgs.size(), 1u);
    fs::permissions(ro, fs::perms::owner_all);
  }
  // The decorator over a broken cache still serves the origin.
  auto data = pattern(3000, 1);
  auto src = wrap_with_cache(std::make_unique<FakeOrigin>(data), c, "id", 1024);
  std::vector<uint8_t> out(2000);
  ASSERT_TRUE(src->read(500, 2000, out.data()).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + 500, 2000));
  fs::remove_all(dir);
}

// --- Damaged environments (issue 15, reliability 1 and 11) ---

constexpr size_t kPage = 4096;

// A cache in `dir` holding `n` values of `size` bytes, keys "k0".."k{n-1}", closed.
void fill_cache(const std::string& dir, int n, size_t size, uint64_t limit = 64 << 20) {
  auto c = open_lmdb_cache(dir, limit);
  ASSERT_TRUE(c->usable());
  for (int i = 0; i < n; ++i) {
    auto v = pattern(size, 1000 + i);
    c->put("k" + std::to_string(i), v.data(), v.size());
  }
}

// Overwrites `len` bytes at `off` of data.mdb with `b`.
void scribble(const std::string& dir, uint64_t off, size_t len, uint8_t b) {
  int fd = ::open((dir + "/data.mdb").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk(len, b);
  ASSERT_EQ(::pwrite(fd, junk.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
  ::close(fd);
}

// The root page of the main database in the newer meta page (LMDB 0.9,
// 64-bit: the meta follows the 16-byte page header; txnid at 128, the main
// database's root at 112 of the meta).
uint64_t main_root_page(const std::string& dir) {
  std::string f = tptest::read_file(dir + "/data.mdb");
  uint64_t best = 0, root = 0;
  for (int m = 0; m < 2; ++m) {
    uint64_t txn, r;
    std::memcpy(&txn, f.data() + m * kPage + 16 + 128, 8);
    std::memcpy(&r, f.data() + m * kPage + 16 + 112, 8);
    if (m == 0 || txn > best) best = txn, root = r;
  }
  return root;
}

// Every key must read as a miss or as its own bytes; the process must live.
void expect_sane(BlockCache& c, int n, size_t size) {
  std::vector<uint8_t> out(size);
  for (int i = 0; i < n; ++i)
    if (c.get("k" + std::to_string(i), size, out.data())) EXPECT_EQ(out, pattern(size, 1000 + i)) << i;
}

// After damage was found: quarantined once, starts empty, works.
void expect_quarantined_and_fresh(BlockCache& c, const std::string& dir, const Warnings& w) {
  EXPECT_TRUE(c.usable());
  EXPECT_EQ(c.stats().quarantined, 1u);
  EXPECT_TRUE(fs::exists(dir + "/damaged-data.mdb")) << "the damaged file is kept aside";
  ASSERT_FALSE(w.msgs.empty());
  EXPECT_NE(w.msgs[0].find("damaged"), std::string::npos) << w.msgs[0];
  auto v = pattern(300000, 42);
  c.put("fresh", v.data(), v.size());
  std::vector<uint8_t> out(v.size());
  EXPECT_TRUE(c.get("fresh", v.size(), out.data()));
  EXPECT_EQ(out, v);
}

TEST(LmdbDamage, TruncatedDataFileIsQuarantinedNotACrash) {
  for (int cut : {2, 6}) {  // half the file; all but its first 6 pages (the B-tree roots are gone)
    SCOPED_TRACE(cut == 2 ? "half" : "6 pages");
    std::string dir = tptest::temp_dir("lmdb-trunc");
    fill_cache(dir, 40, 100000);
    uint64_t size = fs::file_size(dir + "/data.mdb");
    ASSERT_GT(size, 1u << 20);
    fs::resize_file(dir + "/data.mdb", cut == 2 ? size / 2 : 6 * kPage);
    Warnings w;
    auto c = open_lmdb_cache(dir, 64 << 20, w.opts());  // SIGBUS at open before (6 pages)
    expect_sane(*c, 40, 100000);
    expect_quarantined_and_fresh(*c, dir, w);
    fs::remove_all(dir);
  }
}

TEST(LmdbDamage, DamagedPageHeaderIsQuarantinedNotACrash) {
  std::string dir = tptest::temp_dir("lmdb-page");
  fill_cache(dir, 40, 100000);
  uint64_t p = main_root_page(dir);
  ASSERT_GT(p, 1u);
  scribble(dir, p * kPage + 8, 8, 0xa5);  // flags, lower, upper
  Warnings w;
  auto c = open_lmdb_cache(dir, 64 << 20, w.opts());
  expect_sane(*c, 40, 100000);
  expect_quarantined_and_fresh(*c, dir, w);
  fs::remove_all(dir);
}

TEST(LmdbDamage, DamagedOverflowPageIsQuarantinedWhenRead) {
  std::string dir = tptest::temp_dir("lmdb-ovf");
  fill_cache(dir, 10, 100000);
  // A value's payload starts 32 bytes into its first overflow page (page
  // header, then the cache's own 16-byte header).
  std::string f = tptest::read_file(dir + "/data.mdb");
  auto v3 = pattern(100000, 1003);
  auto pos = std::string_view(f).find(std::string_view(reinterpret_cast<const char*>(v3.data()), 64));
  ASSERT_NE(pos, std::string::npos);
  ASSERT_EQ(pos % kPage, 32u);
  scribble(dir, pos - 32, 16, 0x5a);  // its page header: number, flags, page count
  Warnings w;
  auto c = open_lmdb_cache(dir, 64 << 20, w.opts());
  std::vector<uint8_t> out(100000);
  EXPECT_FALSE(c->get("k3", out.size(), out.data())) << "a value in a damaged page is a miss";
  EXPECT_EQ(c->stats().quarantined, 1u);
  EXPECT_TRUE(fs::exists(dir + "/damaged-data.mdb"));
  c->erase("k4");  // never frees pages by a damaged count
  for (int i = 0; i < 10; ++i) c->put("n" + std::to_string(i), v3.data(), v3.size());
  c.reset();
  // The next opener starts empty and works.
  Warnings w2;
  auto c2 = open_lmdb_cache(dir, 64 << 20, w2.opts());
  EXPECT_TRUE(c2->usable());
  EXPECT_FALSE(c2->get("k5", out.size(), out.data()));
  c2->put("k5", v3.data(), v3.size());
  EXPECT_TRUE(c2->get("k5", out.size(), out.data()));
  fs::remove_all(dir);
}

TEST(LmdbDamage, StatsNoticesAndClearWorksOnAnyDamage) {
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind == 0 ? "truncated" : kind == 1 ? "page header" : "garbage file");
    std::string dir = tptest::temp_dir("lmdb-clear");
    fill_cache(dir, 40, 100000);
    if (kind == 0) fs::resize_file(dir + "/data.mdb", fs::file_size(dir + "/data.mdb") / 2);
    if (kind == 1) scribble(dir, main_root_page(dir) * kPage + 8, 8, 0xa5);
    if (kind == 2) scribble(dir, 0, 3 * kPage, 0xab);
    auto info = inspect_lmdb_cache(dir);
    EXPECT_FALSE(info.ok()) << "stats must notice the damage";
    EXPECT_EQ(info.status().code(), Errc::corrupt);
    EXPECT_NE(info.status().message().find("damaged"), std::string::npos) << info.status().message();
    Status st = clear_lmdb_cache(dir);  // aborted in mdb_drop0 or crashed before
    ASSERT_TRUE(st.ok()) << st.to_string();
    auto after = inspect_lmdb_cache(dir);
    ASSERT_TRUE(after.ok()) << after.status().to_string();
    EXPECT_EQ(after->entries, 0u);
    Warnings w;
    auto c = open_lmdb_cache(dir, 64 << 20, w.opts());
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(c->stats().quarantined, 0u) << "cleared: nothing left to quarantine";
    fs::remove_all(dir);
  }
}

TEST(LmdbDamage, HealthyCacheIsNotQuarantined) {
  std::string dir = tptest::temp_dir("lmdb-ok");
  fill_cache(dir, 200, 30000);  // small values too: several leaf and branch pages
  fill_cache(dir, 5, 1 << 20);
  Warnings w;
  auto c = open_lmdb_cache(dir, 64 << 20, w.opts());
  EXPECT_TRUE(w.msgs.empty()) << w.msgs[0];
  EXPECT_EQ(c->stats().quarantined, 0u);
  std::vector<uint8_t> out(30000);
  EXPECT_TRUE(c->get("k150", out.size(), out.data()));
  EXPECT_EQ(out, pattern(30000, 1150));
  auto info = inspect_lmdb_cache(dir);
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info->entries, 200u);
  fs::remove_all(dir);
}

// The data file stays within the documented bound of the size limit while
// values of mixed sizes churn through it.
TEST(LmdbCache, DataFileStaysWithinTheSizeLimit) {
  std::string dir = tptest::temp_dir("lmdb-bound");
  const uint64_t limit = 48 << 20;
  Warnings w;
  auto c = open_lmdb_cache(dir, limit, w.opts());
  std::mt19937_64 g(5);
  std::vector<uint8_t> out;
  for (int i = 0; i < 600; ++i) {
    size_t n = 4096 + g() % (1 << 20);
    auto v = pattern(n, i);
    c->put("k" + std::to_string(i), v.data(), v.size());
    if (i > 10 && g() % 3 == 0) {  // re-read some older entries (LRU order differs from insertion)
      int j = static_cast<int>(g() % i);
      out.resize(1 << 20);
      c->get("k" + std::to_string(j), 1, out.data());
    }
  }
  EXPECT_TRUE(c->usable()) << "a full map must evict, never disable the cache";
  EXPECT_TRUE(w.msgs.empty()) << w.msgs[0];
  EXPECT_LE(c->stats().bytes_used, limit);
  uint64_t file = fs::file_size(dir + "/data.mdb");
  EXPECT_LE(file, lmdb_file_bound(limit)) << "data.mdb " << file << " bytes for a limit of " << limit;
  EXPECT_LE(lmdb_file_bound(limit), limit + limit / 8 + (64 << 20));
  auto v = pattern(5000, 1);
  c->put("last", v.data(), v.size());
  out.resize(5000);
  EXPECT_TRUE(c->get("last", 5000, out.data()));
  fs::remove_all(dir);
}

TEST(CachedSource, UnalignedReadsMatchAndSecondPassIsFree) {
  auto data = pattern(1000003, 3);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  auto src = wrap_with_cache(std::move(origin), make_memory_cache(8 << 20), "id", 4096);
  std::mt19937_64 g(5);
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < 300; ++i) {
      uint64_t off = g() % data.size();
      size_t len = 1 + g() % std::min<uint64_t>(50000, data.size() - off);
      std::vector<uint8_t> out(len);
      ASSERT_TRUE(src->read(off, len, out.data()).ok());
      ASSERT_EQ(0, std::memcmp(out.data(), data.data() + off, len)) << off << "+" << len;
    }
  }
  // Whole file: each block is fetched at most once overall.
  std::vector<uint8_t> all(data.size());
  ASSERT_TRUE(src->read(0, all.size(), all.data()).ok());
  EXPECT_EQ(all, data);
  int reads = o->reads.load();
  ASSERT_TRUE(src->read(0, all.size(), all.data()).ok());
  EXPECT_EQ(o->reads.load(), reads) << "everything is cached";
  EXPECT_LE(o->bytes.load(), data.size());
  std::vector<uint8_t> b(10);
  EXPECT_FALSE(src->read(data.size() - 5, 10, b.data()).ok());
}

TEST(CachedSource, AdjacentMissesAreOneOriginRead) {
  auto data = pattern(8 << 20, 4);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  auto src = wrap_with_cache(std::move(origin), make_memory_cache(64 << 20), "id", 1 << 20);
  std::vector<uint8_t> out(5 << 20);
  ASSERT_TRUE(src->read(100, out.size(), out.data()).ok());  // blocks 0..5, unaligned
  EXPECT_EQ(o->reads.load(), 1);
  EXPECT_EQ(o->bytes.load(), 6u << 20);
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + 100, out.size()));
}

TEST(CachedSource, ConcurrentMissesOfOneBlockAreOneFetch) {
  auto data = pattern(4 << 20, 6);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  o->delay_ms = 200;  // long enough for every thread to arrive while the fetch is in flight
  auto src = wrap_with_cache(std::move(origin), make_memory_cache(64 << 20), "id", 1 << 20);
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      std::vector<uint8_t> out(1000);
      uint64_t off = (1 << 20) + 1000 * t;
      if (!src->read(off, out.size(), out.data()).ok() || std::memcmp(out.data(), data.data() + off, out.size()) != 0) bad++;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(o->reads.load(), 1);
  EXPECT_EQ(src->cache_stats().collapsed + 1, 8u);
}

// will_need() fetches in the background: the hinted blocks arrive without
// any read (then reads are cache hits), and a read that comes while the
// hint's fetch is in flight joins it (one origin read in all). A hint for
// cached blocks, or without a usable cache, sends nothing.
TEST(CachedSource, WillNeedFetchesInTheBackgroundOnce) {
  auto data = pattern(8 << 20, 9);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  o->delay_ms = 300;
  auto src = wrap_with_cache(std::move(origin), make_memory_cache(64 << 20), "id", 1 << 20);
  auto wait_reads = [&](int n) {
    for (int i = 0; i < 5000 && o->reads.load() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return o->reads.load();
  };
  // No read at all: the hint alone fetches blocks 1..2, then reading them is all hits.
  src->will_need(1 << 20, 2 << 20);
  ASSERT_EQ(wait_reads(1), 1) << "the hint sent no origin read";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the fetch (300 ms) is stored
  std::vector<uint8_t> out(1 << 20);
  const uint64_t hits0 = src->cache_stats().block_hits;
  ASSERT_TRUE(src->read((1 << 20) + 7, out.size(), out.data()).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + (1 << 20) + 7, out.size()));
  EXPECT_EQ(o->reads.load(), 1);
  EXPECT_EQ(src->cache_stats().block_hits, hits0 + 2);
  // A read while the hint's fetch of blocks 4..5 is under way joins it.
  src->will_need(4 << 20, 2 << 20);
  ASSERT_EQ(wait_reads(2), 2);
  const uint64_t joined0 = src->cache_stats().collapsed;
  ASSERT_TRUE(src->read((4 << 20) + 3, out.size(), out.data()).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + (4 << 20) + 3, out.size()));
  EXPECT_EQ(o->reads.load(), 2);
  EXPECT_EQ(src->cache_stats().collapsed, joined0 + 2);
  // Cached already: nothing to fetch.
  src->will_need(1 << 20, 2 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o->reads.load(), 2);

  auto origin2 = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o2 = origin2.get();
  auto bare = wrap_with_cache(std::move(origin2), nullptr, "id", 1 << 20);
  bare->will_need(0, 1 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o2->reads.load(), 0);
}

namespace {
// A memory cache whose puts take a while (a slow disk): a fetched block is
// published to its waiters long before it is stored.
class SlowPutCache : public BlockCache {
 public:
  SlowPutCache() : inner_(make_memory_cache(64 << 20)) {}
  bool get(std::string_view k, size_t len, uint8_t* out) override { return inner_->get(k, len, out); }
  void put(std::string_view k, const uint8_t* d, size_t len) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    inner_->put(k, d, len);
  }
  void erase(std::string_view k) override { inner_->erase(k); }
  CacheStats stats() const override { return inner_->stats(); }

 private:
  std::shared_ptr<BlockCache> inner_;
};
}  // namespace

// Bytes found wrong while their fetch is still being stored: invalidate()
// must make the retry go to the origin (not join that fetch), and the wrong
// copy must not stay in the cache.
TEST(CachedSource, InvalidateDuringAStoreRefetchesAndDropsTheBadCopy) {
  // An origin whose first transfer has a flipped bit.
  struct FlakyOrigin : FakeOrigin {
    using FakeOrigin::FakeOrigin;
    Status read(uint64_t off, size_t len, uint8_t* dst) override {
      Status st = FakeOrigin::read(off, len, dst);
      if (st.ok() && reads.load() == 1 && off <= 100 && off + len > 100) dst[100 - off] ^= 0x40;
      return st;
    }
  };
  auto data = pattern(2 << 20, 12);
  auto origin = std::make_unique<FlakyOrigin>(data);
  FakeOrigin* o = origin.get();
  auto src = wrap_with_cache(std::move(origin), std::make_shared<SlowPutCache>(), "id", 1 << 20);
  std::vector<uint8_t> first(1000);
  std::thread a([&] { ASSERT_TRUE(src->read(0, first.size(), first.data()).ok()); });
  for (int i = 0; i < 5000 && o->reads.load() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a has the bytes and is storing them
  src->invalidate(0, 1000);
  std::vector<uint8_t> again(1000);
  ASSERT_TRUE(src->read(0, again.size(), again.data()).ok());
  EXPECT_EQ(0, std::memcmp(again.data(), data.data(), again.size())) << "the retry got the wrong bytes again";
  EXPECT_EQ(o->reads.load(), 2);
  a.join();
  EXPECT_NE(0, std::memcmp(first.data(), data.data(), first.size()));  // a did see the wrong bytes
  std::this_thread::sleep_for(std::chrono::milliseconds(400));        // every store is done
  std::vector<uint8_t> later(1000);
  ASSERT_TRUE(src->read(0, later.size(), later.data()).ok());
  EXPECT_EQ(0, std::memcmp(later.data(), data.data(), later.size())) << "the wrong copy stayed in the cache";
}

TEST(CachedSource, InvalidateAndUncachedReadsGoToTheOrigin) {
  auto data = pattern(3 << 20, 8);
  auto origin = std::make_unique<FakeOrigin>(data);
  FakeOrigin* o = origin.get();
  auto cache = make_memory_cache(64 << 20);
  auto src = wrap_with_cache(std::move(origin), cache, "id", 1 << 20);
  std::vector<uint8_t> out(100);
  ASSERT_TRUE(src->read(10, 100, out.data()).ok());
  ASSERT_TRUE(src->read(10, 100, out.data()).ok());
  EXPECT_EQ(o->reads.load(), 1);
  src->invalidate(50, 1);
  ASSERT_TRUE(src->read(10, 100, out.data()).ok());
  EXPECT_EQ(o->reads.load(), 2);
  ASSERT_TRUE(src->read_uncached(10, 100, out.data()).ok());
  EXPECT_EQ(o->reads.load(), 3);
  // Origin errors are returned (the cache cannot invent bytes), cached blocks still served.
  o->fail = true;
  EXPECT_FALSE(src->read((2 << 20) + 5, 10, out.data()).ok());
  EXPECT_TRUE(src->read(10, 100, out.data()).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), data.data() + 10, 100));
}

TEST(Cache, KeysDefaultsAndSizes) {
  Xxh128 h{};
  h[0] = 0xab;
  EXPECT_EQ(frame_cache_key(h), "f:ab000000000000000000000000000000");
  EXPECT_NE(block_cache_key("x", 1 << 20, 1), block_cache_key("x", 1 << 19, 1));
  ::setenv("TENPAK_CACHE_DIR", "/t/c", 1);
  EXPECT_EQ(default_cache_dir(), "/t/c");
  ::unsetenv("TENPAK_CACHE_DIR");
  ::setenv("XDG_CACHE_HOME", "/x", 1);
  EXPECT_EQ(default_cache_dir(), "/x/tenpak");
  ::unsetenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string saved = home ? home : "";
  ::setenv("HOME", "/h", 1);
  EXPECT_EQ(default_cache_dir(), "/h/.cache/tenpak");
  if (home) ::setenv("HOME", saved.c_str(), 1);
  else ::unsetenv("HOME");
  EXPECT_EQ(*parse_size("20G"), 20ull << 30);
  EXPECT_EQ(*parse_size("512MiB"), 512ull << 20);
  EXPECT_EQ(*parse_size("1.5k"), 1536u);
  EXPECT_EQ(*parse_size("100"), 100u);
  EXPECT_FALSE(parse_size("lots").ok());
  EXPECT_FALSE(parse_size("5X").ok());
}

}  // namespace
