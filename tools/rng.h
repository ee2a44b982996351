// A small reproducible random generator for fixtures and the trainer's data:
// xoshiro256** seeded by splitmix64. Identical streams on every machine and
// compiler (unlike std::normal_distribution or torch's RNG), so generated
// models are byte-identical everywhere.
#pragma once
#include <cmath>
#include <cstdint>

#include "tenpak/splitmix64.h"

namespace tenpak::tools {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& x : s_) x = splitmix64(seed);
  }
  uint64_t next() {
    uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3]; s_[2] ^= t; s_[3] = rotl(s_[3], 45);
    return r;
  }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return next() % n; }
  // Standard normal (Box-Muller, two values per pair of calls).
  float normal() {
    if (have_) { have_ = false; return spare_; }
    double u = uniform(), v = uniform();
    double r = std::sqrt(-2.0 * std::log(u + 1e-300)), a = 2 * M_PI * v;
    spare_ = static_cast<float>(r * std::sin(a));
    have_ = true;
    return static_cast<float>(r * std::cos(a));
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  bool have_ = false;
  float spare_ = 0;
};

}  // namespace tenpak::tools
