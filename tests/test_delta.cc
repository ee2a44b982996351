#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>

#include "pipeline.h"  // codec/src (private)
#include "tenpak/delta.h"
#include "tenpak/frame_codec.h"
#include "test_util.h"

using namespace tenpak;
namespace fs = std::filesystem;

namespace {

std::string as_dtype(const std::vector<float>& v, DType dt) {
  std::string out(v.size() * dtype_size(dt), '\0');
  convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, v.size(), dt,
                reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

std::vector<float> nudge(std::vector<float> v, uint64_t seed, float scale) {
  auto d = tptest::gauss(v.size(), seed, scale);
  for (size_t i = 0; i < v.size(); ++i) v[i] += d[i];
  return v;
}

struct Pair {
  std::string root, base, ft;
};

// A base with five tensors and a fine-tune exercising every matching rule:
// changed, identical, renamed with a prefix, resized rows, dtype changed,
// unmatched; plus a config file; sharded differently from the base.
Pair make_pair() {
  Pair p;
  p.root = tptest::temp_dir("delta");
  p.base = p.root + "/base";
  p.ft = p.root + "/ft";
  auto w1 = tptest::gauss(300 * 1024, 1), w2 = tptest::gauss(4096, 2), emb = tptest::gauss(100 * 64, 3),
       w3 = tptest::gauss(2048, 4);
  tptest::write_file(p.base + "/model.safetensors",
                     tptest::make_st({{"layers.0.w", DType::BF16, {300, 1024}, as_dtype(w1, DType::BF16)},
                                      {"layers.0.frozen", DType::BF16, {4096}, as_dtype(w2, DType::BF16)},
                                      {"embed.weight", DType::BF16, {100, 64}, as_dtype(emb, DType::BF16)},
                                      {"layers.1.f32", DType::F32, {2048}, as_dtype(w3, DType::F32)}}));
  tptest::write_file(p.base + "/config.json", "{\"hidden\": 64}\n");
  auto emb2 = nudge(emb, 9, 1e-3f);
  auto extra = tptest::gauss(10 * 64, 10);
  emb2.insert(emb2.end(), extra.begin(), extra.end());
  tptest::write_file(p.ft + "/model-00001-of-00002.safetensors",
                     tptest::make_st({{"model.layers.0.w", DType::BF16, {300, 1024}, as_dtype(nudge(w1, 5, 1e-3f), DType::BF16)},
                                      {"model.layers.0.frozen", DType::BF16, {4096}, as_dtype(w2, DType::BF16)}}));
  tptest::write_file(p.ft + "/model-00002-of-00002.safetensors",
                     tptest::make_st({{"model.embed.weight", DType::BF16, {110, 64}, as_dtype(emb2, DType::BF16)},
                                      {"model.layers.1.f32", DType::BF16, {2048}, as_dtype(nudge(w3, 6, 1e-3f), DType::BF16)},
                                      {"model.new_head", DType::F16, {512}, as_dtype(tptest::gauss(512, 7), DType::F16)}}));
  tptest::write_file(p.ft + "/config.json", "{\"hidden\": 64, \"finetuned\": true}\n");
  tptest::write_file(p.ft + "/tokenizer/vocab.txt", std::string(5000, 'v'));
  return p;
}

}  // namespace

TEST(Delta, BuildApplyVerifyIsBitIdentical) {
  Pair p = make_pair();
  auto rep = build_delta(p.base, p.ft, p.root + "/delta", {});
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->tensors, 5u);
  EXPECT_EQ(rep->tensors_matched, 4u);  // all but new_head
  EXPECT_EQ(rep->tensors_identical, 1u);
  std::map<std::string, std::string> match;
  for (auto& t : rep->tensors_detail) match[t.name] = t.match;
  EXPECT_EQ(match["model.embed.weight"], "resized");
  EXPECT_EQ(match["model.layers.1.f32"], "dtype");
  EXPECT_EQ(match["model.layers.0.frozen"], "identical");
  EXPECT_EQ(match["model.new_head"], "none");
  EXPECT_LT(rep->delta_bytes, rep->finetune_bytes * 7 / 10);

  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(attach_local_base(**r, p.base, true).ok());
  // Default workers, and one thread (rebuilt, hashed and written inline).
  for (unsigned threads : {0u, 1u}) {
    ApplyOptions o;
    o.threads = threads;
    const std::string out = p.root + "/out" + std::to_string(threads);
    auto n = apply_delta(**r, out, o);
    ASSERT_TRUE(n.ok()) << n.status().message();
    for (auto& e : fs::recursive_directory_iterator(p.ft)) {
      if (!e.is_regular_file()) continue;
      auto rel = fs::relative(e.path(), p.ft).string();
      EXPECT_EQ(tptest::read_file(out + "/" + rel), tptest::read_file(e.path())) << rel << " threads " << threads;
    }
    // Verify (in memory) also succeeds.
    EXPECT_TRUE(apply_delta(**r, "", o).ok());
  }
  fs::remove_all(p.root);
}

