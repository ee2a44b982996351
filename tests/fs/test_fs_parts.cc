// The parts ModelFs is made of, each alone (fs/src/*.h): the inode table,
// frame memory, the in-memory frame cache with served ranges, the workers'
// queues, the prefetch planner, the frame service over a fake FrameSource
// (in-flight de-duplication, workers, failed prefetches) and the retry
// decorator. No delta, no mount.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "delta_frames.h"
#include "fake_frames.h"
#include "frame_lru.h"
#include "frame_pool.h"
#include "frame_service.h"
#include "inode_table.h"
#include "prefetch_planner.h"
#include "work_queues.h"

using namespace tenpak;
using namespace tenpak::fsi;
using tenpak::fakes::FakeFrames;

namespace {

std::vector<std::string> names(const std::vector<FsDirEntry>& v) {
  std::vector<std::string> out;
  for (auto& e : v) out.push_back(e.name);
  return out;
}

// A frame of `len` bytes on the heap (footprint == len).
FramePtr heap_frame(size_t len) { return std::make_shared<FrameBuf>(len, nullptr); }

}  // namespace

// --- InodeTable ------------------------------------------------------------

TEST(InodeTable, TreeOfTwoModelsWithAHiddenControlDir) {
  InodeTable t;
  ASSERT_TRUE(t.add_model(0, "org/a", {{"config.json", 10, 0644}, {"sub/w.safetensors", 100, 0755}}, "a").ok());
  ASSERT_TRUE(t.add_model(1, "org/b", {{"model.safetensors", 7, 0600}}, "b").ok());
  ASSERT_TRUE(t.add_control(".tenpak", "stats.json", 8192).ok());
  auto root = t.readdir(ModelFs::kRootIno);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(names(*root), std::vector<std::string>{"org"});  // the control dir is not listed
  auto org = t.lookup(ModelFs::kRootIno, "org");
  ASSERT_TRUE(org && org->is_dir);
  EXPECT_EQ(org->nlink, 4u);  // 2 + two sub-directories
  EXPECT_EQ(names(*t.readdir(org->ino)), (std::vector<std::string>{"a", "b"}));
  auto a = t.lookup(org->ino, "a");
  auto w = t.lookup(t.lookup(a->ino, "sub")->ino, "w.safetensors");
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->size, 100u);
  EXPECT_EQ(w->mode, 0555u);  // read-only view of 0755
  const InodeTable::Node* n = t.node(w->ino);
  EXPECT_EQ(n->model, 0u);
  EXPECT_EQ(n->file, 1u);
  auto b = t.lookup(t.lookup(org->ino, "b")->ino, "model.safetensors");
  EXPECT_EQ(b->mode, 0400u);  // 0600: the read bit kept, write dropped
  EXPECT_EQ(t.node(b->ino)->model, 1u);
  auto ctl = t.lookup(ModelFs::kRootIno, ".tenpak");
  ASSERT_TRUE(ctl.has_value());
  auto sf = t.lookup(ctl->ino, "stats.json");
  ASSERT_TRUE(sf.has_value());
  EXPECT_EQ(sf->size, 8192u);
  EXPECT_TRUE(t.node(sf->ino)->control);
  EXPECT_FALSE(t.getattr(0).has_value());
  EXPECT_FALSE(t.getattr(t.size() + 1).has_value());
  EXPECT_FALSE(t.readdir(w->ino).has_value());  // not a directory
  EXPECT_FALSE(t.lookup(w->ino, "x").has_value());
}

TEST(InodeTable, ConflictsAreRefused) {
  InodeTable t;
  ASSERT_TRUE(t.add_model(0, "", {{"x", 1, 0644}}, "first").ok());
  Status dup = t.add_model(1, "", {{"x", 1, 0644}}, "second");
  EXPECT_EQ(dup.code(), Errc::invalid);
  EXPECT_NE(dup.message().find("second"), std::string::npos) << dup.message();
  Status under_file = t.add_model(2, "x/y", {{"z", 1, 0644}}, "third");  // x is a file
  EXPECT_EQ(under_file.code(), Errc::invalid);
  InodeTable t2;
  ASSERT_TRUE(t2.add_model(0, "", {{".tenpak", 1, 0644}}, "m").ok());
  EXPECT_EQ(t2.add_control(".tenpak", "stats.json", 8192).code(), Errc::invalid);
}

