// Small file-writing helpers shared by the builder and the rebuilder
// (OutFileWriter is public: tenpak/out_file.h).
#pragma once
#include <cstdio>
#include <string>

#include "tenpak/out_file.h"
#include "tenpak/status.h"

namespace tenpak {

// Creates the parent directories of `path`.
Status make_parent_dirs(const std::string& path);

// A staging directory next to `final_dir`, removed on destruction unless
// committed (renamed to `final_dir`).
class StagingDir {
 public:
  ~StagingDir();
  Status create(const std::string& final_dir);
  const std::string& path() const { return path_; }
  Status commit();

 private:
  std::string path_, final_;
  bool committed_ = true;
};

}  // namespace tenpak