TEST(Delta, WrongBaseIsRefusedBeforeWriting) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  // Same size, one byte different.
  std::string b = tptest::read_file(p.base + "/model.safetensors");
  b[b.size() - 1] ^= 1;
  tptest::write_file(p.root + "/base2/model.safetensors", b);
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  Status st = attach_local_base(**r, p.root + "/base2", true);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Errc::mismatch);
  EXPECT_NE(st.message().find("sha256"), std::string::npos);
  fs::remove_all(p.root);
}

// apply checks the base's sha256 beside the rebuild (ApplyOptions::
// concurrent_check): a wrong base must still be reported as such (not as a
// frame hash failure) and leave no output.
TEST(Delta, ApplyWithConcurrentBaseCheckRefusesWrongBase) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  // Two wrong bases: one byte different in the bytes the delta reads, and in
  // the last byte (read by no frame: only the sha256 check can see it).
  std::string b = tptest::read_file(p.base + "/model.safetensors");
  for (unsigned threads : {0u, 1u}) {
    for (size_t at : {b.size() / 2, b.size() - 1}) {
      std::string w = b;
      w[at] ^= 1;
      tptest::write_file(p.root + "/base2/model.safetensors", w);
      tptest::write_file(p.root + "/base2/config.json", tptest::read_file(p.base + "/config.json"));
      auto r = open_delta_dir(p.root + "/delta");
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE(attach_local_base(**r, p.root + "/base2", false).ok());  // sizes only
      ApplyOptions o;
      o.threads = threads;
      o.concurrent_check = [&] { return check_local_base_sha256((*r)->manifest(), p.root + "/base2"); };
      auto n = apply_delta(**r, p.root + "/out", o);
      ASSERT_FALSE(n.ok()) << "byte " << at << " threads " << threads;
      EXPECT_EQ(n.status().code(), Errc::mismatch) << n.status().message();
      EXPECT_NE(n.status().message().find("wrong base"), std::string::npos) << n.status().message();
      EXPECT_FALSE(fs::exists(p.root + "/out")) << "byte " << at;
    }
  }
  // The right base passes through the same path.
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(attach_local_base(**r, p.base, false).ok());
  ApplyOptions o;
  o.threads = 3;
  o.concurrent_check = [&] { return check_local_base_sha256((*r)->manifest(), p.base); };
  auto n = apply_delta(**r, p.root + "/out", o);
  ASSERT_TRUE(n.ok()) << n.status().message();
  for (auto& e : fs::recursive_directory_iterator(p.ft)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), p.ft).string();
    EXPECT_EQ(tptest::read_file(e.path().string()), tptest::read_file(p.root + "/out/" + rel)) << rel;
  }
  fs::remove_all(p.root);
}