TEST(InodeTable, SameModelsGiveSameInodes) {
  auto build = [] {
    InodeTable t;
    EXPECT_TRUE(t.add_model(0, "a", {{"f1", 1, 0644}, {"d/f2", 2, 0644}}, "a").ok());
    EXPECT_TRUE(t.add_control(".tenpak", "stats.json", 8192).ok());
    return t.lookup(t.lookup(t.lookup(ModelFs::kRootIno, "a")->ino, "d")->ino, "f2")->ino;
  };
  EXPECT_EQ(build(), build());
}

// --- FramePool / FrameBuf --------------------------------------------------

TEST(FramePool, LargeFramesUseAlignedRecycledSlotsSmallOnesTheHeap) {
  auto pool = std::make_shared<FramePool>(64u << 20);
  uint8_t* first = nullptr;
  {
    FrameBuf big(kMaxFrameOut, pool);
    EXPECT_TRUE(big.lendable());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(big.room()) % BlockSource::kReadInAlign, 0u);
    EXPECT_EQ(big.footprint(), FramePool::kSlot);
    big.set_start(big.room() + 4096);
    EXPECT_EQ(big.data(), big.room() + 4096);
    first = big.room();
  }
  FrameBuf again(kMaxFrameOut, pool);
  EXPECT_EQ(again.room(), first) << "a released slot is taken again first";
  FrameBuf small(100, pool);
  EXPECT_FALSE(small.lendable());
  EXPECT_EQ(small.footprint(), 100u);
  EXPECT_EQ(small.data(), small.room());
}

TEST(FramePool, BeyondItsLimitFramesGoToTheHeap) {
  // Room for one region (32 slots) only.
  auto pool = std::make_shared<FramePool>(32ull * kMaxFrameOut);
  std::vector<std::unique_ptr<FrameBuf>> held;
  for (int i = 0; i < 32; ++i) {
    held.push_back(std::make_unique<FrameBuf>(kMaxFrameOut, pool));
    EXPECT_TRUE(held.back()->lendable()) << i;
  }
  FrameBuf extra(kMaxFrameOut, pool);
  EXPECT_FALSE(extra.lendable());
  EXPECT_EQ(pool->slots(), 32u);
}

// --- FrameLru --------------------------------------------------------------

TEST(FrameLru, EvictsLeastRecentAtTheLimitAndCountsWastedPrefetches) {
  FrameLru lru(300, 1000, 10);
  lru.insert(0, heap_frame(100), false);
  lru.insert(1, heap_frame(100), true);  // prefetched, never used
  lru.insert(2, heap_frame(100), false);
  EXPECT_TRUE(lru.use(0));  // 0 is now the most recent: 1 is the least
  lru.insert(3, heap_frame(100), false);
  EXPECT_FALSE(lru.contains(1));
  EXPECT_TRUE(lru.contains(0) && lru.contains(2) && lru.contains(3));
  EXPECT_EQ(lru.counters().evictions.load(), 1u);
  EXPECT_EQ(lru.counters().prefetch_wasted.load(), 1u);
  EXPECT_EQ(lru.bytes(), 300u);
  EXPECT_FALSE(lru.use(1));
  EXPECT_EQ(lru.counters().hits.load(), 1u);
}

TEST(FrameLru, OneFrameLargerThanTheLimitStays) {
  FrameLru lru(50, 1000, 2);
  lru.insert(0, heap_frame(100), false);
  EXPECT_TRUE(lru.contains(0));
}

TEST(FrameLru, PrefetchHitCountedOnce) {
  FrameLru lru(1000, 1000, 2);
  lru.insert(0, heap_frame(10), true);
  EXPECT_FALSE(lru.use(5));
  EXPECT_TRUE(lru.use(0));
  EXPECT_TRUE(lru.use(0));
  EXPECT_EQ(lru.counters().hits.load(), 2u);
  EXPECT_EQ(lru.counters().prefetch_hits.load(), 1u);
  EXPECT_TRUE(lru.peek(0));
  EXPECT_EQ(lru.counters().hits.load(), 2u) << "peek counts nothing";
}

