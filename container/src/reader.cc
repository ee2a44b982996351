#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include "io_util.h"
#include "pipeline.h"
#include "tenpak/scratch.h"
#include "tenpak/base_attach.h"
#include "tenpak/delta.h"
#include "tenpak/open_source.h"
#include "tenpak/model.h"
#include "tenpak/patch_codec.h"

namespace fs = std::filesystem;

namespace tenpak {

namespace {

// Scratch memory for rebuilds, one 2 MiB transparent huge page where the
// kernel gives one (see DeltaReader::ScratchPool for the mount's reason).
class DirectScratch {
 public:
  static constexpr size_t kHuge = 2u << 20;
  DirectScratch() = default;
  ~DirectScratch() {
    if (huge_) munmap(huge_, kHuge);
  }
  DirectScratch(const DirectScratch&) = delete;
  DirectScratch& operator=(const DirectScratch&) = delete;
  // At least n bytes aligned to BlockSource::kReadInAlign, uninitialised.
  // The huge page for a range of at least kHuge / 8, or from this
  // scratch's fifth range on. Its first touch zeroes all 2 MiB (~140 us
  // here), while 4 KiB pages cost a fault each (~2 us on this VM) for the
  // pages written only: the huge page is the cheaper from ~300 KiB up
  // (measured: 40 KB 21 us against 58 us, 256 KiB 135 against 173,
  // 512 KiB 259 against 177). A mount's many frames repay it either way; a
  // process that rebuilds one frame does not (GSM8K's `dataset verify`
  // read its 39 KiB payload into a fresh huge page; docs/BENCHMARKS.md
  // "Dataset deltas" run 17).
  uint8_t* get(size_t n) {
    if (n <= kHuge && (huge_ || ((n >= kHuge / 8 || ++small_ > 4) && map_huge()))) return huge_;
    return heap_.get(n);  // larger (patch extents), small and early, or no mapping
  }

 private:
  // A 2 MiB-aligned 2 MiB mapping (cut out of a 4 MiB one) that asks
  // for a huge page; with THP "never", plain pages (still reused).
  bool map_huge() {
    void* raw = mmap(nullptr, 2 * kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return false;
    const uintptr_t r = reinterpret_cast<uintptr_t>(raw), at = (r + kHuge - 1) & ~uintptr_t(kHuge - 1);
    if (at > r) munmap(raw, at - r);
    if (r + 2 * kHuge > at + kHuge) munmap(reinterpret_cast<void*>(at + kHuge), r + 2 * kHuge - (at + kHuge));
    huge_ = reinterpret_cast<uint8_t*>(at);
    madvise(huge_, kHuge, MADV_HUGEPAGE);  // best effort
    return true;
  }
  uint8_t* huge_ = nullptr;
  unsigned small_ = 0;  // ranges under kHuge / 8 served before the huge page
  AlignedScratch<BlockSource::kReadInAlign> heap_;
};

}  // namespace

// Buffers for the payload and the base range of one rebuild, lent to
// whichever thread rebuilds and given back after: a mount's FUSE threads
// come and go (libfuse runs up to ten), and a pair of its own per thread
// would be up to 2-3 MiB of memory touched for the first time by each, a
// page fault per 4 KiB (~15 us each on the 2-core VM of docs/BENCHMARKS.md).
// Shared, the pool holds as many pairs as rebuilds ran at once.
//
// Each buffer is one 2 MiB transparent huge page where the kernel gives one:
// a range read direct (read_in: a mount reads a cold base, and its delta's
// data file, with O_DIRECT) pins the buffer's pages for the device
// (get_user_pages) and maps them for it page by page, 257 pages of 4 KiB for
// a 1 MiB range against one huge page (gup was 4% of the daemon's CPU on a
// cold bf16 read, docs/BENCHMARKS.md "Mount").
struct DeltaReader::ScratchPool {
  struct Pair {
    DirectScratch payload;  // for read_in (a delta data file read direct)
    DirectScratch base;     // for read_in
  };
  std::mutex mu;
  std::vector<std::unique_ptr<Pair>> free;

