// Data files compiled into the library (router/CMakeLists.txt generates
// embedded.cc from router/data/ at configure time).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tenpak::router::embedded {
std::string catalog_json();
std::string hardware_json();
// The default router file's bytes; size 0 when none was present at build time.
const uint8_t* default_router(size_t* size);
}  // namespace tenpak::router::embedded
