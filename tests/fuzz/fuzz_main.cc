// libFuzzer driver: built once per entry point with -DTP_FUZZ_TARGET=name.
#include <cstdio>
#include <cstdlib>

#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;  // keep runs fast; sizes are checked arithmetically anyway
  std::string r = tpfuzz::TP_FUZZ_TARGET(data, size);
  if (!r.empty()) {
    std::fprintf(stderr, "invariant violated: %s\n", r.c_str());
    std::abort();
  }
  return 0;
}
