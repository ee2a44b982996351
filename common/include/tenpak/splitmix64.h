// SplitMix64 (Steele, Lea and Flood 2014; the constants of Vigna's
// splitmix64.c): the same 64-bit numbers on every machine and compiler.
// Generated fixtures and golden files, the trainer's data and lowrank's
// start vectors depend on this exact stream: never change it.
#pragma once
#include <cstdint>

namespace tenpak {

// Advances `state` by the golden-ratio step and returns it mixed.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace tenpak
