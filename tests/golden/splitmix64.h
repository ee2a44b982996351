// SplitMix64 for the golden generators: the same numbers on every platform,
// so a regenerated golden file is byte-identical to the committed one. The
// generators' outputs depend on this exact stream: never change it.
#pragma once

#include <cstdint>

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uni() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double sym() { return 2 * uni() - 1; }                                 // (-1, 1)
};