  // A pair for the caller's rebuild, back in the pool when it goes.
  class Lease {
   public:
    explicit Lease(ScratchPool& p) : pool_(p) {
      std::lock_guard lk(pool_.mu);
      if (!pool_.free.empty()) {
        pair_ = std::move(pool_.free.back());
        pool_.free.pop_back();
      }
      if (!pair_) pair_ = std::make_unique<Pair>();
    }
    ~Lease() {
      std::lock_guard lk(pool_.mu);
      pool_.free.push_back(std::move(pair_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Pair* operator->() const { return pair_.get(); }

   private:
    ScratchPool& pool_;
    std::unique_ptr<Pair> pair_;
  };
};

DeltaReader::DeltaReader() : scratch_(std::make_unique<ScratchPool>()) {}
DeltaReader::~DeltaReader() = default;

Result<std::unique_ptr<DeltaReader>> DeltaReader::open(std::unique_ptr<BlockSource> index,
                                                       std::unique_ptr<BlockSource> data,
                                                       const std::string& delta_name) {
  constexpr uint64_t kMaxIndex = 4ull << 30;
  if (index->size() > kMaxIndex) return Status{Errc::corrupt, index->name() + ": index larger than 4 GiB"};
  // The head first: an origin's file that is not an index, or larger than
  // its counts allow, is refused before the rest is read into memory.
  uint8_t head[kIndexHeadSize];
  const size_t nhead = static_cast<size_t>(std::min<uint64_t>(index->size(), kIndexHeadSize));
  TP_RETURN_IF_ERROR(index->read(0, nhead, head));
  TP_RETURN_IF_ERROR(check_index_head(head, nhead, index->size(), index->name()));
  std::vector<uint8_t> buf(index->size());
  // An index that fails its checksum may have been damaged on the way (a
  // flipped bit in transit, a bad cached copy): dropped and read again,
  // twice, before it counts as corrupt.
  Result<Manifest> m = Status{Errc::corrupt, index->name()};
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) index->invalidate(0, buf.size());
    TP_RETURN_IF_ERROR(index->read(0, buf.size(), buf.data()));
    m = parse_manifest(buf.data(), buf.size(), index->name());
    if (m.ok() || m.status().code() != Errc::corrupt) break;
  }
  if (!m.ok()) return m.status();
  for (size_t k = 0; k < m->frames.size(); ++k) {
    const Frame& f = m->frames[k];
    if (f.data_offset > data->size() || f.data_len > data->size() - f.data_offset)
      return Status{Errc::corrupt, data->name() + ": frame " + std::to_string(k) + " lies past the end of the data file (" +
                                       std::to_string(data->size()) + " bytes; delta truncated?)"};
  }
  std::unique_ptr<DeltaReader> r(new DeltaReader());
  r->m_ = std::move(m.value());
  r->name_ = delta_name;
  r->data_ = std::move(data);
  r->bases_.resize(r->m_.base_files.size());
  return r;
}

Status DeltaReader::set_base(uint32_t i, std::unique_ptr<BlockSource> src) {
  if (i >= bases_.size()) return {Errc::invalid, "base file index out of range"};
  const BaseFile& bf = m_.base_files[i];
  if (src->size() != bf.size)
    return {Errc::mismatch, src->name() + ": this base file is " + std::to_string(src->size()) + " bytes, but the delta " +
                                name_ + " was built against a '" + bf.name + "' of " + std::to_string(bf.size) +
                                " bytes (wrong base)"};
  bases_[i] = std::move(src);
  return Status::Ok();
}

Status DeltaReader::read_frame(uint32_t k, uint8_t* out) { return read_frame_at(k, out, false).status(); }

Result<const uint8_t*> DeltaReader::read_frame_in(uint32_t k, uint8_t* buf) { return read_frame_at(k, buf, true); }

Result<const uint8_t*> DeltaReader::read_frame_at(uint32_t k, uint8_t* out, bool lent) {
  if (k >= m_.frames.size()) return Status{Errc::invalid, "frame index out of range"};
  auto got = rebuild_frame(k, out, lent);
  if (got.status().code() != Errc::corrupt) return got;
  // Wrong bytes may come from a cached copy of the payload or base range
  // (a block cache between us and the origin): drop those copies and
  // rebuild once more from the origins. Still wrong: the origin is corrupt.
  const Frame& f = m_.frames[k];
  data_->invalidate(f.data_offset, f.data_len);
  if (f.codec == Codec::patch) {
    // Only the listed extents were read, not the whole span.
    if (f.base_file != kNoBase && bases_[f.base_file]) {
      std::vector<uint8_t> payload(f.data_len);
      if (data_->read(f.data_offset, f.data_len, payload.data()).ok())
        if (auto ext = patch_extents(f, payload.data()); ext.ok())
          for (auto& e : *ext) bases_[f.base_file]->invalidate(e.offset, e.len);
    }
  } else if (f.base_file != kNoBase && bases_[f.base_file]) {
    bases_[f.base_file]->invalidate(f.base_offset, f.base_len);
  }
  auto again = rebuild_frame(k, out, lent);
  return again.ok() ? again : got;
}

namespace {
constexpr uint32_t kHintMinPayload = 4096;
}  // namespace

Result<const uint8_t*> DeltaReader::rebuild_frame(uint32_t k, uint8_t* out, bool lent) {
  const Frame& f = m_.frames[k];
  auto where = [&] {
    return name_ + ": file '" + m_.out_files[f.file].name + "' frame " + std::to_string(k) + " (offset " +
           std::to_string(f.out_offset) + ", " + std::to_string(f.out_len) + " bytes)";
  };
  auto check = [&](const uint8_t* bytes) -> Result<const uint8_t*> {
    if (xxh128(bytes, f.out_len) != f.hash)
      return Status{Errc::corrupt, where() + ": rebuilt bytes do not match the frame hash (corrupt delta or base)"};
    return bytes;
  };
  // A copy of the base range in the output's dtype: read straight into out
  // (no scratch copy of up to 1 MiB; with a lent buffer, read_in: a direct
  // read lands where it lands, no copy at all), then checked like every frame.
  if (f.codec == Codec::copy_base && f.data_len == 0 && f.base_file != kNoBase && f.base_dtype == f.dtype &&
      f.base_len == f.out_len && bases_[f.base_file]) {
    if (lent) {
      auto got = bases_[f.base_file]->read_in(f.base_offset, f.base_len, out);
      if (!got.ok()) return Status{got.status().code(), where() + ": base: " + got.status().message()};
      return check(*got);
    }
    Status st = bases_[f.base_file]->read(f.base_offset, f.base_len, out);
    if (!st.ok()) return Status{st.code(), where() + ": base: " + st.message()};
    return check(out);
  }
  ScratchPool::Lease scratch(*scratch_);
  // The base range is read after the payload: when the payload read is a
  // real one, let the base's source start on its range now, so the two
  // reads overlap. (Frames without a payload read just the base; a hint
  // there only costs.)
  if (f.base_file != kNoBase && bases_[f.base_file] && f.data_len >= kHintMinPayload && f.codec != Codec::patch)
    bases_[f.base_file]->will_need(f.base_offset, f.base_len);
  const uint8_t* payload;
  {
    auto got = data_->read_in(f.data_offset, f.data_len, scratch->payload.get(f.data_len + 2 * BlockSource::kReadInAlign));
    if (!got.ok()) return Status{got.status().code(), where() + ": " + got.status().message()};
    payload = *got;
  }
  Status st;
  const uint8_t* bp = nullptr;
  if (f.base_file != kNoBase && f.codec == Codec::patch) {
    // A patch frame reads the extents its payload lists, concatenated (B).
    if (!bases_[f.base_file])
      return Status{Errc::not_found, where() + ": base file '" + m_.base_files[f.base_file].name + "' is not available"};
    auto ext = patch_extents(f, payload);
    if (!ext.ok()) return Status{Errc::corrupt, where() + ": " + ext.status().message()};
    uint64_t blen = 0;
    for (auto& e : *ext) blen += e.len;
    uint8_t* b = scratch->base.get(blen + 2 * BlockSource::kReadInAlign);
    uint64_t at = 0;
    for (auto& e : *ext) {
      st = bases_[f.base_file]->read(e.offset, e.len, b + at);
      if (!st.ok()) return Status{st.code(), where() + ": base: " + st.message()};
      at += e.len;
    }
    bp = b;
  } else if (f.base_file != kNoBase) {
    if (!bases_[f.base_file])
      return Status{Errc::not_found, where() + ": base file '" + m_.base_files[f.base_file].name + "' is not available"};
    // read_in: a base read direct lands in the scratch, not copied there.
    auto got = bases_[f.base_file]->read_in(f.base_offset, f.base_len,
                                            scratch->base.get(f.base_len + 2 * BlockSource::kReadInAlign));
    if (!got.ok()) return Status{got.status().code(), where() + ": base: " + got.status().message()};
    bp = *got;
  }
  st = decode_frame(f, payload, bp, out);
  if (!st.ok()) return Status{Errc::corrupt, where() + ": " + st.message()};
  return check(out);
}

void DeltaReader::cancel() {
  if (data_) data_->cancel();
  for (auto& b : bases_)
    if (b) b->cancel();
}

std::pair<uint32_t, uint32_t> DeltaReader::frames_for(uint32_t file, uint64_t off, uint64_t len) const {
  const OutFile& of = m_.out_files[file];
  auto b = m_.frames.begin() + of.first_frame, e = b + of.frame_count;
  auto first = std::upper_bound(b, e, off, [](uint64_t o, const Frame& f) { return o < f.out_offset; });
  if (first != b) --first;
  auto last = std::lower_bound(first, e, off + len, [](const Frame& f, uint64_t o) { return f.out_offset < o; });
  return {static_cast<uint32_t>(first - m_.frames.begin()), static_cast<uint32_t>(last - m_.frames.begin())};
}

Result<std::unique_ptr<DeltaReader>> open_delta_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status{Errc::invalid, dir + ": not a delta directory"};
  auto idx = open_local_file((fs::path(dir) / kIndexFile).string());
  if (!idx.ok()) return Status{Errc::invalid, dir + ": not a TenPak delta (" + idx.status().message() + ")"};
  auto dat = open_local_file((fs::path(dir) / kDataFile).string());
  if (!dat.ok()) return Status{Errc::corrupt, dir + ": delta data missing (" + dat.status().message() + ")"};
  return DeltaReader::open(std::move(idx.value()), std::move(dat.value()), dir);
}

namespace {

// Base file i of the manifest under `base_path` (a directory, or the single
// file when the delta needs exactly one base file).
Result<std::string> base_file_path(const Manifest& m, const std::vector<bool>& needed, const std::string& base_path,
                                   bool single, uint32_t i) {
  if (!single) return (fs::path(base_path) / m.base_files[i].name).string();
  size_t n_needed = std::count(needed.begin(), needed.end(), true);
  if (n_needed != 1)
    return Status{Errc::mismatch, base_path + ": the delta needs " + std::to_string(n_needed) +
                                      " base files; give the base model directory"};
  return base_path;
}

}  // namespace

std::vector<bool> needed_base_files(const Manifest& m) {
  std::vector<bool> needed(m.base_files.size(), false);
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) needed[f.base_file] = true;
  return needed;
}

Status check_local_base_sha256(const Manifest& m, const std::string& base_path, const Progress& progress) {
  const std::vector<bool> needed = needed_base_files(m);
  std::error_code ec;
  const bool single = fs::is_regular_file(base_path, ec);
  uint64_t total = 0, done = 0;
  for (size_t i = 0; i < needed.size(); ++i) if (needed[i]) total += m.base_files[i].size;
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    if (!needed[i]) continue;
    const BaseFile& bf = m.base_files[i];
    auto path = base_file_path(m, needed, base_path, single, i);
    if (!path.ok()) return path.status();
    auto got = sha256_of_local_file(*path, [&](uint64_t n) {
      done += n;
      if (progress) progress(done, total);
    });
    if (!got.ok()) return {Errc::mismatch, "base file '" + bf.name + "' needed by the delta: " + got.status().message()};
    if (*got != bf.sha256)
      return {Errc::mismatch, *path + ": wrong base: sha256 " + hex(*got) + " differs from " + hex(bf.sha256) +
                                  " recorded in the delta"};
  }
  return Status::Ok();
}

