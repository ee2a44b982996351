// SplitMix64 (tenpak/splitmix64.h) for the golden generators: the same
// numbers on every platform, so a regenerated golden file is byte-identical
// to the committed one. The generators' outputs depend on this exact stream
// and on uni()'s and sym()'s: never change them.
#pragma once

#include <cstdint>

#include "tenpak/splitmix64.h"

struct Rng {
  uint64_t s;
  uint64_t next() { return tenpak::splitmix64(s); }
  double uni() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double sym() { return 2 * uni() - 1; }                                 // (-1, 1)
};
