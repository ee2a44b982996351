#include "tenpak/mount.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "tenpak/base_attach.h"
#include "tenpak/cached_source.h"
#include "tenpak/format.h"
#include "tenpak/lossy_info.h"
#include "tenpak/open_source.h"
#include "tenpak/stats_text.h"

namespace tenpak {

namespace fs = std::filesystem;

std::unique_ptr<BlockSource> through_cache(std::unique_ptr<BlockSource> src, const std::shared_ptr<BlockCache>& cache,
                                           const std::string& location, std::string identity) {
  if (!cache || !is_remote_location(location)) return src;
  if (identity.empty()) identity = source_identity(*src);
  return wrap_with_cache(std::move(src), cache, std::move(identity));
}

// direct_data: a local delta's data file is read with O_DIRECT where its
// ranges are not in the page cache (LocalFileOptions::direct_when_cold;
// never on network or FUSE file systems, see no_direct_reads_on). A cold read through the mount then touches no fresh page-cache pages for
// the payloads (on the VM of docs/BENCHMARKS.md each fresh page costs a
// host fault: that copy was 0.05-0.5 CPU-s per GB served), and the payloads
// do not stay in memory beside the fine-tune's own pages.
Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache,
                                                bool direct_data) {
  auto idx = open_source(join_location(loc, kIndexFile));
  if (!idx.ok()) {
    // An origin that does not answer (refused, 5xx: unavailable from
    // open_source, io for another failed transfer) is unavailable; one that
    // answers without the index (404) does not hold a delta there.
    const Errc e = idx.status().code();
    Errc code = is_remote_location(loc) && (e == Errc::io || e == Errc::unavailable) ? Errc::unavailable : Errc::not_found;
    return Status{code, loc + ": not a TenPak delta (" + idx.status().message() + ")"};
  }
  SourceOptions so;
  so.local.direct_when_cold = direct_data && !is_remote_location(loc) && no_direct_reads_on(loc).empty();
  so.local.role = LocalFileOptions::Role::delta_data;  // stats.json "delta_data_reads", not "base_reads"
  auto dat = open_source(join_location(loc, kDataFile), so);
  if (!dat.ok()) return Status{Errc::corrupt, loc + ": delta data missing (" + dat.status().message() + ")"};
  return DeltaReader::open(through_cache(std::move(idx.value()), cache, loc),
                           through_cache(std::move(dat.value()), cache, loc), loc);
}

namespace {

Status attach_one(DeltaReader& r, const std::string& loc, bool verify, const std::shared_ptr<BlockCache>& cache,
                  const std::function<void(const std::string&)>& log, const LocalFileOptions& local) {
  BaseAttachOptions o;
  o.check_sha256 = verify;
  o.local = local;
  o.wrap = [&cache](std::unique_ptr<BlockSource> src, const std::string& path, const BaseFile& bf) {
    return through_cache(std::move(src), cache, path, hex(bf.sha256));
  };
  if (log)
    o.on_verified = [&log](const std::string& path, uint64_t bytes, bool cached, double s) {
      log("base " + path + ": sha256 verified (" + fs_human_bytes(static_cast<double>(bytes)) +
          (cached ? ", from the hash cache" : " in " + std::to_string(s).substr(0, 5) + " s") + ")");
    };
  return attach_base(r, loc, o);
}

}  // namespace

Status attach_base_from(DeltaReader& r, const std::string& base, bool verify_local,
                        const std::shared_ptr<BlockCache>& cache, const std::function<void(const std::string&)>& log,
                        const LocalFileOptions& local) {
  const Manifest& m = r.manifest();
  bool any = false;
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) any = true;
  if (!any) return Status::Ok();
  if (!base.empty()) return attach_one(r, base, verify_local, cache, log, local);
  if (m.base_locations.empty())
    return {Errc::invalid, r.name() + ": the delta records no base location; name the base model with --base BASE"};
  std::string errs;
  bool unavailable = false;
  for (auto& loc : m.base_locations) {
    Status st = attach_one(r, loc, verify_local, cache, log, local);
    if (st.ok()) return st;
    if (st.code() == Errc::mismatch) return st;  // found, but wrong: never fall back silently
    unavailable |= st.code() == Errc::unavailable;
    errs += "\n  " + loc + ": " + st.message();
  }
  return {unavailable ? Errc::unavailable : Errc::not_found,
          r.name() + ": no recorded base location is usable:" + errs + "\n(give --base BASE)"};
}

