// ModelFs: the façade over the parts in fs/src/ (see model_fs.h): it maps a
// file read to frames, asks the planner what to prefetch, the frame service
// for the frames, and counts and logs failed reads by cause.
#include "tenpak/model_fs.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "delta_frames.h"
#include "frame_service.h"
#include "inode_table.h"
#include "prefetch_planner.h"
#include "tenpak/block_source.h"
#include "tenpak/format.h"

namespace tenpak {

using namespace fsi;

namespace {

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

std::string ms_str(double ms) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", ms);
  return b;
}

// The façade's own counters: read requests and failed reads by cause.
struct Counters {
  std::atomic<uint64_t> reads{0}, bytes_served{0}, sparse_rereads{0};
  std::atomic<uint64_t> errors_io{0}, errors_corrupt{0}, errors_base_missing{0}, errors_other{0};
};

}  // namespace

struct ModelFs::Impl {
  struct Model {
    std::string dir;
    DeltaReader* reader = nullptr;  // owned by `readers`
    std::optional<LossyInfo> lossy;
  };
  FsOptions opt;
  const std::chrono::steady_clock::time_point t_start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<DeltaReader>> readers;
  std::vector<Model> models;
  InodeTable inodes;
  std::vector<std::unique_ptr<SeqState>> seq;  // per inode (files only)
  std::shared_ptr<RebuildCounters> rebuilt = std::make_shared<RebuildCounters>();
  std::unique_ptr<FrameService> frames;  // created last, destroyed first (its workers use the readers)
  std::unique_ptr<PrefetchPlanner> planner;
  Counters c;

  ~Impl() { frames.reset(); }

  void log(const std::string& line) const {
    if (opt.log) opt.log(line);
    else std::fprintf(stderr, "tenpak-fs: %s\n", line.c_str());
  }
  double now_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  }

  // Global frame ids [g0, g1) of the head of file node `n`: its first frame
  // (a safetensors header is frames of its own) and opt.open_hint_bytes
  // after it, the start of the first tensor, which a loader reads next.
  std::pair<uint64_t, uint64_t> head_frames(const InodeTable::Node& n) const {
    const Model& m = models[n.model];
    const Manifest& man = m.reader->manifest();
    const OutFile& of = man.out_files[n.file];
    const uint64_t want = std::min<uint64_t>(n.size, man.frames[of.first_frame].out_len + opt.open_hint_bytes);
    auto [a, b] = m.reader->frames_for(n.file, 0, want);
    const uint64_t g = frames->first_gid(n.model);
    return {g + a, g + b};
  }

  void count_error(const Status& st) {
    switch (st.code()) {
      case Errc::io:
      case Errc::cancelled: c.errors_io++; break;  // (cancelled: an origin read cut off at shutdown)
      case Errc::corrupt: c.errors_corrupt++; break;
      case Errc::not_found: c.errors_base_missing++; break;
      default: c.errors_other++; break;
    }
  }
  static const char* cause_name(Errc e) {
    switch (e) {
      case Errc::io: return "io (origin read failed)";
      case Errc::corrupt: return "corrupt (frame does not decode to its hash)";
      case Errc::not_found: return "base_missing";
      default: return errc_name(e);
    }
  }
};