TEST(FrameLru, ServedRangesMergeAndAFrameServedWholeIsSpent) {
  FrameLru lru(10000, 250, 4);
  lru.insert(0, heap_frame(100), false);
  lru.served(0, 0, 40);
  lru.served(0, 0, 40);  // the same range twice: not whole
  EXPECT_FALSE(lru.served_whole(0));
  lru.served(0, 60, 40);
  EXPECT_FALSE(lru.served_whole(0));  // a hole at [40, 60)
  lru.served(0, 30, 35);
  EXPECT_TRUE(lru.served_whole(0));
  EXPECT_EQ(lru.spent_bytes(), 100u);
  // Spent frames are kept only up to spent_keep_bytes (250), oldest out first.
  for (uint64_t g = 1; g <= 3; ++g) {
    lru.insert(g, heap_frame(100), false);
    lru.served(g, 0, 100);
  }
  EXPECT_FALSE(lru.contains(0));
  EXPECT_FALSE(lru.contains(1));
  EXPECT_TRUE(lru.contains(2) && lru.contains(3));
  EXPECT_EQ(lru.counters().spent_evictions.load(), 2u);
  EXPECT_EQ(lru.spent_bytes(), 200u);
  EXPECT_TRUE(lru.served_whole(0)) << "the bit outlives the frame: the kernel holds its pages";
}

TEST(FrameLru, SpentFramesLeaveBeforeUnreadOnes) {
  FrameLru lru(300, 1000, 4);
  lru.insert(0, heap_frame(100), false);
  lru.insert(1, heap_frame(100), false);
  lru.served(1, 0, 100);  // 1 spent, 0 not read yet
  lru.insert(2, heap_frame(100), false);
  lru.insert(3, heap_frame(100), false);  // over the limit: the spent frame goes, not the older 0
  EXPECT_TRUE(lru.contains(0));
  EXPECT_FALSE(lru.contains(1));
}

TEST(FrameLru, AFrameRebuiltForAReReadIsSpentAtItsFirstByte) {
  FrameLru lru(1000, 1000, 2);
  lru.insert(0, heap_frame(100), false, /*reread=*/true);
  lru.served(0, 10, 1);
  EXPECT_TRUE(lru.served_whole(0));
  EXPECT_EQ(lru.spent_bytes(), 100u);
}

// --- WorkQueues ------------------------------------------------------------

TEST(WorkQueues, UrgentFirstPrefetchOnlyWhenAllowedBounded) {
  WorkQueues q(2);
  EXPECT_EQ(q.push(1, JobKind::prefetch, false), WorkQueues::Push::queued);
  EXPECT_EQ(q.push(2, JobKind::prefetch, false), WorkQueues::Push::queued);
  EXPECT_EQ(q.push(3, JobKind::prefetch, false), WorkQueues::Push::full);
  EXPECT_EQ(q.push(9, JobKind::assist, true), WorkQueues::Push::queued);  // the urgent line has no bound
  EXPECT_EQ(q.push(1, JobKind::prefetch, false), WorkQueues::Push::already);
  EXPECT_FALSE(q.contains(3));
  auto j = q.pop(false);
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->gid, 9u);
  EXPECT_EQ(j->kind, JobKind::assist);
  EXPECT_TRUE(j->urgent);
  EXPECT_FALSE(q.pop(false).has_value()) << "prefetch waits while a reader works";
  EXPECT_FALSE(q.has_work(false));
  EXPECT_TRUE(q.has_work(true));
  j = q.pop(true);
  EXPECT_EQ(j->gid, 1u);
  EXPECT_FALSE(j->urgent);
  EXPECT_TRUE(q.remove(2));
  EXPECT_FALSE(q.remove(2));
  EXPECT_TRUE(q.empty());
}

TEST(WorkQueues, AQueuedPrefetchAReaderNeedsMovesToTheUrgentLine) {
  WorkQueues q(8);
  q.push(1, JobKind::prefetch, false);
  q.push(2, JobKind::prefetch, false);
  EXPECT_EQ(q.push(2, JobKind::assist, true), WorkQueues::Push::already);
  auto j = q.pop(false);
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->gid, 2u);
  EXPECT_EQ(j->kind, JobKind::assist);
  EXPECT_TRUE(j->urgent);
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.contains(1));
}

