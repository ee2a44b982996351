// One test body run over every BlockCache implementation (in memory, LMDB):
// the contract of cache/include/tenpak/cache.h.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "temp_dir.h"
#include "tenpak/cache.h"

using namespace tenpak;

namespace {

struct MemoryImpl {
  static std::shared_ptr<BlockCache> open(const std::string&, uint64_t limit) { return make_memory_cache(limit); }
};
struct LmdbImpl {
  static std::shared_ptr<BlockCache> open(const std::string& dir, uint64_t limit) {
    CacheOptions o;
    o.warn = [](const std::string& w) { ADD_FAILURE() << "unexpected warning: " << w; };
    return open_lmdb_cache(dir, limit, o);
  }
};

std::vector<uint8_t> value(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

template <class Impl>
class BlockCacheContract : public ::testing::Test {
 protected:
  std::shared_ptr<BlockCache> open(uint64_t limit = 64u << 20) { return Impl::open(dir_.path, limit); }
  tenpak::fakes::TempDir dir_{"bc-contract"};
};

using Impls = ::testing::Types<MemoryImpl, LmdbImpl>;
TYPED_TEST_SUITE(BlockCacheContract, Impls);

TYPED_TEST(BlockCacheContract, PutThenGetReturnsTheValue) {
  auto c = this->open();
  ASSERT_TRUE(c->usable());
  auto v = value(100000, 3);
  std::vector<uint8_t> out(v.size());
  EXPECT_FALSE(c->get("k", v.size(), out.data())) << "empty cache";
  c->put("k", v.data(), v.size());
  ASSERT_TRUE(c->get("k", v.size(), out.data()));
  EXPECT_EQ(out, v);
  CacheStats s = c->stats();
  EXPECT_EQ(s.puts, 1u);
  EXPECT_GE(s.hits, 1u);
  EXPECT_GE(s.misses, 1u);
  EXPECT_FALSE(c->describe().empty());
}

TYPED_TEST(BlockCacheContract, AWrongLengthIsAMiss) {
  auto c = this->open();
  auto v = value(5000, 1);
  c->put("k", v.data(), v.size());
  std::vector<uint8_t> out(6000);
  EXPECT_FALSE(c->get("k", 4000, out.data()));
  EXPECT_FALSE(c->get("k", 6000, out.data()));
}

TYPED_TEST(BlockCacheContract, PutReplacesAndEraseDrops) {
  auto c = this->open();
  auto a = value(3000, 1), b = value(3000, 2);
  c->put("k", a.data(), a.size());
  c->put("k", b.data(), b.size());
  std::vector<uint8_t> out(3000);
  ASSERT_TRUE(c->get("k", 3000, out.data()));
  EXPECT_EQ(out, b);
  c->erase("k");
  EXPECT_FALSE(c->get("k", 3000, out.data()));
  c->erase("never-there");  // best effort: no error, no crash
}

TYPED_TEST(BlockCacheContract, StaysWithinItsLimitLeastRecentOut) {
  const uint64_t limit = 4u << 20;
  auto c = this->open(limit);
  auto v = value(256u << 10, 9);
  for (int i = 0; i < 64; ++i) c->put("k" + std::to_string(i), v.data(), v.size());  // 16 MiB through a 4 MiB cache
  CacheStats s = c->stats();
  EXPECT_LE(s.bytes_used, limit);
  EXPECT_GT(s.evictions, 0u);
  std::vector<uint8_t> out(v.size());
  EXPECT_TRUE(c->get("k63", v.size(), out.data())) << "the most recent value stays";
  EXPECT_FALSE(c->get("k0", v.size(), out.data())) << "the least recent went first";
}

TYPED_TEST(BlockCacheContract, KeysAreDistinct) {
  auto c = this->open();
  auto a = value(1000, 1), b = value(1000, 2);
  c->put(frame_cache_key(Xxh128{1}), a.data(), a.size());
  c->put(block_cache_key("id", 1u << 20, 0), b.data(), b.size());
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(c->get(frame_cache_key(Xxh128{1}), 1000, out.data()));
  EXPECT_EQ(out, a);
  ASSERT_TRUE(c->get(block_cache_key("id", 1u << 20, 0), 1000, out.data()));
  EXPECT_EQ(out, b);
  EXPECT_FALSE(c->get(block_cache_key("id", 1u << 20, 1), 1000, out.data()));
}

}  // namespace