Result<std::vector<std::pair<std::string, std::string>>> find_models(const std::string& source) {
  std::vector<std::pair<std::string, std::string>> out;  // (dir in mount, location)
  std::error_code ec;
  if (is_remote_location(source) || fs::exists(fs::path(source) / kIndexFile, ec)) {
    out.emplace_back("", source);
    return out;
  }
  if (!fs::is_directory(source, ec)) return Status{Errc::not_found, source + ": no such delta or catalog directory"};
  for (auto it = fs::recursive_directory_iterator(source, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return Status{Errc::io, source + ": cannot list the catalog: " + ec.message()};
    if (!it->is_directory(ec)) continue;
    if (fs::exists(it->path() / kIndexFile, ec)) {
      out.emplace_back(it->path().lexically_relative(source).generic_string(), it->path().string());
      it.disable_recursion_pending();  // a model's own sub-directories are its files
    }
  }
  if (out.empty())
    return Status{Errc::not_found, source + ": neither a delta (no " + kIndexFile + ") nor a catalog holding deltas"};
  return out;
}

Result<std::unique_ptr<Mount>> Mount::open(MountOptions a) {
  std::function<void(const std::string&)> log = a.log;
  if (!log) log = [](const std::string& l) { std::fprintf(stderr, "tenpak-mount: %s\n", l.c_str()); };
  auto found = find_models(a.source);
  if (!found.ok()) return found.status();
  std::unique_ptr<Mount> mt(new Mount());
  // An unusable cache directory degrades to no cache with a warning.
  if (a.persistent_cache) {
    uint64_t limit = kDefaultCacheSize;
    if (!a.cache_size.empty()) {
      auto p = parse_size(a.cache_size);
      if (!p.ok()) return p.status();
      limit = *p;
    }
    std::string dir = a.cache_dir.empty() ? default_cache_dir() : a.cache_dir;
    CacheOptions co;
    co.warn = [log](const std::string& w) { log("warning: " + w); };
    mt->cache_ = open_lmdb_cache(dir, limit, co);
    log("cache: " + mt->cache_->describe());
  }
  const std::shared_ptr<BlockCache>& cache = mt->cache_;
  // Which base each model reads (MountOptions::base, else the first location
  // its delta records): a local base that several models of this mount
  // share is read through the page cache, so that they share its pages; one
  // used by a single model is read direct when cold (buffered_base: always cached).
  std::vector<std::unique_ptr<DeltaReader>> readers;
  std::vector<std::string> base_of;  // per reader
  std::map<std::string, unsigned> users;
  std::set<std::string> logged;
  for (auto& [dir, loc] : *found) {
    auto r = open_delta(loc, cache, !a.buffered_base);
    if (!r.ok()) return r.status();
    const auto& bl = (*r)->manifest().base_locations;
    base_of.push_back(!a.base.empty() ? a.base : bl.empty() ? std::string() : bl[0]);
    users[base_of.back()]++;
    readers.push_back(std::move(r.value()));
  }
  std::vector<FsModel> models;
  for (size_t i = 0; i < readers.size(); ++i) {
    const auto& [dir, loc] = (*found)[i];
    DeltaReader& r = *readers[i];
    const unsigned shared_by = users[base_of[i]];
    LocalFileOptions lo;
    lo.role = LocalFileOptions::Role::base;
    lo.direct_when_cold = !a.buffered_base && shared_by < 2;
    if (!a.buffered_base && shared_by >= 2 && logged.insert(base_of[i]).second)
      log("base " + base_of[i] + " is shared by " + std::to_string(shared_by) + " models: read through the page cache");
    const std::string fs_name = lo.direct_when_cold ? no_direct_reads_on(base_of[i]) : std::string();
    if (!fs_name.empty() && logged.insert(base_of[i]).second)
      log("base " + base_of[i] + " is on " + fs_name + ": read through the page cache");
    TP_RETURN_IF_ERROR(attach_base_from(r, a.base, a.verify_base, cache, log, lo));
    for (auto& f : r.manifest().out_files) {
      ++mt->files_;
      mt->bytes_ += f.size;
    }
    log("model " + (dir.empty() ? std::string("/") : dir) + ": " + loc);
    // Its recorded quality, fetched as the index was (through the cache when
    // remote). A side file that does not match the index is refused, as by
    // delta apply/verify; one that cannot be fetched leaves it unknown.
    auto li = load_lossy_info(loc, r.manifest(), [&cache, &loc](std::unique_ptr<BlockSource> s) {
      return through_cache(std::move(s), cache, loc);
    });
    std::optional<LossyInfo> lossy;
    if (li.ok()) lossy = std::move(li.value());
    else if (li.status().code() == Errc::corrupt) return li.status();
    else log("warning: " + loc + ": " + kLossyFile + " not read (" + li.status().message() + "): quality unknown");
    if (lossy) log("model " + (dir.empty() ? std::string("/") : dir) + ": " + lossy_summary_line(*lossy));
    else if (has_approx_frames(r.manifest()))
      log("warning: model " + (dir.empty() ? std::string("/") : dir) + " is a LOSSY delta without " + kLossyFile +
          ": quality unknown");
    models.push_back({dir, std::move(readers[i]), std::move(lossy)});
  }
  mt->models_ = models.size();
  FsOptions fo = std::move(a.fs);
  fo.log = log;
  // Rebuilt frames, keyed by their hash, under the cache's own policy.
  const FrameCachePolicy policy = a.cache_frames;
  fo.wrap_frames = [cache, policy](std::unique_ptr<FrameSource> s) { return cache_frames(std::move(s), cache, policy); };
  auto mfs = ModelFs::create(std::move(models), std::move(fo));
  if (!mfs.ok()) return mfs.status();
  mt->fs_ = std::move(mfs.value());
  if (a.metrics_port >= 0) {
    Mount* raw = mt.get();
    auto ex = MetricsExporter::start(static_cast<uint16_t>(a.metrics_port), [raw] { return raw->prometheus(); });
    if (!ex.ok()) return ex.status();
    mt->exporter_ = std::move(ex.value());
    log("metrics: http://127.0.0.1:" + std::to_string(mt->exporter_->port()) + "/metrics");
  }
  return mt;
}

Mount::~Mount() = default;

int Mount::metrics_port() const { return exporter_ ? exporter_->port() : -1; }

std::string Mount::prometheus() const {
  std::vector<std::pair<std::string, const BlockCache*>> caches;
  if (cache_) caches.emplace_back("shared", cache_.get());
  return render_prometheus(caches, fs_prometheus(fs_->stats()));
}

std::string fs_prometheus(const FsStats& st) {
  std::string out, family;
  for (const FsCounter& c : fs_counters()) {
    if (!c.prom) continue;
    const std::string name = std::string("tenpak_fs_") + c.prom;
    const std::string base = name.substr(0, name.find('{'));
    if (base != family) {  // HELP and TYPE once per family
      out += "# HELP " + base + " " + c.help + "\n# TYPE " + base + " " + c.type + "\n";
      family = base;
    }
    out += name + " " + std::to_string(st.*c.field) + "\n";
  }
  out += render_prometheus_histogram(
      "tenpak_fs_rebuild_latency_seconds", "time to rebuild one frame from base and delta (retries included)",
      std::vector<double>(std::begin(kRebuildLatencyBuckets), std::end(kRebuildLatencyBuckets)),
      std::vector<uint64_t>(std::begin(st.rebuild_latency_buckets), std::end(st.rebuild_latency_buckets)),
      st.rebuild_latency_sum_s, st.rebuild_latency_count);
  return out;
}

}  // namespace tenpak