// --- PrefetchPlanner -------------------------------------------------------

namespace {
// A file of 1 MiB frames: frames of [off, off+len).
ReadSeen seen(uint64_t off, uint64_t len, uint64_t size, bool served_whole = false) {
  const uint64_t F = 1u << 20;
  ReadSeen r;
  r.off = off;
  r.len = len;
  r.file_size = size;
  r.safetensors = true;
  r.first = static_cast<uint32_t>(off / F);
  r.end = static_cast<uint32_t>((off + len + F - 1) / F);
  r.first_served_whole = [served_whole] { return served_whole; };
  r.frames_end = [F](uint64_t o, uint64_t l) { return static_cast<uint32_t>((o + l + F - 1) / F); };
  return r;
}
}  // namespace

TEST(PrefetchPlanner, HeaderOpensTheWindowSequentialGrowsFarSeekCloses) {
  const uint64_t M = 1u << 20, size = 256 * M;
  PrefetchPlanner p(16 * M, 64 * M, true);
  EXPECT_EQ(p.max_window(), 16 * M);
  SeqState s;
  PrefetchPlan a = p.plan(s, seen(0, 4096, size));
  EXPECT_FALSE(a.sparse_reread);
  EXPECT_EQ(a.from, 1u);
  EXPECT_EQ(a.to, 17u);  // 16 MiB after the first frame
  PrefetchPlan b = p.plan(s, seen(M, M, size));  // sequential: only what is new
  EXPECT_EQ(b.from, 17u);
  EXPECT_EQ(b.to, 18u);
  PrefetchPlan far = p.plan(s, seen(200 * M, M, size));
  EXPECT_GE(far.from, far.to) << "a far seek plans nothing";
  EXPECT_EQ(s.window, 0u);
  PrefetchPlan next = p.plan(s, seen(201 * M, M, size));  // going on from there: 2 MiB, then doubling
  EXPECT_EQ(next.from, 202u);
  EXPECT_EQ(next.to, 204u);
  PrefetchPlan more = p.plan(s, seen(202 * M, M, size));
  EXPECT_EQ(more.to, 207u);  // 4 MiB window after 203 MiB
}

TEST(PrefetchPlanner, WindowCappedAtAQuarterOfTheCache) {
  PrefetchPlanner p(64u << 20, 16u << 20, true);
  EXPECT_EQ(p.max_window(), 4u << 20);
}

TEST(PrefetchPlanner, ShortReadOfAFrameServedWholeIsASparseReRead) {
  const uint64_t M = 1u << 20;
  PrefetchPlanner p(16 * M, 64 * M, true);
  SeqState s;
  PrefetchPlan r = p.plan(s, seen(5 * M + 4096, 4096, 64 * M, /*served_whole=*/true));
  EXPECT_TRUE(r.sparse_reread);
  EXPECT_GE(r.from, r.to);
  // Contiguous with it: planned as usual.
  PrefetchPlan c = p.plan(s, seen(5 * M + 8192, 4096, 64 * M, true));
  EXPECT_FALSE(c.sparse_reread);
  // A long read is never sparse.
  SeqState s2;
  EXPECT_FALSE(p.plan(s2, seen(5 * M, M, 64 * M, true)).sparse_reread);
}

TEST(PrefetchPlanner, WithoutWorkersNothingIsPlanned) {
  PrefetchPlanner p(16u << 20, 64u << 20, false);
  SeqState s;
  PrefetchPlan a = p.plan(s, seen(0, 4096, 64u << 20));
  EXPECT_FALSE(a.sparse_reread);
  EXPECT_GE(a.from, a.to);
}

// --- FrameService over a fake source ---------------------------------------

