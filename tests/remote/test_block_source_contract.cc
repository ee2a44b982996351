// One test body run over every BlockSource implementation (a local file,
// an HTTP origin served by nginx on loopback, the caching decorator over a
// local file and over HTTP): the contract of fetch/include/tenpak/block_source.h.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "servers.h"
#include "temp_dir.h"
#include "tenpak/cache.h"
#include "tenpak/cached_source.h"
#include "tenpak/open_source.h"

using namespace tenpak;

namespace {

constexpr size_t kSize = (3u << 20) + 12345;  // not a multiple of any block size

// The bytes every source serves, in a file under a served root; nginx
// started once per process (null with the reason when it cannot run).
struct World {
  tenpak::fakes::TempDir dir{"bs-contract"};
  std::string bytes, path;
  std::unique_ptr<tptest::Nginx> nginx;
  std::string nginx_skip;
  World() {
    bytes.resize(kSize);
    std::mt19937_64 g(42);
    for (auto& c : bytes) c = static_cast<char>(g());
    std::filesystem::create_directories(dir.path + "/www");
    path = dir.path + "/www/blob";
    std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  }
  tptest::Nginx* http() {
    if (!nginx && nginx_skip.empty()) {
      nginx = std::make_unique<tptest::Nginx>();
      if (!nginx->start(dir.path + "/www", dir.path + "/nginx", &nginx_skip)) {
        nginx.reset();
        if (nginx_skip.empty()) nginx_skip = "nginx did not start";
      }
    }
    return nginx.get();
  }
};
World& world() {
  static World w;
  return w;
}

struct LocalImpl {
  static Result<std::unique_ptr<BlockSource>> open(std::string*) { return open_local_file(world().path); }
};
struct HttpImpl {
  static Result<std::unique_ptr<BlockSource>> open(std::string* skip) {
    auto* ng = world().http();
    if (!ng) {
      *skip = world().nginx_skip;
      return Status{Errc::unavailable, *skip};
    }
    return open_source(ng->url() + "/blob");
  }
};
// The caching decorator over `Inner`, with a small block size so that
// reads cross blocks.
template <class Inner>
struct CachedImpl {
  static Result<std::unique_ptr<BlockSource>> open(std::string* skip) {
    auto inner = Inner::open(skip);
    if (!inner.ok()) return inner.status();
    std::unique_ptr<BlockSource> s = wrap_with_cache(std::move(inner.value()), make_memory_cache(64u << 20), "blob", 64u << 10);
    return s;
  }
};

template <class Impl>
class BlockSourceContract : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    auto r = Impl::open(&skip);
    if (!skip.empty()) GTEST_SKIP() << skip;
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    src_ = std::move(r.value());
  }
  const std::string& want() const { return world().bytes; }
  std::unique_ptr<BlockSource> src_;
};

using Impls = ::testing::Types<LocalImpl, HttpImpl, CachedImpl<LocalImpl>, CachedImpl<HttpImpl>>;
TYPED_TEST_SUITE(BlockSourceContract, Impls);

TYPED_TEST(BlockSourceContract, SizeAndName) {
  EXPECT_EQ(this->src_->size(), kSize);
  EXPECT_FALSE(this->src_->name().empty());
}

TYPED_TEST(BlockSourceContract, ReadsExactBytesAtAnyOffset) {
  std::mt19937_64 g(7);
  std::vector<uint8_t> buf;
  for (int i = 0; i < 40; ++i) {
    const uint64_t off = g() % kSize;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(g() % (300u << 10), kSize - off));
    buf.assign(len, 0);
    ASSERT_TRUE(this->src_->read(off, len, buf.data()).ok()) << off << "+" << len;
    ASSERT_EQ(0, memcmp(buf.data(), this->want().data() + off, len)) << off << "+" << len;
  }
  // The last byte, and a whole-object read.
  uint8_t last = 0;
  ASSERT_TRUE(this->src_->read(kSize - 1, 1, &last).ok());
  EXPECT_EQ(last, static_cast<uint8_t>(this->want().back()));
  buf.assign(kSize, 0);
  ASSERT_TRUE(this->src_->read(0, kSize, buf.data()).ok());
  EXPECT_EQ(0, memcmp(buf.data(), this->want().data(), kSize));
}

TYPED_TEST(BlockSourceContract, ARangePastTheEndIsAnErrorNeverAShortRead) {
  std::vector<uint8_t> buf(8192);
  EXPECT_FALSE(this->src_->read(kSize - 100, 200, buf.data()).ok());
  EXPECT_FALSE(this->src_->read(kSize + 1, 1, buf.data()).ok());
}

TYPED_TEST(BlockSourceContract, ReadInLandsTheBytesInTheLentBuffer) {
  const size_t A = BlockSource::kReadInAlign;
  const uint64_t off = 12345;
  const size_t len = 100000;
  std::vector<uint8_t> raw(len + 3 * A);
  uint8_t* buf = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw.data()) + A - 1) & ~uintptr_t(A - 1));
  auto r = this->src_->read_in(off, len, buf);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_GE(*r, buf);
  ASSERT_LE(*r + len, buf + len + 2 * A);
  EXPECT_EQ(0, memcmp(*r, this->want().data() + off, len));
}

TYPED_TEST(BlockSourceContract, ConcurrentReadersGetTheirOwnBytes) {
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::vector<uint8_t> buf(200000);
      for (int i = 0; i < 10; ++i) {
        const uint64_t off = (static_cast<uint64_t>(t) * 700001 + static_cast<uint64_t>(i) * 131071) % (kSize - buf.size());
        if (!this->src_->read(off, buf.size(), buf.data()).ok() ||
            memcmp(buf.data(), this->want().data() + off, buf.size()) != 0)
          bad++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TYPED_TEST(BlockSourceContract, HintsAndInvalidationNeverChangeTheBytes) {
  this->src_->will_need(0, 1u << 20);
  this->src_->invalidate(1000, 5000);
  std::vector<uint8_t> buf(8000);
  ASSERT_TRUE(this->src_->read(500, buf.size(), buf.data()).ok());
  EXPECT_EQ(0, memcmp(buf.data(), this->want().data() + 500, buf.size()));
}

}  // namespace