Status attach_local_base(DeltaReader& r, const std::string& base_path, bool check_sha256, const Progress& progress) {
  BaseAttachOptions o;
  o.check_sha256 = check_sha256;
  o.progress = progress;
  // apply and verify read the base in frame order from several workers:
  // every base-range hint helps there (see LocalFileOptions).
  o.local.hint_always = true;
  return attach_base(r, base_path, o);
}

Status attach_base(DeltaReader& r, const std::string& loc, const BaseAttachOptions& o) {
  const Manifest& m = r.manifest();
  const std::vector<bool> needed = needed_base_files(m);
  const size_t n_needed = std::count(needed.begin(), needed.end(), true);
  std::error_code ec;
  const bool remote = is_remote_location(loc);
  // A single file: a local one, or the URL / hub path of one.
  const bool single = remote ? !remote_file_name(loc).empty() : fs::is_regular_file(loc, ec);
  if (!remote && !single && !fs::is_directory(loc, ec)) return {Errc::not_found, loc + ": base not found"};
  if (single && n_needed > 1)
    return {Errc::mismatch, loc + ": the delta needs " + std::to_string(n_needed) + " base files; give the base model directory"};
  uint64_t total = 0, done = 0;
  for (size_t i = 0; i < needed.size(); ++i)
    if (needed[i]) total += m.base_files[i].size;
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    if (!needed[i]) continue;
    const BaseFile& bf = m.base_files[i];
    const std::string path = single ? loc : join_location(loc, bf.name);
    SourceOptions so;
    so.expected_size = bf.size;  // a base file of another size is refused (mismatch)
    so.local = o.local;
    auto src = open_source(path, so);
    if (!src.ok()) {
      // A local file of another size, or missing, is a wrong base. A remote
      // one keeps the code errc_of_fetch_cause gave it, as every command's
      // download does (README's exit codes): another size or a changed
      // origin mismatch, refused / timeout / 5xx / 429 unavailable, another
      // 4xx not_found, an answer not asked for io.
      Errc code = remote ? src.status().code() : Errc::mismatch;
      return {code, "base file '" + bf.name + "' needed by " + r.name() + ": " + src.status().message()};
    }
    if (o.check_sha256 && !remote) {
      const auto t0 = std::chrono::steady_clock::now();
      bool cached = false;
      auto h = sha256_of_local_file(path, [&](uint64_t n) {
        done += n;
        if (o.progress) o.progress(done, total);
      }, &cached, o.local);
      if (!h.ok()) return h.status();
      if (*h != bf.sha256)
        return {Errc::mismatch, path + ": wrong base: sha256 " + hex(*h) + " differs from " + hex(bf.sha256) +
                                    " recorded in the delta " + r.name()};
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (o.on_verified) o.on_verified(path, bf.size, cached, s);
    }
    std::unique_ptr<BlockSource> b = std::move(src.value());
    if (o.wrap) b = o.wrap(std::move(b), path, bf);
    TP_RETURN_IF_ERROR(r.set_base(i, std::move(b)));
  }
  return Status::Ok();
}

