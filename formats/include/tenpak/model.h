// A model on local disk: a directory of files or a single file, with the
// tensor layout of every safetensors (or PyTorch zip) file in it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tenpak/safetensors.h"
#include "tenpak/status.h"

namespace tenpak {

// Read-only memory map of a whole file (RAII).
class Mapping {
 public:
  static Result<std::unique_ptr<Mapping>> open(const std::string& path);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  Mapping() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct ModelFile {
  std::string name;   // relative name inside the model (the output name for fine-tunes)
  std::string path;   // where it is on disk
  uint64_t size = 0;  // size of the file as served (synthesized size for converted checkpoints)
  uint32_t mode = 0644;
  bool has_tensors = false;
  SafetensorsHeader header;  // tensor byte ranges within `bytes()` when has_tensors
  // For a PyTorch checkpoint read as tensors: the safetensors file rebuilt
  // from it, held in memory. Empty for files served as they are.
  std::vector<uint8_t> synthesized;
  std::unique_ptr<Mapping> map;  // the file on disk
  // For a base PyTorch checkpoint: tensors with their byte ranges inside the
  // zip file itself (STORED entries), so deltas reference the .pt directly.
  const uint8_t* bytes() const { return synthesized.empty() ? map->data() : synthesized.data(); }
};

struct Model {
  std::string root;
  std::vector<std::unique_ptr<ModelFile>> files;
  // Symbolic links of the directory followed for their content, as
  // "name -> target" (named by the link, read from the target).
  std::vector<std::string> followed_links;
};

struct LoadOptions {
  // PyTorch checkpoints converted to safetensors (output name changes, the
  // --as-safetensors view of a fine-tune); else read in place, as below.
  bool convert_checkpoints = true;
  // In place: false indexes every dense view by name (a base: any name may
  // be matched); true cuts the file into its storages
  // (checkpoint_storage_ranges: a fine-tune served bit for bit; a range
  // with an empty name is never matched to a base).
  bool checkpoint_storages = false;
};

// Loads a directory (recursively, skipping .git and hidden cache folders)
// or a single file.
Result<Model> load_model(const std::string& path, const LoadOptions& opt);

// Output name used for a converted PyTorch checkpoint.
std::string safetensors_name_for(const std::string& checkpoint_name);
bool is_checkpoint_name(const std::string& name);

}  // namespace tenpak