// The check runs beside the rebuild, at -j1 (inline rebuild) as with
// workers: the rebuild does not wait for it before its last frame. The check
// here returns only once every frame was rebuilt (progress at the total), so
// an apply that joined it early (after the first frame at -j1, after the
// first file otherwise) could not finish: the check gives up after 20 s and
// the apply fails. Nothing is committed before the check has returned.
TEST(Delta, ApplyRunsTheBaseCheckBesideTheWholeRebuild) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  for (unsigned threads : {1u, 3u}) {
    auto r = open_delta_dir(p.root + "/delta");
    ASSERT_TRUE(r.ok());
    ASSERT_GE((*r)->manifest().frames.size(), 3u);
    ASSERT_TRUE(attach_local_base(**r, p.base, false).ok());
    std::mutex mu;
    std::condition_variable cv;
    bool all = false;
    ApplyOptions o;
    o.threads = threads;
    o.progress = [&](uint64_t done, uint64_t total) {
      std::lock_guard<std::mutex> g(mu);
      if (done == total) {
        all = true;
        cv.notify_all();
      }
    };
    bool out_before_check = false;
    o.concurrent_check = [&]() -> Status {
      std::unique_lock<std::mutex> g(mu);
      if (!cv.wait_for(g, std::chrono::seconds(20), [&] { return all; }))
        return {Errc::io, "the rebuild waited for the check"};
      out_before_check = fs::exists(p.root + "/out");
      return check_local_base_sha256((*r)->manifest(), p.base);
    };
    auto n = apply_delta(**r, p.root + "/out", o);
    ASSERT_TRUE(n.ok()) << "threads " << threads << ": " << n.status().message();
    EXPECT_FALSE(out_before_check) << "threads " << threads;
    EXPECT_EQ(tptest::read_file(p.root + "/out/model.safetensors"), tptest::read_file(p.ft + "/model.safetensors"));
    fs::remove_all(p.root + "/out");
  }
  fs::remove_all(p.root);
}

// The ordered pipeline under build and apply: items reach the consumer in
// order whatever order workers finish in; a consumer error stops it and
// releases every waiting worker.
TEST(Delta, OrderedPipelineKeepsOrderAndStopsOnError) {
  for (unsigned threads : {1u, 2u, 5u}) {
    for (size_t window : {1u, 3u, 16u}) {
      std::vector<size_t> slots(window), seen;
      auto produce = [&](size_t k, size_t slot) {
        if (k % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));  // out-of-order finishes
        slots[slot] = k * 10;
      };
      auto consume = [&](size_t k, size_t slot) -> Status {
        EXPECT_EQ(slots[slot], k * 10);
        seen.push_back(k);
        return Status::Ok();
      };
      ASSERT_TRUE(ordered_pipeline(200, threads, window, produce, consume).ok());
      ASSERT_EQ(seen.size(), 200u);
      for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], k);
      std::atomic<size_t> produced{0};
      auto produce2 = [&](size_t, size_t) { ++produced; };
      auto fail_at_20 = [&](size_t k, size_t) -> Status {
        return k == 20 ? Status{Errc::io, "disk full"} : Status::Ok();
      };
      Status st = ordered_pipeline(100000, threads, window, produce2, fail_at_20);
      EXPECT_EQ(st.code(), Errc::io);
      EXPECT_LE(produced.load(), 21 + window + threads);  // stopped, not run to the end
    }
  }
}

TEST(Delta, CorruptFrameNamesFileAndFrame) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r0 = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r0.ok());
  // Flip one byte in the middle of the largest frame's payload.
  const auto& m = (*r0)->manifest();
  size_t big = 0;
  for (size_t k = 0; k < m.frames.size(); ++k)
    if (m.frames[k].data_len > m.frames[big].data_len) big = k;
  std::string dat = tptest::read_file(p.root + "/delta/tenpak.dat");
  dat[m.frames[big].data_offset + m.frames[big].data_len / 2] ^= 0x40;
  tptest::write_file(p.root + "/delta/tenpak.dat", dat);
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(attach_local_base(**r, p.base, true).ok());
  for (unsigned threads : {0u, 1u}) {
    ApplyOptions o;
    o.threads = threads;
    auto n = apply_delta(**r, p.root + "/out", o);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.status().code(), Errc::corrupt);
    EXPECT_NE(n.status().message().find("frame " + std::to_string(big)), std::string::npos) << n.status().message();
    EXPECT_NE(n.status().message().find(m.out_files[m.frames[big].file].name), std::string::npos);
    EXPECT_FALSE(fs::exists(p.root + "/out")) << threads;  // nothing under the final name
  }
  fs::remove_all(p.root);
}