Result<uint64_t> apply_delta(DeltaReader& r, const std::string& out_dir, const ApplyOptions& opt) {
  const Manifest& m = r.manifest();
  const bool write = !out_dir.empty();
  StagingDir stage;
  if (write) TP_RETURN_IF_ERROR(stage.create(out_dir));
  // The caller's check (the base's sha256) runs beside the whole rebuild:
  // nothing is committed before it passed, and when it fails its error is
  // the one reported (a wrong base also fails frame hashes, less clearly).
  // Joined only on an error or before the commit: joining on every status
  // made the rebuild wait for it after the first frame at -j1 and after the
  // first file otherwise (often a small config.json), i.e. run after it.
  Status check_st = Status::Ok();
  std::jthread checker;
  if (opt.concurrent_check) checker = std::jthread([&] { check_st = opt.concurrent_check(); });
  auto prefer_check = [&](Status st) {
    if (st.ok()) return st;
    if (checker.joinable()) checker.join();
    return check_st.ok() ? st : check_st;
  };
  uint64_t total = 0, done = 0;
  for (auto& f : m.out_files) total += f.size;
  const unsigned threads = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  // Workers rebuild frames into a ring of buffers; this thread hashes and
  // writes them in order. With one thread (-j1) the pipeline rebuilds each
  // frame on this thread, and one buffer is enough: the frame is hashed and
  // written at once, while it is in this core's cache (no ring of buffers
  // and their first-touch page faults).
  const size_t window = threads == 1 ? 1 : threads * 3;
  std::vector<uint8_t*> buf(window);
  std::vector<Status> sts(window);
  // Every buffer at the largest frame's size up front: grown frame by
  // frame, each growth is a fresh allocation and a page fault per 4 KiB.
  // -j1's one buffer is a huge page from 256 KiB (DirectScratch): fewer
  // faults than 4 KiB pages for a frame of that size or more, even in a
  // one-frame rebuild. The ring of -jN is not: a 2 MiB page per buffer is
  // up to 8x the memory of frames of 256 KiB-1 MiB, 3N buffers of them
  // (verify -j8 of a 64 MB fixture peaked at 87 MB against 61 MB).
  uint64_t max_frame = 0;
  for (auto& f : m.frames) max_frame = std::max<uint64_t>(max_frame, f.out_len);
  DirectScratch one;
  std::vector<AlignedScratch<BlockSource::kReadInAlign>> ring(window == 1 ? 0 : window);
  for (size_t i = 0; i < window; ++i) buf[i] = window == 1 ? one.get(max_frame) : ring[i].get(max_frame);
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi) {
    const OutFile& of = m.out_files[fi];
    OutFileWriter w;
    std::string path;
    if (write) {
      path = stage.path() + "/" + of.name;
      TP_RETURN_IF_ERROR(prefer_check(make_parent_dirs(path)));
      TP_RETURN_IF_ERROR(prefer_check(w.open(path, of.mode)));
    }
    Sha256Hasher sha;
    auto produce = [&](size_t k, size_t slot) {
      sts[slot] = r.read_frame(of.first_frame + static_cast<uint32_t>(k), buf[slot]);
    };
    auto consume = [&](size_t k, size_t slot) -> Status {
      TP_RETURN_IF_ERROR(sts[slot]);
      const size_t n = m.frames[of.first_frame + k].out_len;
      sha.update(buf[slot], n);
      if (write) TP_RETURN_IF_ERROR(w.write(buf[slot], n));
      done += n;
      if (opt.progress) opt.progress(done, total);
      return Status::Ok();
    };
    TP_RETURN_IF_ERROR(prefer_check(ordered_pipeline(of.frame_count, threads, window, produce, consume)));
    if (of.frame_count == 0) sha.update("", 0);
    Sha256 got = sha.finish();
    if (got != of.sha256)
      return prefer_check(Status{Errc::corrupt, r.name() + ": file '" + of.name + "' rebuilt with sha256 " + hex(got) +
                                                    ", expected " + hex(of.sha256)});
    if (write) TP_RETURN_IF_ERROR(prefer_check(w.close()));
  }
  if (checker.joinable()) checker.join();
  TP_RETURN_IF_ERROR(check_st);
  if (write) TP_RETURN_IF_ERROR(stage.commit());
  return done;
}

}  // namespace tenpak