ModelFs::ModelFs(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ModelFs::~ModelFs() = default;

void ModelFs::cancel_reads() { impl_->frames->cancel(); }

Result<std::unique_ptr<ModelFs>> ModelFs::create(std::vector<FsModel> models, FsOptions opt) {
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(opt);
  // Sorted by dir so that inodes do not depend on the order models were found in.
  std::sort(models.begin(), models.end(), [](const FsModel& a, const FsModel& b) { return a.dir < b.dir; });
  for (auto& m : models) {
    if (!m.reader) return Status{Errc::invalid, "model '" + m.dir + "' has no reader"};
    if (!m.dir.empty() && !is_safe_relative_path(m.dir))
      return Status{Errc::invalid, "'" + m.dir + "': not a safe relative path for a model"};
    if (m.dir == kControlDir || m.dir.rfind(std::string(kControlDir) + "/", 0) == 0)
      return Status{Errc::invalid, "'" + m.dir + "': reserved name"};
    impl->models.push_back({m.dir, m.reader.get(), std::move(m.lossy)});
    impl->readers.push_back(std::move(m.reader));
  }
  for (uint32_t mi = 0; mi < impl->models.size(); ++mi) {
    const Impl::Model& m = impl->models[mi];
    std::vector<InodeTable::FileSpec> files;
    for (auto& of : m.reader->manifest().out_files) files.push_back({of.name, of.size, of.mode});
    TP_RETURN_IF_ERROR(impl->inodes.add_model(mi, m.dir, files, m.reader->name()));
  }
  TP_RETURN_IF_ERROR(impl->inodes.add_control(kControlDir, kStatsFile, kStatsFileSize));
  impl->seq.resize(impl->inodes.size());
  for (uint64_t ino = 1; ino <= impl->inodes.size(); ++ino) {
    const InodeTable::Node* n = impl->inodes.node(ino);
    if (!n->is_dir && !n->control) impl->seq[ino - 1] = std::make_unique<SeqState>();
  }

  Impl* raw = impl.get();
  auto log = [raw](const std::string& l) { raw->log(l); };
  std::vector<std::unique_ptr<FrameSource>> sources;
  for (auto& m : impl->models) {
    RetryOptions ro{impl->opt.retries, impl->opt.retry_delay_ms, log};
    auto src = retry_frames(delta_frames(*m.reader), ro, impl->rebuilt);
    if (impl->opt.wrap_frames) src = impl->opt.wrap_frames(std::move(src));
    sources.push_back(std::move(src));
  }
  FrameServiceOptions so;
  so.frame_cache_bytes = impl->opt.frame_cache_bytes;
  so.spent_keep_bytes = impl->opt.spent_keep_bytes;
  so.workers = impl->opt.prefetch_workers;
  so.prefetch_queue_frames = impl->opt.prefetch_queue_frames;
  so.prefetch_nice = impl->opt.prefetch_nice;
  so.trace_reads = impl->opt.trace_reads;
  so.log = log;
  so.on_job_taken = impl->opt.on_job_taken;
  impl->frames = std::make_unique<FrameService>(std::move(sources), std::move(so));
  impl->planner = std::make_unique<PrefetchPlanner>(impl->opt.prefetch_window_bytes, impl->opt.frame_cache_bytes,
                                                    impl->frames->has_workers());
  return std::unique_ptr<ModelFs>(new ModelFs(std::move(impl)));
}

std::optional<FsAttr> ModelFs::lookup(uint64_t parent, std::string_view name) const {
  return impl_->inodes.lookup(parent, name);
}

std::optional<FsAttr> ModelFs::getattr(uint64_t ino) const { return impl_->inodes.getattr(ino); }

std::optional<std::vector<FsDirEntry>> ModelFs::readdir(uint64_t ino) const { return impl_->inodes.readdir(ino); }

bool ModelFs::is_control_file(uint64_t ino) const {
  const InodeTable::Node* n = impl_->inodes.node(ino);
  return n && n->control;
}

Result<std::vector<ModelFs::Slice>> ModelFs::read_slices(uint64_t ino, uint64_t off, size_t len) {
  const InodeTable::Node* n = impl_->inodes.node(ino);
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
  FrameService& frames = *impl_->frames;
  const uint64_t g0 = frames.first_gid(n->model);
  const Manifest& man = m.reader->manifest();
  const OutFile& of = man.out_files[n->file];
  auto [a, b] = m.reader->frames_for(n->file, off, len);
  ReadSeen seen;
  seen.off = off;
  seen.len = len;
  seen.file_size = of.size;
  seen.safetensors = ends_with(of.name, ".safetensors");
  seen.first = a;
  seen.end = b;
  seen.first_served_whole = [&frames, g = g0 + a] { return frames.served_whole(g); };
  seen.frames_end = [&m, file = n->file](uint64_t o, uint64_t l) { return m.reader->frames_for(file, o, l).second; };
  const PrefetchPlan plan = impl_->planner->plan(*impl_->seq[ino - 1], seen);
  const bool sparse = plan.sparse_reread;
  if (sparse) impl_->c.sparse_rereads++;
  if (plan.to > plan.from) frames.enqueue(g0 + plan.from, g0 + plan.to);
  // Frames after the first that this read needs go to the workers at once,
  // so they are rebuilt in parallel with the first (done here). Not for a
  // sparse re-read across a frame boundary: both frames are rebuilt here in
  // turn, as the reader's own, so that both are known as re-read frames
  // (FrameLru); a small cost in latency for a rare case.
  if (b - a > 1 && !sparse) frames.enqueue(g0 + a + 1, g0 + b, JobKind::assist, true);
  std::vector<FrameService::Served> served;  // one per slice of `out`
  for (uint32_t k = a; k < b; ++k) {
    const Frame& f = man.frames[k];
    auto r = frames.get(g0 + k, JobKind::demand, sparse);
    if (!r.ok()) {
      impl_->count_error(r.status());
      impl_->log("EIO: " + (m.dir.empty() ? of.name : m.dir + "/" + of.name) + " offset " + std::to_string(off) +
                 " length " + std::to_string(len) + ": cause " + Impl::cause_name(r.status().code()) + ": " +
                 r.status().message());
      return r.status();
    }
    uint64_t s0 = std::max<uint64_t>(off, f.out_offset), s1 = std::min<uint64_t>(off + len, f.out_offset + f.out_len);
    if (s1 <= s0) continue;
    const FramePtr& fp = *r;
    out.push_back({fp, fp->data() + (s0 - f.out_offset), static_cast<size_t>(s1 - s0)});
    served.push_back({g0 + k, static_cast<uint32_t>(s0 - f.out_offset), static_cast<uint32_t>(s1 - s0)});
  }
  frames.served(served);
  impl_->c.bytes_served += len;
  if (impl_->opt.trace_reads)
    impl_->log("read ino " + std::to_string(ino) + " offset " + std::to_string(off) + " length " + std::to_string(len) +
               " frames " + std::to_string(a) + ".." + std::to_string(b) + " at " + ms_str(t0) + " ms took " +
               ms_str(impl_->now_ms() - t0) + " ms");
  return out;
}

void ModelFs::opened(uint64_t ino) {
  const InodeTable::Node* n = impl_->inodes.node(ino);
  if (!n || n->is_dir || n->control || n->size == 0) return;
  {
    SeqState& s = *impl_->seq[ino - 1];
    std::lock_guard lk(s.mu);
    if (s.opened) return;
    s.opened = true;
  }
  if (impl_->opt.open_hint_bytes == 0) return;
  auto [g0, g1] = impl_->head_frames(*n);
  impl_->frames->enqueue(g0, g1, JobKind::prefetch, true);
}

uint64_t ModelFs::warm_heads() {
  const FsOptions& o = impl_->opt;
  const uint64_t budget = std::min<uint64_t>(o.warm_bytes, o.frame_cache_bytes / 4);
  uint64_t queued = 0;
  for (uint64_t ino = 1; ino <= impl_->inodes.size(); ++ino) {
    const InodeTable::Node& n = *impl_->inodes.node(ino);
    if (n.is_dir || n.control || n.size == 0) continue;
    const Impl::Model& m = impl_->models[n.model];
    const Manifest& man = m.reader->manifest();
    const uint64_t first = impl_->frames->first_gid(n.model);
    auto [g0, g1] = impl_->head_frames(n);
    uint64_t bytes = 0;
    for (uint64_t g = g0; g < g1; ++g) bytes += man.frames[g - first].out_len;
    if (queued + bytes > budget) break;
    if (!impl_->frames->enqueue(g0, g1, JobKind::prefetch, false)) break;  // no workers, or queue full
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
  const FrameServiceCounters& fc = impl_->frames->counters();
  const FrameLruCounters& lc = impl_->frames->lru_counters();
  const RebuildCounters& rc = *impl_->rebuilt;
  const FrameSourceStats ss = impl_->frames->source_stats();
  FsStats s;
  s.reads = c.reads;
  s.bytes_served = c.bytes_served;
  s.frames_rebuilt = rc.frames;
  s.bytes_rebuilt = rc.bytes;
  s.cache_hits = lc.hits;
  s.cache_misses = fc.misses;
  s.cache_evictions = lc.evictions;
  s.spent_evictions = lc.spent_evictions;
  s.inflight_joins = fc.inflight_joins;
  s.prefetch_issued = fc.prefetch_issued;
  s.prefetch_hits = lc.prefetch_hits + fc.join_prefetch_hits;
  s.prefetch_wasted = lc.prefetch_wasted;
  s.sparse_rereads = c.sparse_rereads;
  s.prefetch_dropped = fc.prefetch_dropped;
  s.prefetch_failed = fc.prefetch_failed;
  s.persistent_hits = ss.persistent_hits;
  s.persistent_rejected = ss.persistent_rejected;
  s.persistent_stored = ss.persistent_stored;
  s.persistent_skipped = ss.persistent_skipped;
  s.retries = rc.retries;
  s.retried_ok = rc.retried_ok;
  s.errors_io = c.errors_io;
  s.errors_corrupt = c.errors_corrupt;
  s.errors_base_missing = c.errors_base_missing;
  s.errors_other = c.errors_other;
  // Read the +Inf bucket first and the sum last: a rebuild recorded
  // meanwhile makes the total at least the sum of the buckets read.
  uint64_t cum = 0;
  for (size_t i = 0; i < kRebuildLatencyBucketCount; ++i) {
    cum += rc.hist[i];
    s.rebuild_latency_buckets[i] = cum;
  }
  s.rebuild_latency_count = cum + rc.hist[kRebuildLatencyBucketCount];
  s.rebuild_latency_sum_s = static_cast<double>(rc.sum_ns.load()) / 1e9;
  std::tie(s.cache_bytes, s.spent_bytes) = impl_->frames->cache_bytes();
  s.cache_limit = impl_->opt.frame_cache_bytes;
  read_rss(s.rss_bytes, s.peak_rss_bytes);
  const LocalReadStats lr = local_read_stats();
  s.base_direct_bytes = lr.base.direct_bytes;
  s.base_page_cache_bytes = lr.base.page_cache_bytes;
  s.delta_data_direct_bytes = lr.delta_data.direct_bytes;
  s.delta_data_page_cache_bytes = lr.delta_data.page_cache_bytes;
  return s;
}

const std::vector<FsCounter>& fs_counters() {
  static const std::vector<FsCounter> rows = {
      {"", "reads", "reads_total", "counter", "read requests answered", &FsStats::reads},
      {"", "bytes_served", "bytes_served_total", "counter", "bytes returned to readers", &FsStats::bytes_served},
      {"", "frames_rebuilt", "frames_rebuilt_total", "counter", "frames rebuilt from base and delta", &FsStats::frames_rebuilt},
      {"", "bytes_rebuilt", "bytes_rebuilt_total", "counter", "bytes of frames rebuilt", &FsStats::bytes_rebuilt},
      {"frame_cache", "hits", "frame_cache_hits_total", "counter", "in-memory frame cache hits", &FsStats::cache_hits},
      {"frame_cache", "misses", "frame_cache_misses_total", "counter", "in-memory frame cache misses", &FsStats::cache_misses},
      {"frame_cache", "evictions", "frame_cache_evictions_total", "counter", "frames evicted at the in-memory cache limit",
       &FsStats::cache_evictions},
      {"frame_cache", "spent_evictions", "frame_cache_spent_evictions_total", "counter",
       "frames served whole, dropped from the in-memory cache", &FsStats::spent_evictions},
      {"frame_cache", "bytes", nullptr, "gauge", "bytes of frames held", &FsStats::cache_bytes},
      {"frame_cache", "spent_bytes", nullptr, "gauge", "of them, frames served whole", &FsStats::spent_bytes},
      {"frame_cache", "limit", nullptr, "gauge", "the in-memory frame cache's limit", &FsStats::cache_limit},
      {"", "inflight_joins", "inflight_joins_total", "counter", "reads that waited on another reader's rebuild",
       &FsStats::inflight_joins},
      {"prefetch", "issued", "prefetch_issued_total", "counter", "frames queued for prefetch", &FsStats::prefetch_issued},
      {"prefetch", "hits", "prefetch_hits_total", "counter", "reads served by a prefetched frame", &FsStats::prefetch_hits},
      {"prefetch", "wasted", nullptr, "counter", "prefetched frames evicted unused", &FsStats::prefetch_wasted},
      {"prefetch", "dropped", nullptr, "counter", "prefetch requests dropped (queue full)", &FsStats::prefetch_dropped},
      {"prefetch", "failed", nullptr, "counter", "prefetches that failed (a reader retries)", &FsStats::prefetch_failed},
      {"prefetch", "sparse_rereads", "sparse_rereads_total", "counter",
       "short re-reads of frames served whole (pages the kernel dropped): no prefetch", &FsStats::sparse_rereads},
      {"base_reads", "direct_bytes", nullptr, "counter", "bytes of local base files read with O_DIRECT", &FsStats::base_direct_bytes},
      {"base_reads", "page_cache_bytes", nullptr, "counter", "bytes of local base files found cached, copied from the page cache",
       &FsStats::base_page_cache_bytes},
      {"delta_data_reads", "direct_bytes", nullptr, "counter", "bytes of local delta data files (tenpak.dat) read with O_DIRECT",
       &FsStats::delta_data_direct_bytes},
      {"delta_data_reads", "page_cache_bytes", nullptr, "counter",
       "bytes of local delta data files found cached, copied from the page cache", &FsStats::delta_data_page_cache_bytes},
      {"persistent_cache", "hits", "persistent_hits_total", "counter", "frames served from the persistent cache",
       &FsStats::persistent_hits},
      {"persistent_cache", "rejected", "persistent_rejected_total", "counter",
       "persistent cache frames that failed their hash", &FsStats::persistent_rejected},
      {"persistent_cache", "stored", "persistent_stored_total", "counter", "rebuilt frames put into the persistent cache",
       &FsStats::persistent_stored},
      {"persistent_cache", "skipped", "persistent_skipped_total", "counter",
       "rebuilt frames not cached (fast codec, --cache-frames)", &FsStats::persistent_skipped},
      {"", "retries", "retries_total", "counter", "frame rebuilds retried", &FsStats::retries},
      {"", "retried_ok", nullptr, "counter", "frame rebuilds that succeeded on a retry", &FsStats::retried_ok},
      {"errors", "io", "errors_total{cause=\"io\"}", "counter", "read requests failed with EIO, by cause", &FsStats::errors_io},
      {"errors", "corrupt", "errors_total{cause=\"corrupt\"}", "counter", "read requests failed with EIO, by cause",
       &FsStats::errors_corrupt},
      {"errors", "base_missing", "errors_total{cause=\"base_missing\"}", "counter",
       "read requests failed with EIO, by cause", &FsStats::errors_base_missing},
      {"errors", "other", "errors_total{cause=\"other\"}", "counter", "read requests failed with EIO, by cause",
       &FsStats::errors_other},
      {"", "rss_bytes", "rss_bytes", "gauge", "resident memory of the daemon", &FsStats::rss_bytes},
      {"", "peak_rss_bytes", nullptr, "gauge", "peak resident memory of the daemon", &FsStats::peak_rss_bytes},
  };
  return rows;
}

std::string ModelFs::stats_json() const {
  // A model's directory name need not be UTF-8 (a catalog's subdirectory):
  // its invalid bytes are written as U+FFFD, where dump's default throws
  // (from a FUSE read of stats.json, which would end the daemon).
  auto dump = [](const nlohmann::ordered_json& x) { return x.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace); };
  FsStats s = stats();
  const FrameSourceStats ss = impl_->frames->source_stats();
  nlohmann::ordered_json j = {{"pid", static_cast<int64_t>(getpid())}, {"models", impl_->models.size()}};
  for (const FsCounter& c : fs_counters()) {
    if (!*c.group) {
      j[c.key] = s.*c.field;
      continue;
    }
    if (!j.contains(c.group) && std::string_view(c.group) == "persistent_cache") {
      // "frames": the decorator's policy; "none" when no persistent cache
      // decorator is in the chain at all (nothing can be stored).
      j[c.group] = {{"enabled", ss.persistent},
                    {"frames", ss.persistent_policy.empty() ? std::string("none") : ss.persistent_policy}};
    }
    j[c.group][c.key] = s.*c.field;
  }
  // Cumulative counts per upper bound, as in the Prometheus export.
  nlohmann::ordered_json le = nlohmann::ordered_json::array(), counts = nlohmann::ordered_json::array();
  for (size_t i = 0; i < kRebuildLatencyBucketCount; ++i) {
    le.push_back(kRebuildLatencyBuckets[i]);
    counts.push_back(s.rebuild_latency_buckets[i]);
  }
  j["rebuild_latency"] = {{"le_s", le}, {"cumulative_counts", counts}, {"count", s.rebuild_latency_count},
                          {"sum_s", s.rebuild_latency_sum_s}};
  // Lossy models and their recorded quality (docs/LOSSY.md). The file has a
  // fixed size: models are listed in order while the whole text fits, and
  // the rest counted. Each entry is measured once, by its own dump: in the
  // file it sits two levels deep (each of its lines two spaces further in)
  // and ",\n" follows it. kListReserve holds what surrounds the list
  // (",\n \"lossy\": [\n", "\n ]", ",\n \"lossy_not_listed\": " and 20
  // digits: 60 bytes) and the "\n" the file adds.
  constexpr size_t kListReserve = 64;
  size_t room = kStatsFileSize - std::min(kStatsFileSize, dump(j).size() + kListReserve);
  nlohmann::ordered_json lossy = nlohmann::ordered_json::array();
  size_t lossy_models = 0;
  bool full = false;
  for (const Impl::Model& m : impl_->models) {
    if (!m.lossy && !has_approx_frames(m.reader->manifest())) continue;
    ++lossy_models;
    if (full) continue;
    nlohmann::ordered_json e = {{"model", m.dir.empty() ? std::string("/") : m.dir}};
    if (m.lossy) {
      e["method"] = m.lossy->method;
      e["ppl_ratio"] = m.lossy->ppl_ratio;
      e["ppl_delta_pct"] = m.lossy->ppl_delta_pct;
      e["kl_mean"] = m.lossy->kl_mean;
      e["top1_agreement"] = m.lossy->top1_agreement;
      e["scored_tokens"] = m.lossy->scored_tokens;
      e["eval_text"] = m.lossy->eval_text;
      // Only when above 0, as in the record (docs/FORMAT.md, "Lossy deltas").
      if (m.lossy->qat_label_weight > 0) e["qat_label_weight"] = m.lossy->qat_label_weight;
    } else {
      e["quality"] = "unknown";  // codec-11 frames without a side file
    }
    const std::string text = dump(e);
    const size_t cost = text.size() + 2 * (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1) + 2;
    if (cost > room) {
      full = true;
      continue;
    }
    room -= cost;
    lossy.push_back(std::move(e));
  }
  if (lossy_models) {
    j["lossy"] = std::move(lossy);
    if (j["lossy"].size() < lossy_models) j["lossy_not_listed"] = lossy_models - j["lossy"].size();
  }
  return dump(j);
}

void ModelFs::drain_prefetch() { impl_->frames->drain(); }

}  // namespace tenpak