TEST(Delta, TruncatedDataIsRefusedAtOpen) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  fs::resize_file(p.root + "/delta/tenpak.dat", fs::file_size(p.root + "/delta/tenpak.dat") / 2);
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
  fs::remove_all(p.root);
}

TEST(Delta, RefusesExistingOutput) {
  Pair p = make_pair();
  tptest::write_file(p.root + "/delta/keep.txt", "precious");
  auto rep = build_delta(p.base, p.ft, p.root + "/delta", {});
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.status().code(), Errc::exists);
  EXPECT_EQ(tptest::read_file(p.root + "/delta/keep.txt"), "precious");
  fs::remove_all(p.root);
}

TEST(Delta, EstimateIsCloseToBuild) {
  Pair p = make_pair();
  auto rep = build_delta(p.base, p.ft, p.root + "/delta", {});
  ASSERT_TRUE(rep.ok());
  BuildOptions o;
  o.sample_every = 2;
  auto est = estimate_delta(p.base, p.ft, o);
  ASSERT_TRUE(est.ok());
  EXPECT_TRUE(est->estimated);
  double ratio = static_cast<double>(est->delta_bytes) / rep->delta_bytes;
  EXPECT_GT(ratio, 0.7);
  EXPECT_LT(ratio, 1.3);
  fs::remove_all(p.root);
}

TEST(Delta, RandomFrameReadsMatch) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(attach_local_base(**r, p.base, false).ok());
  const auto& m = (*r)->manifest();
  std::mt19937 g(1);
  for (int i = 0; i < 200; ++i) {
    uint32_t fi = g() % m.out_files.size();
    const auto& of = m.out_files[fi];
    std::string orig = tptest::read_file(p.ft + "/" + of.name);
    uint64_t off = g() % of.size, len = 1 + g() % std::min<uint64_t>(of.size - off, 100000);
    auto [a, b] = (*r)->frames_for(fi, off, len);
    for (uint32_t k = a; k < b; ++k) {
      const Frame& f = m.frames[k];
      std::vector<uint8_t> out(f.out_len);
      ASSERT_TRUE((*r)->read_frame(k, out.data()).ok());
      ASSERT_EQ(0, std::memcmp(out.data(), orig.data() + f.out_offset, f.out_len));
      ASSERT_LT(f.out_offset, off + len);
      ASSERT_GT(f.out_offset + f.out_len, off);
    }
  }
  fs::remove_all(p.root);
}

// read_frame_in: a frame that copies a base range read direct (a cold
// range, direct_when_cold) lands in the lent buffer at the range's offset
// within its aligned span, with no copy; every other frame at the buffer's
// start. Bytes right either way.
TEST(Delta, ReadFrameInLandsDirectCopiesInPlace) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  const auto& m = (*r)->manifest();
  const std::string base_file = p.base + "/model.safetensors";
  {  // drop the base's pages: every range is cold
    int fd = ::open(base_file.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fdatasync(fd);  // dirty pages would stay
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    const size_t size = fs::file_size(base_file);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    ASSERT_NE(map, MAP_FAILED);
    std::vector<unsigned char> pages((size + 4095) / 4096);
    const bool known = ::mincore(map, size, pages.data()) == 0;
    ::munmap(map, size);
    for (unsigned char c : pages)
      if (!known || (c & 1)) GTEST_SKIP() << "cannot empty the page cache of the base here";
  }
  int dfd = ::open(base_file.c_str(), O_RDONLY | O_DIRECT);
  if (dfd < 0) GTEST_SKIP() << "the temporary directory's file system does not take O_DIRECT";
  ::close(dfd);
  LocalFileOptions lo;
  lo.direct_when_cold = true;
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    auto src = open_local_file(p.base + "/" + m.base_files[i].name, lo);
    ASSERT_TRUE(src.ok());
    ASSERT_TRUE((*r)->set_base(i, std::move(src.value())).ok());
  }
  constexpr size_t kA = BlockSource::kReadInAlign;
  int in_place = 0;
  for (uint32_t k = 0; k < m.frames.size(); ++k) {
    const Frame& f = m.frames[k];
    const std::string orig = tptest::read_file(p.ft + "/" + m.out_files[f.file].name);
    std::unique_ptr<uint8_t, void (*)(uint8_t*)> buf(
        static_cast<uint8_t*>(::operator new(f.out_len + 2 * kA, std::align_val_t(kA))),
        [](uint8_t* q) { ::operator delete(q, std::align_val_t(kA)); });
    auto got = (*r)->read_frame_in(k, buf.get());
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_EQ(0, std::memcmp(*got, orig.data() + f.out_offset, f.out_len)) << k;
    const bool copy = f.codec == Codec::copy_base && f.data_len == 0 && f.base_dtype == f.dtype;
    EXPECT_EQ(*got, buf.get() + (copy ? f.base_offset % kA : 0)) << "frame " << k;
    in_place += copy && f.base_offset % kA != 0;
  }
  EXPECT_GT(in_place, 0) << "no copied frame at an unaligned base offset: the test proves nothing";
  fs::remove_all(p.root);
}

