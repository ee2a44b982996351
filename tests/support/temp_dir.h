// A temporary directory for one test, removed with the object.
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace tenpak::fakes {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag = "test") {
    std::string t = (std::filesystem::temp_directory_path() / ("tenpak-test-" + tag + "-XXXXXX")).string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path) / name).string(); }
  const std::string& str() const { return path; }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace tenpak::fakes
