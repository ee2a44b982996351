// Attaching a delta's base: the one way every command (mount, apply,
// verify, inspect) and test gives a DeltaReader the base files it needs.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "tenpak/block_source.h"
#include "tenpak/delta_reader.h"
#include "tenpak/format.h"
#include "tenpak/status.h"

namespace tenpak {

struct BaseAttachOptions {
  // Local base files are hashed (sha256, remembered across runs: see
  // sha256_of_local_file) and compared with the manifest. Remote ones are
  // never downloaded whole for this: their sizes are checked, and every
  // frame is checked against its own hash when read.
  bool check_sha256 = false;
  Progress progress;  // (bytes hashed, bytes to hash) while checking
  // How local base files are read (the mount reads cold ranges direct;
  // apply and verify hint every range).
  LocalFileOptions local;
  // Each opened base file passes through it before the reader gets it (the
  // mount puts remote ones into its cache, keyed by the sha256 `bf`
  // records). Null: as opened.
  std::function<std::unique_ptr<BlockSource>(std::unique_ptr<BlockSource>, const std::string& path, const BaseFile& bf)>
      wrap;
  // Called for each base file whose sha256 matched: its path and size,
  // whether the hash came from the hash cache, the seconds the check took.
  std::function<void(const std::string& path, uint64_t bytes, bool from_cache, double seconds)> on_verified;
};

// Attaches every base file the delta needs from `location`: a local
// directory or single file, or the URL / hub id of a base directory or of
// one model file (a .safetensors, .bin, .pt, .pth or .ckpt; see
// remote_file_name). A single file serves a delta that needs exactly one
// base file, whatever its name. Errors: Errc::not_found (no such local
// base; a remote file answered with a 4xx other than 429), Errc::mismatch (a
// file of another size or sha256, or a single file for a delta needing
// several: a wrong base), Errc::unavailable (a remote origin that does not
// answer or serve now: refused, a timeout, 5xx, 429), io (a remote answer
// not asked for, such as a redirect).
Status attach_base(DeltaReader& r, const std::string& location, const BaseAttachOptions& opt = {});

}  // namespace tenpak
