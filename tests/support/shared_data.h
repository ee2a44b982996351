// Where the project's shared data lives for a test: $TENPAK_SHARED (set by
// ctest to the checkout's ../shared), else ../shared. Tests that need a file
// below it skip cleanly (GTEST_SKIP naming the path) when it is absent.
#pragma once
#include <cstdlib>
#include <string>

namespace tenpak::fakes {

inline std::string shared_root() {
  const char* s = std::getenv("TENPAK_SHARED");
  return s ? s : "../shared";
}

// shared_root() + "/data": the folder of ../shared/data/*/SOURCES.md.
inline std::string shared_data() { return shared_root() + "/data"; }

}  // namespace tenpak::fakes
