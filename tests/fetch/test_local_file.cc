// open_local_file with direct_when_cold: ranges not in the page cache are
// read with O_DIRECT (aligned cover, copied out) and stay out of the page
// cache; cached ranges are copied from it. Either way the bytes are the file's.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <random>
#include <thread>
#include <vector>

#include "temp_dir.h"
#include "tenpak/block_source.h"

using tenpak::fakes::TempDir;  // tests/support/temp_dir.h

using namespace tenpak;
namespace fs = std::filesystem;

namespace {

// Pages of `path` in the page cache (mincore on a mapping, which faults
// nothing in).
size_t resident_pages(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return SIZE_MAX;
  const size_t size = fs::file_size(path), pages = (size + 4095) / 4096;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return SIZE_MAX;
  std::vector<unsigned char> v(pages);
  size_t n = SIZE_MAX;
  if (::mincore(p, size, v.data()) == 0) {
    n = 0;
    for (unsigned char c : v) n += c & 1;
  }
  ::munmap(p, size);
  return n;
}

void drop_pages(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Bytes this thread read from storage so far (/proc/thread-self/io):
// direct reads count, copies out of the page cache do not.
uint64_t storage_read_bytes() {
  std::ifstream in("/proc/thread-self/io");
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == "read_bytes:") return v;
  return UINT64_MAX;
}

bool have_cachestat(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  uint64_t range[2] = {0, 4096}, cs[5] = {};
  bool ok = ::syscall(451, fd, range, cs, 0) == 0;
  ::close(fd);
  return ok;
}

// Why direct reads cannot be tested in the temporary directory, or "".
std::string direct_unusable(const std::string& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return "the temporary directory's file system does not take O_DIRECT";
  void* b = std::aligned_alloc(4096, 4096);
  ssize_t r = ::pread(fd, b, 4096, 0);
  std::free(b);
  ::close(fd);
  if (r != 4096) return "O_DIRECT reads fail here";
  if (resident_pages(p) != 0) return "O_DIRECT reads go through the page cache on this file system";
  return "";
}

// Writes `size` bytes drawn from `rng` to `p` and drops them from the page
// cache, so that a direct_when_cold source reads them direct; the reason a
// test must skip (the cache cannot be emptied, O_DIRECT refused), or empty.
std::string write_cold_file(const std::string& p, size_t size, std::mt19937_64& rng, std::string& data) {
  data.assign(size, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::ofstream(p, std::ios::binary) << data;
  drop_pages(p);
  if (resident_pages(p) != 0) return "cannot empty the page cache of a file here";
  return direct_unusable(p);
}

}  // namespace

TEST(LocalFile, DirectWhenColdReadsTheFileAndLeavesThePageCacheAlone) {
  // Not a multiple of the 4 KiB alignment (the last range ends inside a
  // block), and a multiple of it.
  for (size_t size : {(3u << 20) + 12345u, 2u << 20}) {
    SCOPED_TRACE(size);
    TempDir d;
    const std::string p = d.path + "/base.bin";
    std::string data;
    std::mt19937_64 rng(size);
    if (auto why = write_cold_file(p, size, rng, data); !why.empty()) GTEST_SKIP() << why;
    LocalFileOptions lo;
    lo.direct_when_cold = true;
    auto src = open_local_file(p, lo);
    ASSERT_TRUE(src.ok()) << src.status().to_string();
    BlockSource& s = **src;
    ASSERT_EQ(s.size(), data.size());
    // Ranges of every alignment: starts and ends inside blocks, one byte, the
    // last bytes of the file, a whole block, 1 MiB, the whole file (several
    // of the 1 MiB buffers).
    std::vector<std::pair<uint64_t, size_t>> ranges = {{0, 1},        {1, 4095},         {4095, 2},
                                                       {4096, 4096},  {100, 1u << 20},   {data.size() - 1, 1},
                                                       {data.size() - 5000, 5000},       {0, data.size()}};
    std::uniform_int_distribution<uint64_t> off(0, data.size() - 1);
    for (int i = 0; i < 200; ++i) {
      uint64_t o = off(rng);
      ranges.push_back({o, static_cast<size_t>(std::min<uint64_t>(data.size() - o, 1 + rng() % (300u << 10)))});
    }
    auto check_all = [&] {
      std::vector<uint8_t> b;
      for (auto [o, n] : ranges) {
        b.assign(n, 0);
        Status st = s.read(o, n, b.data());
        ASSERT_TRUE(st.ok()) << st.to_string();
        ASSERT_EQ(0, memcmp(b.data(), data.data() + o, n)) << o << "+" << n;
      }
    };
    const LocalReadStats st0 = local_read_stats();
    check_all();
    // Nothing of it went through the page cache (a buffered read would have
    // left every page of the file there, readahead included).
    EXPECT_EQ(resident_pages(p), 0u) << "direct reads filled the page cache";
    const LocalReadStats st1 = local_read_stats();
    uint64_t asked = 0;
    for (auto [o, n] : ranges) asked += n;
    EXPECT_EQ(st1.base.direct_bytes - st0.base.direct_bytes, asked);
    EXPECT_EQ(st1.base.page_cache_bytes, st0.base.page_cache_bytes);
    EXPECT_TRUE(s.read(5, 0, nullptr).ok());
    // Cached now (another reader): the same ranges, copied from the page
    // cache, with no read from storage where the kernel can tell.
    { std::ifstream(p, std::ios::binary).ignore(data.size() + 1); }
    ASSERT_GT(resident_pages(p), 0u);
    const uint64_t before = storage_read_bytes();
    check_all();
    if (have_cachestat(p) && resident_pages(p) == (data.size() + 4095) / 4096) {
      EXPECT_EQ(storage_read_bytes(), before) << "cached ranges were read from storage";
      EXPECT_EQ(local_read_stats().base.page_cache_bytes - st1.base.page_cache_bytes, asked);
    }
    // Several threads at once (each takes a pooled buffer).
    drop_pages(p);
    std::vector<std::thread> ts;
    std::atomic<int> bad{0};
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        std::vector<uint8_t> b;
        for (size_t i = t; i < ranges.size(); i += 4) {
          auto [o, n] = ranges[i];
          b.assign(n, 0);
          if (!s.read(o, n, b.data()).ok() || memcmp(b.data(), data.data() + o, n) != 0) bad++;
        }
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad.load(), 0);
    // Past the end: an error, as without direct reads.
    std::vector<uint8_t> b(16);
    EXPECT_FALSE(s.read(data.size() - 8, 16, b.data()).ok());
    EXPECT_FALSE(s.read_in(data.size() - 8, 16, b.data()).ok());

    // read_in: a cold range is read direct into the lent buffer itself, its
    // bytes at their offset within the aligned span read (no copy); a cached
    // one is copied to the buffer's start.
    constexpr size_t kA = BlockSource::kReadInAlign;
    auto lent = [](size_t n) {
      return std::unique_ptr<uint8_t[], void (*)(uint8_t*)>(
          static_cast<uint8_t*>(::operator new(n, std::align_val_t(kA))),
          [](uint8_t* q) { ::operator delete(q, std::align_val_t(kA)); });
    };
    auto check_in = [&](bool cold) {
      for (auto [o, n] : ranges) {
        auto buf = lent(n + 2 * kA);
        auto got = s.read_in(o, n, buf.get());
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        ASSERT_EQ(*got, buf.get() + (cold ? o % kA : 0)) << o << "+" << n;
        ASSERT_EQ(0, memcmp(*got, data.data() + o, n)) << o << "+" << n;
      }
    };
    drop_pages(p);
    const LocalReadStats st2 = local_read_stats();
    check_in(true);
    EXPECT_EQ(resident_pages(p), 0u) << "read_in filled the page cache";
    EXPECT_EQ(local_read_stats().base.direct_bytes - st2.base.direct_bytes, asked);
    if (have_cachestat(p)) {
      { std::ifstream(p, std::ios::binary).ignore(data.size() + 1); }
      if (resident_pages(p) == (data.size() + 4095) / 4096) check_in(false);
    }
  }
}