namespace {
struct Service {
  FakeFrames* src = nullptr;  // owned by svc
  std::unique_ptr<FrameService> svc;
  std::vector<std::string> logs;
  std::mutex mu;
};
std::unique_ptr<Service> make_service(unsigned workers, uint32_t frames = 16, uint32_t len = 1u << 20) {
  auto s = std::make_unique<Service>();
  auto src = std::make_unique<FakeFrames>(frames, len);
  s->src = src.get();
  std::vector<std::unique_ptr<FrameSource>> v;
  v.push_back(std::move(src));
  FrameServiceOptions o;
  o.workers = workers;
  Service* raw = s.get();
  o.log = [raw](const std::string& l) {
    std::lock_guard lk(raw->mu);
    raw->logs.push_back(l);
  };
  s->svc = std::make_unique<FrameService>(std::move(v), o);
  return s;
}
}  // namespace

TEST(FrameService, ServesTheSourcesBytesAndCachesThem) {
  auto s = make_service(0, 4, 1u << 20);
  for (uint32_t k = 0; k < 4; ++k) {
    auto r = s->svc->get(k, JobKind::demand);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto want = FakeFrames::bytes_of(k, 1u << 20);
    ASSERT_EQ((*r)->size(), want.size());
    EXPECT_EQ(0, memcmp((*r)->data(), want.data(), want.size())) << "lent buffer: bytes where the source put them";
  }
  ASSERT_TRUE(s->svc->get(2, JobKind::demand).ok());
  EXPECT_EQ(s->src->reads_of(2), 1u);
  EXPECT_EQ(s->svc->counters().misses.load(), 4u);
  EXPECT_EQ(s->svc->lru_counters().hits.load(), 1u);
  EXPECT_FALSE(s->svc->has_workers());
  EXPECT_FALSE(s->svc->enqueue(0, 4)) << "no workers: nothing queued";
}