// Frames hold at most 1 MiB, and the first frame of a tensor that starts
// in the file's first 64 KiB ends at 64 KiB: a loader's first read (header
// plus a page or a readahead window) then rebuilds only a small frame.
TEST(Delta, FirstTensorFrameIsSmall) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  const auto& m = (*r)->manifest();
  int checked = 0;
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi) {
    if (m.out_files[fi].name != "model-00001-of-00002.safetensors") continue;
    auto [a, b] = (*r)->frames_for(fi, 0, m.out_files[fi].size);
    ASSERT_GT(b - a, 3u);
    // Frame a is the header; a + 1 starts the 600 KiB tensor model.layers.0.w.
    const Frame& f = m.frames[a + 1];
    EXPECT_LT(f.out_offset, 64u * 1024);
    EXPECT_LE(f.out_offset + f.out_len, 64u * 1024);
    EXPECT_GT(f.out_offset + f.out_len, 64u * 1024 - 2);  // ends at 64 KiB (BF16: whole elements)
    EXPECT_EQ(m.frames[a + 2].out_offset, f.out_offset + f.out_len);
    ++checked;
  }
  EXPECT_EQ(checked, 1);
  for (const Frame& f : m.frames) EXPECT_LE(f.out_len, 1u << 20);
  fs::remove_all(p.root);
}

// A copy_base frame (bit-identical tensor) is read straight into the output
// buffer; a base whose bytes there changed (sha256 not checked) must still
// give a corrupt-frame error naming the frame, never the wrong bytes.
TEST(Delta, CopyBaseFrameFromAWrongBaseIsAnError) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r.ok());
  const Manifest& m = (*r)->manifest();
  // A copy of the base with one bit flipped inside every copy_base frame.
  std::map<uint32_t, std::string> files;
  for (uint32_t i = 0; i < m.base_files.size(); ++i) files[i] = tptest::read_file(p.base + "/" + m.base_files[i].name);
  int copy_frames = 0;
  for (const Frame& f : m.frames)
    if (f.codec == Codec::copy_base && f.out_len > 1000) {
      ++copy_frames;
      files[f.base_file][f.base_offset + f.base_len / 2] ^= 0x01;
    }
  ASSERT_GT(copy_frames, 0) << "the pair's frozen tensor should give copy_base frames";
  for (auto& [i, b] : files) tptest::write_file(p.root + "/bad/" + m.base_files[i].name, b);
  auto bad = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(bad.ok());
  ASSERT_TRUE(attach_local_base(**bad, p.root + "/bad", false).ok());
  for (uint32_t k = 0; k < m.frames.size(); ++k) {
    const Frame& f = m.frames[k];
    if (f.codec != Codec::copy_base || f.out_len <= 1000) continue;
    std::vector<uint8_t> out(f.out_len);
    Status st = (*bad)->read_frame(k, out.data());
    EXPECT_EQ(st.code(), Errc::corrupt) << "frame " << k;
    EXPECT_NE(st.message().find("frame " + std::to_string(k)), std::string::npos) << st.message();
  }
  fs::remove_all(p.root);
}

