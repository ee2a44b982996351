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

// Opens the delta directory at `loc` (path, URL or hub id).
Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache);

// Attaches every base file the delta needs from `base` when given (path,
// URL or hub id of the base directory, or a single local file), else from
// the locations the delta records, in order (a location that has the files
// but with other sizes or hashes is an error, never skipped). Sizes are
// always checked; the sha256 of local base files too when `verify_local`
// (remote ones rely on the per-frame hashes instead of downloading the whole
// base first). `log` gets one line per verified base file.
Status attach_base_from(DeltaReader& r, const std::string& base, bool verify_local,
                        const std::shared_ptr<BlockCache>& cache, const LogFn& log);

}  // namespace tenpak::cli
