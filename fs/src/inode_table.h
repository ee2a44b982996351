// InodeTable: the mount's directory tree. Stable: the same models (sorted
// by dir) always give the same inodes, model files first in the order the
// models list them, then the hidden control directory and its stats file
// (so model inodes do not move when the control entries change). Immutable
// once built: lookups need no lock.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tenpak/model_fs.h"
#include "tenpak/status.h"

namespace tenpak::fsi {

class InodeTable {
 public:
  struct Node {
    std::string name;
    uint64_t parent = 0;
    bool is_dir = false;
    bool hidden = false;   // not listed by readdir (the control dir)
    bool control = false;  // the stats file
    std::map<std::string, uint64_t, std::less<>> children;  // directories
    uint32_t model = 0, file = 0;  // regular files of a model
    uint64_t size = 0;
    uint32_t mode = 0555;
  };
  // One file of a model.
  struct FileSpec {
    std::string name;  // a safe relative path within the model's dir
    uint64_t size = 0;
    uint32_t mode = 0644;  // as recorded; shown read-only
  };

  InodeTable();  // the root alone
  // Adds the files of model `model` under directory `dir` ("" = the root).
  // Fails (Errc::invalid) when a path is taken by another model or file, or
  // a file of another model sits where a directory is needed. `who` names
  // the model in errors.
  Status add_model(uint32_t model, const std::string& dir, const std::vector<FileSpec>& files, const std::string& who);
  // Adds the hidden control directory `dir` holding the file `stats` (whose
  // size is `stats_size`); after every model. Fails when a model took the name.
  Status add_control(const char* dir, const char* stats, uint64_t stats_size);

  const Node* node(uint64_t ino) const { return ino == 0 || ino > nodes_.size() ? nullptr : &nodes_[ino - 1]; }
  uint64_t size() const { return nodes_.size(); }  // inodes 1..size()
  std::optional<FsAttr> lookup(uint64_t parent, std::string_view name) const;
  std::optional<FsAttr> getattr(uint64_t ino) const;
  std::optional<std::vector<FsDirEntry>> readdir(uint64_t ino) const;

 private:
  FsAttr attr_of(uint64_t ino) const;
  Result<uint64_t> make_dir(const std::string& path);
  std::vector<Node> nodes_;  // ino = index + 1
  uint64_t control_size_ = 0;
};

}  // namespace tenpak::fsi