namespace {
// A large origin file of one repeated byte, counting the bytes read.
class BigFakeSource : public BlockSource {
 public:
  BigFakeSource(uint64_t size, std::string head) : size_(size), head_(std::move(head)) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Status read(uint64_t off, size_t len, uint8_t* dst) override {
    bytes_read += len;
    if (read_total) *read_total += len;
    for (size_t i = 0; i < len; ++i) dst[i] = off + i < head_.size() ? static_cast<uint8_t>(head_[off + i]) : 'x';
    if (len > 64 && flip_first > 0) {  // a damaged transfer of more than the head
      --flip_first;
      dst[len / 2] ^= 0x10;
    }
    return Status::Ok();
  }
  void invalidate(uint64_t, size_t) override {
    if (invalidated) ++*invalidated;
  }
  int flip_first = 0;
  int* invalidated = nullptr;  // counts invalidate() calls (outlives the source)
  uint64_t* read_total = nullptr;  // counts the bytes read (outlives the source)
  uint64_t size_;
  std::string head_, name_ = "http://origin/delta/tenpak.idx";
  std::atomic<uint64_t> bytes_read{0};
};
}  // namespace

// A remote tenpak.idx is bounded by its head before the rest is read: a
// 300 MB file that is not an index, or an index head whose counts cannot
// fill it, is refused after reading 32 bytes (the whole file was read
// into memory before).
TEST(Delta, IndexFromAnOriginIsBoundedBeforeItIsRead) {
  for (int kind = 0; kind < 2; ++kind) {
    std::string head;
    if (kind == 1) {  // a valid head of a tiny index (1 file, 1 frame)
      Manifest m;
      m.out_files.push_back({"a.bin", 4, {}, 0644, 0, 1});
      Frame f{};
      f.file = 0, f.out_len = 4, f.codec = Codec::store, f.dtype = DType::U8, f.base_dtype = DType::U8, f.base_file = kNoBase;
      m.frames.push_back(f);
      head = serialize_manifest(m).substr(0, kIndexHeadSize);
    }
    auto idx = std::make_unique<BigFakeSource>(300ull << 20, head);
    // Counted outside the source: a refused open destroys it (reading its
    // own counter after open was a use after free, found under ASan).
    uint64_t read = 0;
    idx->read_total = &read;
    auto r = DeltaReader::open(std::move(idx), std::make_unique<BigFakeSource>(1000, ""), "delta");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Errc::corrupt);
    EXPECT_NE(r.status().message().find(kind == 0 ? "bad magic" : "more than its counts allow"), std::string::npos)
        << r.status().message();
    EXPECT_LE(read, kIndexHeadSize) << "read before the head was checked";
  }
}

// A manifest with two output files of one name (or a name that is also the
// directory of another) is refused by every reader: apply wrote the wrong
// content and reported success before.
TEST(Delta, DuplicateOutputNamesAreRefused) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  auto r0 = open_delta_dir(p.root + "/delta");
  ASSERT_TRUE(r0.ok());
  const Manifest good = (*r0)->manifest();
  ASSERT_GE(good.out_files.size(), 3u);
  for (int kind = 0; kind < 2; ++kind) {
    Manifest m = good;
    m.out_files[1].name = kind == 0 ? m.out_files[0].name : m.out_files[0].name + "/x";
    tptest::write_file(p.root + "/delta/tenpak.idx", serialize_manifest(m));
    auto r = open_delta_dir(p.root + "/delta");
    ASSERT_FALSE(r.ok()) << "kind " << kind;
    EXPECT_EQ(r.status().code(), Errc::corrupt);
    EXPECT_NE(r.status().message().find(kind == 0 ? "two files named '" + m.out_files[0].name + "'" : "both a file and the directory"),
              std::string::npos)
        << r.status().message();
  }
  fs::remove_all(p.root);
}