TEST(FrameService, ConcurrentReadersOfOneFrameCostOneRead) {
  auto s = make_service(0);
  s->src->delay_ms = 300;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i)
    ts.emplace_back([&] { ok += s->svc->get(3, JobKind::demand).ok(); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(s->src->reads_of(3), 1u);
  // The others joined the read in flight (or, started late, found the frame cached).
  EXPECT_EQ(s->svc->counters().inflight_joins.load() + s->svc->lru_counters().hits.load(), 5u);
  EXPECT_EQ(s->svc->counters().misses.load(), 1u);
}

TEST(FrameService, WorkersReadQueuedFramesAheadAndReadersFindThem) {
  auto s = make_service(2);
  ASSERT_TRUE(s->svc->enqueue(0, 8));
  s->svc->drain();
  EXPECT_EQ(s->svc->counters().prefetch_issued.load(), 8u);
  for (uint32_t k = 0; k < 8; ++k) ASSERT_TRUE(s->svc->get(k, JobKind::demand).ok());
  EXPECT_EQ(s->src->total_reads.load(), 8u);
  EXPECT_EQ(s->svc->lru_counters().prefetch_hits.load(), 8u);
  EXPECT_EQ(s->svc->counters().misses.load(), 0u);
}

TEST(FrameService, PrefetchQueueBoundDropsAndCounts) {
  auto s = make_service(1, 600, 4096);
  s->src->delay_ms = 20;  // keep the worker busy while queuing
  EXPECT_FALSE(s->svc->enqueue(0, 600));
  EXPECT_GT(s->svc->counters().prefetch_dropped.load(), 0u);
  s->svc->cancel();
}

TEST(FrameService, AFailedPrefetchIsReadAgainByTheReaderThatJoinedIt) {
  auto s = make_service(1);
  s->src->delay_ms = 100;
  s->src->fail_next = 1;  // the worker's read fails (io)
  ASSERT_TRUE(s->svc->enqueue(5, 6));
  while (s->src->total_reads.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the worker is in its read
  auto r = s->svc->get(5, JobKind::demand);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(s->src->reads_of(5), 2u);
  s->svc->drain();
  EXPECT_EQ(s->svc->counters().prefetch_failed.load(), 1u);
  std::lock_guard lk(s->mu);
  ASSERT_FALSE(s->logs.empty());
  EXPECT_NE(s->logs[0].find("prefetch of frame 5 of fake failed"), std::string::npos) << s->logs[0];
}

TEST(FrameService, OtherErrorsOfAJoinedReadAreReturnedAsTheyAre) {
  auto s = make_service(0);
  s->src->fail_next = 1;
  s->src->fail_code = Errc::invalid;
  auto r = s->svc->get(1, JobKind::demand);
  EXPECT_EQ(r.status().code(), Errc::invalid);
  EXPECT_TRUE(s->svc->get(1, JobKind::demand).ok()) << "a failed read leaves nothing cached";
}

TEST(FrameService, GlobalIdsSpanModelsInOrder) {
  std::vector<std::unique_ptr<FrameSource>> v;
  v.push_back(std::make_unique<FakeFrames>(3, 100, "a"));
  v.push_back(std::make_unique<FakeFrames>(0, 100, "empty"));
  v.push_back(std::make_unique<FakeFrames>(2, 100, "b"));
  FrameServiceOptions o;
  o.workers = 0;
  o.log = [](const std::string&) {};
  FrameService svc(std::move(v), o);
  EXPECT_EQ(svc.frame_count(), 5u);
  EXPECT_EQ(svc.locate(2), (std::pair<uint32_t, uint32_t>{0, 2}));
  EXPECT_EQ(svc.locate(3), (std::pair<uint32_t, uint32_t>{2, 0}));
  EXPECT_EQ(svc.first_gid(2), 3u);
  auto r = svc.get(4, JobKind::demand);
  ASSERT_TRUE(r.ok());
  auto want = FakeFrames::bytes_of(1, 100);
  EXPECT_EQ(0, memcmp((*r)->data(), want.data(), 100));
}

TEST(FrameService, CancelReachesTheSources) {
  auto s = make_service(1);
  s->svc->cancel();
  EXPECT_TRUE(s->src->cancelled.load());
  EXPECT_FALSE(s->svc->get(0, JobKind::demand).ok());
}

// --- retry_frames ----------------------------------------------------------

TEST(RetryFrames, IoAndCorruptAreRetriedOthersAreNot) {
  auto counters = std::make_shared<RebuildCounters>();
  auto fake = std::make_unique<FakeFrames>(4, 100);
  FakeFrames* f = fake.get();
  std::vector<std::string> logs;
  RetryOptions o{3, 1, [&logs](const std::string& l) { logs.push_back(l); }};
  auto src = retry_frames(std::move(fake), o, counters);
  std::vector<uint8_t> buf(100);
  f->fail_next = 2;
  ASSERT_TRUE(src->read(0, buf.data(), false).ok());
  EXPECT_EQ(counters->retries.load(), 2u);
  EXPECT_EQ(counters->retried_ok.load(), 1u);
  EXPECT_EQ(logs.size(), 2u);
  f->fail_code = Errc::corrupt;
  f->fail_next = 4;  // one more than the retries
  EXPECT_EQ(src->read(1, buf.data(), false).status().code(), Errc::corrupt);
  EXPECT_EQ(f->reads_of(1), 4u);
  f->fail_next = 0;
  f->fail_code = Errc::invalid;
  f->fail_next = 1;
  EXPECT_EQ(src->read(2, buf.data(), false).status().code(), Errc::invalid);
  EXPECT_EQ(f->reads_of(2), 1u) << "a missing base does not heal by waiting";
  EXPECT_EQ(counters->frames.load(), 1u);
  EXPECT_EQ(counters->bytes.load(), 100u);
  uint64_t n = 0;
  for (auto& h : counters->hist) n += h;
  EXPECT_EQ(n, 1u) << "one latency sample per frame read";
}

TEST(RetryFrames, NothingIsRetriedAfterCancel) {
  auto counters = std::make_shared<RebuildCounters>();
  auto fake = std::make_unique<FakeFrames>(1, 10);
  FakeFrames* f = fake.get();
  auto src = retry_frames(std::move(fake), {5, 1, [](const std::string&) {}}, counters);
  src->cancel();
  EXPECT_TRUE(f->cancelled.load());
  std::vector<uint8_t> buf(10);
  EXPECT_FALSE(src->read(0, buf.data(), false).ok());
  EXPECT_EQ(f->reads_of(0), 1u);
  EXPECT_EQ(counters->retries.load(), 0u);
}
