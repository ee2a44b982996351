// Reading and rebuilding deltas: DeltaReader (frames through BlockSource,
// so the same code serves the mount, local or remote), base attachment,
// apply/verify. The decode side only (tenpak_delta_reader): what the mount
// includes. Building is tenpak/delta_builder.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tenpak/block_source.h"
#include "tenpak/format.h"
#include "tenpak/frame_codec.h"
#include "tenpak/status.h"

namespace tenpak {

// Progress of long work: bytes done out of total.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

// Reads frames of a delta. Thread-safe.
class DeltaReader {
 public:
  // `index` and `data` are the delta's two files; `bases[i]` serves base file i
  // of the manifest (null when no frame needs it).
  static Result<std::unique_ptr<DeltaReader>> open(std::unique_ptr<BlockSource> index, std::unique_ptr<BlockSource> data,
                                                   const std::string& delta_name);
  const Manifest& manifest() const { return m_; }
  // Sets the source of base file i. Checked against the manifest's size.
  Status set_base(uint32_t i, std::unique_ptr<BlockSource> src);
  bool has_base(uint32_t i) const { return i < bases_.size() && bases_[i] != nullptr; }
  // Rebuilds frame `k` into `out` (frame.out_len bytes) and checks its xxh3.
  // Errors name the delta, output file and frame. On a hash or decode
  // failure the ranges used are invalidated in their sources (dropping
  // cached copies) and the frame is rebuilt once more before failing.
  Status read_frame(uint32_t k, uint8_t* out);
  // The same into a buffer the caller lends (aligned to
  // BlockSource::kReadInAlign, out_len + 2 * kReadInAlign bytes), returning
  // where in it the frame's checked bytes start: a frame that copies a base
  // range which the base's source reads direct lands at that range's offset
  // within its aligned span (BlockSource::read_in: no copy); any other
  // frame at buf.
  Result<const uint8_t*> read_frame_in(uint32_t k, uint8_t* buf);
  // BlockSource::cancel() on the delta's data and every base: reads in
  // progress and later ones fail soon. For shutting down.
  void cancel();
  // Frames of output file `file` that overlap [off, off+len).
  std::pair<uint32_t, uint32_t> frames_for(uint32_t file, uint64_t off, uint64_t len) const;
  const std::string& name() const { return name_; }

  ~DeltaReader();

 private:
  struct ScratchPool;
  DeltaReader();
  Result<const uint8_t*> read_frame_at(uint32_t k, uint8_t* out, bool lent);
  Result<const uint8_t*> rebuild_frame(uint32_t k, uint8_t* out, bool lent);
  Manifest m_;
  std::string name_;
  std::unique_ptr<BlockSource> data_;
  std::vector<std::unique_ptr<BlockSource>> bases_;
  std::unique_ptr<ScratchPool> scratch_;
};

// Opens a delta directory on local disk.
Result<std::unique_ptr<DeltaReader>> open_delta_dir(const std::string& dir);

// needed[i]: some frame of `m` reads base file i (the others need not be
// present at all).
std::vector<bool> needed_base_files(const Manifest& m);

// Attaches the base at `base_path` (directory or single file) to `r`:
// every base file is matched by name (a single file by its only entry),
// its size checked, and, when `check_sha256`, its sha256 compared with the
// manifest before anything else happens.
Status attach_local_base(DeltaReader& r, const std::string& base_path, bool check_sha256, const Progress& progress = {});

// The sha256 check of attach_local_base alone: every base file the delta
// needs, under `base_path`, against the manifest.
Status check_local_base_sha256(const Manifest& m, const std::string& base_path, const Progress& progress = {});

struct ApplyOptions {
  unsigned threads = 0;
  Progress progress;  // bytes of output rebuilt
  // Optional check (e.g. check_local_base_sha256) run on its own thread
  // beside the rebuild: the output is committed only when it passes, and its
  // error wins over any other.
  std::function<Status()> concurrent_check;
};

// Rebuilds every file into `out_dir` (staged under a temporary name, renamed
// when every sha256 matched). With out_dir empty, rebuilds in memory only
// (verify). Returns bytes rebuilt.
Result<uint64_t> apply_delta(DeltaReader& r, const std::string& out_dir, const ApplyOptions& opt);

}  // namespace tenpak