// Symbolic links in a model directory: files are named lexically, links
// followed for content only into the directory or the Hugging Face cache's
// blobs, any other target refused. Before: a snapshot's files were named
// "../../blobs/HASH" (every later command refused the index, 0 tensors
// matched) and a link to a file outside put its content into the delta.
TEST(Delta, SymlinksNamedLexicallyAndFollowedOnlyWithinReason) {
  Pair p = make_pair();
  // An HF cache layout of the fine-tune: snapshots/REV/* -> ../../blobs/*.
  std::string repo = p.root + "/hub/models--org--ft", snap = repo + "/snapshots/abc123";
  fs::create_directories(repo + "/blobs");
  std::vector<std::string> names;
  for (auto& e : fs::recursive_directory_iterator(p.ft))
    if (e.is_regular_file()) names.push_back(e.path().lexically_relative(p.ft).generic_string());
  int n = 0;
  for (auto& name : names) {
    std::string blob = repo + "/blobs/" + std::to_string(n++) + "f00d";
    fs::copy_file(p.ft + "/" + name, blob);
    fs::create_directories(fs::path(snap + "/" + name).parent_path());
    std::string up = "../..";
    for (char c : name) if (c == '/') up += "/..";
    fs::create_symlink(up + "/blobs/" + fs::path(blob).filename().string(), snap + "/" + name);
  }
  auto direct = build_delta(p.base, p.ft, p.root + "/d-direct", {});
  ASSERT_TRUE(direct.ok());
  auto r = build_delta(p.base, snap + "/", p.root + "/d-snap", {});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->tensors_matched, direct->tensors_matched);
  EXPECT_GT(r->tensors_matched, 0u);
  EXPECT_EQ(r->followed_links.size(), names.size());
  ASSERT_FALSE(r->followed_links.empty());
  EXPECT_NE(r->followed_links[0].find("fine-tune: "), std::string::npos);
  EXPECT_NE(r->followed_links[0].find("/blobs/"), std::string::npos);
  auto rd = open_delta_dir(p.root + "/d-snap");
  ASSERT_TRUE(rd.ok()) << rd.status().message();
  std::vector<std::string> got;
  for (auto& f : (*rd)->manifest().out_files) got.push_back(f.name);
  std::sort(got.begin(), got.end());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(got, names);
  ASSERT_TRUE(attach_local_base(**rd, p.base, true).ok());
  ASSERT_TRUE(apply_delta(**rd, p.root + "/out-snap", {}).ok());
  for (auto& name : names)
    EXPECT_EQ(tptest::read_file(p.root + "/out-snap/" + name), tptest::read_file(p.ft + "/" + name)) << name;
  // A link out of the model directory (not a cache blob) is refused, naming both.
  tptest::write_file(p.root + "/secret", "root:x:0:0\n");
  fs::create_symlink(p.root + "/secret", p.ft + "/notes.txt");
  auto bad = build_delta(p.base, p.ft, p.root + "/d-bad", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Errc::unsupported);
  EXPECT_NE(bad.status().message().find("notes.txt: a symbolic link to " + fs::canonical(p.root + "/secret").string()),
            std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(fs::exists(p.root + "/d-bad"));
  // A link within the directory is followed.
  fs::remove(p.ft + "/notes.txt");
  fs::create_symlink("config.json", p.ft + "/config-copy.json");
  auto ok = build_delta(p.base, p.ft, p.root + "/d-inside", {});
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->followed_links.size(), 1u);
  fs::remove_all(p.root);
}

// An index damaged on the way (the first download flipped) is read again
// before it counts as corrupt: the delta opens. Before: a corrupted
// tenpak.idx download failed the mount with no retry. A persistently
// damaged index is still refused (corrupt).
TEST(Delta, IndexDamagedInTransitIsReadAgain) {
  Pair p = make_pair();
  ASSERT_TRUE(build_delta(p.base, p.ft, p.root + "/delta", {}).ok());
  std::string idx = tptest::read_file(p.root + "/delta/tenpak.idx");
  for (int bad_reads : {1, 2, 1000}) {
    auto src = std::make_unique<BigFakeSource>(idx.size(), idx);
    src->flip_first = bad_reads;
    int invalidated = 0;
    src->invalidated = &invalidated;
    auto dat = open_local_file(p.root + "/delta/tenpak.dat");
    ASSERT_TRUE(dat.ok());
    auto r = DeltaReader::open(std::move(src), std::move(dat.value()), "delta");
    if (bad_reads < 3) {
      ASSERT_TRUE(r.ok()) << bad_reads << ": " << r.status().message();
      EXPECT_EQ(invalidated, bad_reads);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Errc::corrupt);
      EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status().message();
    }
  }
  fs::remove_all(p.root);
}