// Reads are counted under the file's role: a delta's data file read direct
// or from the page cache moves only the delta_data counts, so that a mount's
// base_reads speak of base files alone (tests/fs/mount_test.py).
TEST(LocalFile, ReadsAreCountedUnderTheFilesRole) {
  TempDir d;
  const std::string p = d.path + "/tenpak.dat";
  std::string data;
  std::mt19937_64 rng(7);
  if (auto why = write_cold_file(p, 192u << 10, rng, data); !why.empty()) GTEST_SKIP() << why;
  LocalFileOptions lo;
  lo.direct_when_cold = true;
  lo.role = LocalFileOptions::Role::delta_data;
  auto src = open_local_file(p, lo);
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  std::vector<uint8_t> b(data.size());
  const LocalReadStats st0 = local_read_stats();
  ASSERT_TRUE((*src)->read(0, b.size(), b.data()).ok());
  ASSERT_EQ(0, memcmp(b.data(), data.data(), b.size()));
  const LocalReadStats st1 = local_read_stats();
  EXPECT_EQ(st1.delta_data.direct_bytes - st0.delta_data.direct_bytes, data.size());
  EXPECT_EQ(st1.delta_data.page_cache_bytes, st0.delta_data.page_cache_bytes);
  EXPECT_EQ(st1.base.direct_bytes, st0.base.direct_bytes);
  EXPECT_EQ(st1.base.page_cache_bytes, st0.base.page_cache_bytes);
  if (have_cachestat(p)) {
    { std::ifstream(p, std::ios::binary).ignore(data.size() + 1); }
    if (resident_pages(p) == data.size() / 4096) {
      ASSERT_TRUE((*src)->read(0, b.size(), b.data()).ok());
      const LocalReadStats st2 = local_read_stats();
      EXPECT_EQ(st2.delta_data.page_cache_bytes - st1.delta_data.page_cache_bytes, data.size());
      EXPECT_EQ(st2.base.page_cache_bytes, st1.base.page_cache_bytes);
      EXPECT_EQ(st2.base.direct_bytes, st1.base.direct_bytes);
    }
  }
}

// Without the option (the default, and the offline tools): the page cache.
TEST(LocalFile, BufferedByDefault) {
  TempDir d;
  const std::string p = d.path + "/f.bin";
  std::string data(256u << 10, 'x');
  std::ofstream(p, std::ios::binary) << data;
  drop_pages(p);
  if (resident_pages(p) != 0) GTEST_SKIP() << "cannot empty the page cache of a file here";
  auto src = open_local_file(p);
  ASSERT_TRUE(src.ok());
  std::vector<uint8_t> b(data.size());
  ASSERT_TRUE((*src)->read(0, b.size(), b.data()).ok());
  EXPECT_EQ(resident_pages(p), data.size() / 4096);
  // read_in reads into the buffer's start (BlockSource's default behaviour).
  auto got = (*src)->read_in(100, 5000, b.data());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, b.data());
  EXPECT_EQ(0, memcmp(b.data(), data.data() + 100, 5000));
}
