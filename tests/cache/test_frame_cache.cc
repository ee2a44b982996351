// The persistent frame cache as a FrameSource decorator (cache_frames): hits
// checked against the frame hash, damaged entries dropped and read from the
// inner source, the policy deciding which rebuilt frames are stored, and a
// null cache passing reads through.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "fake_frames.h"
#include "tenpak/frame_cache.h"

using namespace tenpak;
using tenpak::fakes::FakeFrames;

TEST(FrameCache, PolicyNames) {
  for (auto p : {FrameCachePolicy::slow, FrameCachePolicy::all, FrameCachePolicy::none})
    EXPECT_EQ(parse_frame_cache_policy(frame_cache_policy_name(p)), p);
  EXPECT_FALSE(parse_frame_cache_policy("fast").has_value());
  EXPECT_FALSE(frame_cache_policy_stores(FrameCachePolicy::slow, "sub_lanes"));
  EXPECT_TRUE(frame_cache_policy_stores(FrameCachePolicy::slow, "sub_ctx"));
  EXPECT_TRUE(frame_cache_policy_stores(FrameCachePolicy::slow, "a codec added later")) << "unknown codecs count as slow";
}

TEST(FrameCache, StoresByPolicyServesHitsAndDropsDamagedEntries) {
  auto cache = make_memory_cache(64u << 20);
  const uint32_t n = 4, len = 1000;
  {
    auto src = cache_frames(std::make_unique<FakeFrames>(n, len, "m", "copy_base"), cache, FrameCachePolicy::slow);
    std::vector<uint8_t> buf(len);
    for (uint32_t k = 0; k < n; ++k) ASSERT_TRUE(src->read(k, buf.data(), false).ok());
    FrameSourceStats s;
    src->add_stats(s);
    EXPECT_TRUE(s.persistent);
    EXPECT_EQ(s.persistent_policy, "slow");
    EXPECT_EQ(s.persistent_stored, 0u) << "copy_base frames are cheap: not stored under slow";
    EXPECT_EQ(s.persistent_skipped, n);
  }
  auto fake = std::make_unique<FakeFrames>(n, len, "m", "sub_ctx");
  FakeFrames* f = fake.get();
  auto src = cache_frames(std::move(fake), cache, FrameCachePolicy::slow);
  std::vector<uint8_t> buf(len);
  for (uint32_t k = 0; k < n; ++k) ASSERT_TRUE(src->read(k, buf.data(), false).ok());
  EXPECT_EQ(f->total_reads.load(), n);
  // Second pass: every frame from the cache, the inner source not asked.
  for (uint32_t k = 0; k < n; ++k) {
    auto r = src->read(k, buf.data(), false);
    ASSERT_TRUE(r.ok());
    auto want = FakeFrames::bytes_of(k, len);
    EXPECT_EQ(0, memcmp(*r, want.data(), len));
  }
  EXPECT_EQ(f->total_reads.load(), n);
  // A damaged entry (same key, other bytes) is never served.
  std::vector<uint8_t> bad = FakeFrames::bytes_of(2, len);
  bad[10] ^= 1;
  cache->put(frame_cache_key(f->frame(2).hash), bad.data(), bad.size());
  auto r = src->read(2, buf.data(), false);
  ASSERT_TRUE(r.ok());
  auto want = FakeFrames::bytes_of(2, len);
  EXPECT_EQ(0, memcmp(*r, want.data(), len));
  EXPECT_EQ(f->reads_of(2), 2u);
  FrameSourceStats s;
  src->add_stats(s);
  EXPECT_EQ(s.persistent_hits, n);
  EXPECT_EQ(s.persistent_rejected, 1u);
  EXPECT_EQ(s.persistent_stored, n + 1);
}

TEST(FrameCache, InnerErrorsPassThroughAndAreNotStored) {
  auto cache = make_memory_cache(1u << 20);
  auto fake = std::make_unique<FakeFrames>(1, 100, "m", "zstd");
  FakeFrames* f = fake.get();
  auto src = cache_frames(std::move(fake), cache, FrameCachePolicy::all);
  f->fail_next = 1;
  std::vector<uint8_t> buf(100);
  EXPECT_EQ(src->read(0, buf.data(), false).status().code(), Errc::io);
  EXPECT_EQ(cache->stats().puts, 0u);
  src->cancel();
  EXPECT_TRUE(f->cancelled.load()) << "cancel() reaches the inner source";
}

TEST(FrameCache, NullCachePassesThroughAndReportsThePolicy) {
  auto fake = std::make_unique<FakeFrames>(2, 100);
  FakeFrames* f = fake.get();
  auto src = cache_frames(std::move(fake), nullptr, FrameCachePolicy::all);
  std::vector<uint8_t> buf(100);
  ASSERT_TRUE(src->read(1, buf.data(), false).ok());
  ASSERT_TRUE(src->read(1, buf.data(), false).ok());
  EXPECT_EQ(f->reads_of(1), 2u);
  FrameSourceStats s;
  src->add_stats(s);
  EXPECT_FALSE(s.persistent);
  EXPECT_EQ(s.persistent_policy, "all");
  EXPECT_EQ(s.persistent_stored + s.persistent_skipped, 0u);
  EXPECT_EQ(src->frame_count(), 2u);
  EXPECT_EQ(src->name(), "fake");
}
