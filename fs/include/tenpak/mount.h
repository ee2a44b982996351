// Mount: one object that builds and owns everything a mount serves from its
// options: the persistent cache, the delta readers with their bases
// attached, the file system (ModelFs) and the metrics exporter. The CLI
// (`tenpak mount`) parses arguments, opens one, serves its fs() over FUSE
// (fuse_mount.h) and prints; tests open one directly.
//
// Also here: opening deltas and attaching bases from the locations a user
// or a delta gives (local paths, http(s) URLs, hub ids), shared by the mount
// and by `delta apply|verify|inspect`.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/cache.h"
#include "tenpak/delta_reader.h"
#include "tenpak/frame_cache.h"
#include "tenpak/metrics.h"
#include "tenpak/model_fs.h"
#include "tenpak/status.h"

namespace tenpak {

// --- Locations ---------------------------------------------------------------

// Remote origins go through `cache` (local files are read directly: the
// disk is as fast as LMDB). Null cache: no caching. `identity` names the
// content for cache keys (default: the source's validator).
std::unique_ptr<BlockSource> through_cache(std::unique_ptr<BlockSource> src, const std::shared_ptr<BlockCache>& cache,
                                           const std::string& location, std::string identity = "");

// Opens the delta directory at `loc` (path, URL or hub id). Errc::invalid:
// no delta there (no index; an HTTP 404); unavailable: a remote origin that
// does not answer; corrupt: an index without its data file. direct_data: a
// local data file's cold ranges are read with O_DIRECT (what a mount does
// unless --buffered-base; see mount.cc).
Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache,
                                                bool direct_data = false);

// Attaches every base file the delta needs (attach_base) from `base` when
// given, else from the locations the delta records, in order (a location
// that has the files but with other sizes or hashes is an error, never
// skipped). Sizes are always checked; the sha256 of local base files too
// when `verify_local`. `log` gets one line per verified base file. Local
// base files are opened with `local`; remote ones are read through `cache`
// under the sha256 the delta records (every fine-tune of a base shares its
// cached blocks, whatever URL it came from).
Status attach_base_from(DeltaReader& r, const std::string& base, bool verify_local,
                        const std::shared_ptr<BlockCache>& cache, const std::function<void(const std::string&)>& log,
                        const LocalFileOptions& local = {});

// The models at `source`: a single delta (a directory holding tenpak.idx,
// or a remote location) at the root (dir ""), or every delta found under a
// catalog directory, at its path relative to it (named lexically: a model
// directory that is a symbolic link keeps its name).
Result<std::vector<std::pair<std::string, std::string>>> find_models(const std::string& source);

// --- Mount -------------------------------------------------------------------

struct MountOptions {
  std::string source;            // a delta location, or a catalog directory of deltas
  std::string base;              // the base of every model; "": the locations each delta records
  bool verify_base = true;       // sha256 of local base files (else sizes only)
  // Read local base files through the page cache. Default: a base file
  // used by one model only is read direct when cold (LocalFileOptions::
  // direct_when_cold) unless its file system does not allow it; one shared
  // by several models is read through the page cache (they share its pages).
  bool buffered_base = false;
  bool persistent_cache = true;  // the LMDB block cache shared by every mount
  std::string cache_dir;         // "": default_cache_dir()
  std::string cache_size;        // "": kDefaultCacheSize; else parse_size()
  FrameCachePolicy cache_frames = FrameCachePolicy::slow;  // which rebuilt frames it stores
  // The file system's options (FsOptions::wrap_frames and log are set by open()).
  FsOptions fs;
  int metrics_port = -1;  // Prometheus exporter on 127.0.0.1:PORT (0: any free port); -1: none
  std::function<void(const std::string&)> log;  // one line per event; null: stderr
};

class Mount {
 public:
  // Opens the cache (an unusable directory degrades to no cache with a
  // warning), every model's delta, attaches their bases, builds the file
  // system and starts the exporter. Opens no FUSE session: callers serve
  // fs() with serve_fuse(). Open it after any fork (LMDB handles and
  // threads must not cross one).
  static Result<std::unique_ptr<Mount>> open(MountOptions opt);
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  ModelFs& fs() { return *fs_; }
  size_t models() const { return models_; }
  uint64_t files() const { return files_; }
  uint64_t bytes() const { return bytes_; }  // of every file served
  // The exporter's port; -1 without one.
  int metrics_port() const;
  // Prometheus text: fetch and cache counters, then the mount's own.
  std::string prometheus() const;

 private:
  Mount() = default;
  std::shared_ptr<BlockCache> cache_;
  std::unique_ptr<ModelFs> fs_;
  std::unique_ptr<MetricsExporter> exporter_;  // destroyed first: it reads fs_
  size_t models_ = 0;
  uint64_t files_ = 0, bytes_ = 0;
};

// The file system's counters in Prometheus text format (tenpak_fs_*),
// generated from fs_counters().
std::string fs_prometheus(const FsStats& st);

}  // namespace tenpak
