// Models from any location the CLI accepts (a local path, an http(s) URL or
// a hub id, org/name[@revision]) for `delta build|estimate|apply|verify|inspect`.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "tenpak/mount.h"

namespace tenpak::cli {

// Opening deltas and attaching bases (through_cache, open_delta,
// attach_base_from) live in the mount's library (tenpak/mount.h); this
// header adds what only the offline commands need.

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
// to `near` (same filesystem as the command's output; "": in the temporary
// directory, download_parent). HTTP has no
// directory listing, so the files are found the way loaders find them:
// model.safetensors.index.json names the shards (else model.safetensors is
// the weights), plus the usual small files (config.json, tokenizer files)
// when present. The directory has a hidden name and is removed when anything
// fails (and with the object). `progress(done, total)` gets byte counts per file.
Result<std::unique_ptr<DownloadedModel>> download_model_dir(
    const std::string& loc, const std::string& near, const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace tenpak::cli
