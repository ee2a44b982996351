// Opening deltas and bases from any location the CLI accepts: a local path,
// an http(s) URL or a hub id (org/name[@revision]); shared by `mount` and by
// `delta apply|verify|inspect`.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "tenpak/cache.h"
#include "tenpak/delta.h"

namespace tenpak::cli {

using LogFn = std::function<void(const std::string&)>;

// Remote origins go through `cache` (local files are read directly: the
// disk is as fast as LMDB). Null cache: no caching. `identity` names the
// content for cache keys (default: the source's validator).
std::unique_ptr<BlockSource> through_cache(std::unique_ptr<BlockSource> src, const std::shared_ptr<BlockCache>& cache,
                                           const std::string& location, std::string identity = "");

// The name of the one model file a remote location names (the URL or hub
// path of a .safetensors, .bin, .pt, .pth or .ckpt file: a base given as a
// file, like a local file path), else "" (a model directory).
std::string remote_file_name(const std::string& loc);

// Opens the delta directory at `loc` (path, URL or hub id).
Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache);

// Attaches every base file the delta needs from `base` when given (path,
// URL or hub id of the base directory, or a single local file), else from
// the locations the delta records, in order (a location that has the files
// but with other sizes or hashes is an error, never skipped). Sizes are
// always checked; the sha256 of local base files too when `verify_local`
// (remote ones rely on the per-frame hashes instead of downloading the whole
// base first). `log` gets one line per verified base file. Local base files
// are opened with `local` (the mount reads cold ranges direct).
Status attach_base_from(DeltaReader& r, const std::string& base, bool verify_local,
                        const std::shared_ptr<BlockCache>& cache, const LogFn& log, const LocalFileOptions& local = {});

// A local copy of the model directory at a remote location (URL or hub id),
// for the commands that read a whole base (build, estimate). Removed with
// the object.
class DownloadedModel {
 public:
  explicit DownloadedModel(std::string dir) : dir_(std::move(dir)) {}
  ~DownloadedModel();
  DownloadedModel(const DownloadedModel&) = delete;
  DownloadedModel& operator=(const DownloadedModel&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Downloads the model directory at `loc` into a new directory created next
// to `near` (same filesystem as the command's output). HTTP has no
// directory listing, so the files are found the way loaders find them:
// model.safetensors.index.json names the shards (else model.safetensors is
// the weights), plus the usual small files (config.json, tokenizer files)
// when present. The directory has a hidden name and is removed when anything
// fails (and with the object). `progress(done, total)` gets byte counts per file.
Result<std::unique_ptr<DownloadedModel>> download_model_dir(
    const std::string& loc, const std::string& near, const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace tenpak::cli
