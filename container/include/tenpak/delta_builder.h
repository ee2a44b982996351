// Building deltas from local files (tenpak_delta_builder: links the
// encoders; the mount never includes this). Reading is tenpak/delta_reader.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/delta_reader.h"
#include "tenpak/status.h"

namespace tenpak {

struct BuildOptions {
  int zstd_level = 3;
  unsigned threads = 0;  // 0: hardware concurrency
  Progress progress;     // bytes of fine-tune processed
  // estimate: encode only every `sample_every`-th tensor frame and extrapolate; write nothing.
  unsigned sample_every = 1;
  // Consider the sub_ctx codec (smallest, but decodes far slower than the
  // zstd-based codecs); false trades size for rebuild speed.
  bool allow_ctx = true;
  // Consider codec 12 (lowrank_lanes) for 2-D float tensors whose change
  // looks low-rank (merged LoRA adapters): factors searched per tensor
  // (tenpak/lowrank_codec.h), kept per frame only where smaller.
  bool allow_lowrank = true;
  // Recorded in the index as where the base can be found (paths, http(s)
  // URLs of the base directory, hub ids). Empty: the absolute path of the
  // base directory (of the base file's directory for a single file).
  std::vector<std::string> base_locations;
  // Fine-tune PyTorch checkpoints (.pt, .pth, .ckpt, pytorch_model*.bin):
  // false serves each file itself, bit for bit (structure bytes coded
  // losslessly, each storage's payload against the base tensor of its
  // name); true serves the safetensors conversion instead
  // (docs/CONVERTED_CHECKPOINTS.md: renamed files, index, metadata).
  bool as_safetensors = false;
};

struct TensorReport {
  // match: "same", "resized", "dtype", "none", "identical"; "structure": a
  // checkpoint storage too small for frames of its own, coded with the zip
  // structure around it
  std::string file, name, dtype, match;
  uint64_t out_bytes = 0, delta_bytes = 0;
  std::string codecs;  // comma-separated codecs used by its frames
};

struct FileReport {
  std::string name;
  uint64_t out_bytes = 0, delta_bytes = 0;
  uint32_t frames = 0;
};

struct BuildReport {
  std::vector<std::string> followed_links;  // "base: name -> target", "fine-tune: ..." (load_model)
  uint64_t finetune_bytes = 0;   // total size of the fine-tune as served
  uint64_t delta_bytes = 0;      // tenpak.dat + tenpak.idx (estimated when sampling)
  uint64_t index_bytes = 0;
  uint64_t frames = 0;
  uint64_t tensors = 0, tensors_matched = 0, tensors_identical = 0;
  std::vector<FileReport> files;
  std::vector<TensorReport> tensors_detail;
  double seconds = 0;
  bool estimated = false;
};

// Builds a delta of `finetune` against `base` into directory `out_dir`
// (written under a temporary name and renamed at the end; refuses an
// existing non-empty out_dir).
Result<BuildReport> build_delta(const std::string& base, const std::string& finetune, const std::string& out_dir,
                                const BuildOptions& opt);

// Same analysis without writing: samples frames (opt.sample_every).
Result<BuildReport> estimate_delta(const std::string& base, const std::string& finetune, const BuildOptions& opt);

}  // namespace tenpak
