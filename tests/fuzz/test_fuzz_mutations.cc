// Deterministic mutation fuzzing of every entry point in fuzz_targets.h, so
// CI exercises the parsers with gcc (libFuzzer runs are optional, clang only).
// Each entry point gets a few thousand seeded mutations of valid inputs; a
// crash, a hang (ctest timeout) or a violated invariant fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "fuzz_seeds.h"
#include "fuzz_targets.h"

namespace {

using Entry = std::string (*)(const uint8_t*, size_t);

std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; };
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 7) {
      case 0: if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: {  // interesting byte values
        static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, 0xfe, '(', 'R', 'c', '.', 0x81, 'Q'};
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(v[rng() % sizeof v]);
        break;
      }
      case 2: s.resize(pick(s.size() + 1)); break;  // truncate
      case 3: if (!s.empty()) s.erase(pick(s.size()), 1 + pick(16)); break;
      case 4: s.insert(pick(s.size() + 1), std::string(1 + pick(8), static_cast<char>(rng()))); break;
      case 5: if (s.size() > 4) {  // duplicate a chunk elsewhere
        size_t a = pick(s.size()), n = 1 + pick(std::min<size_t>(64, s.size() - a));
        s.insert(pick(s.size() + 1), s.substr(a, n));
      } break;
      case 6: if (s.size() >= 4) {  // 32-bit little-endian field set to an extreme
        static const uint32_t v[] = {0, 1, 0xffffffffu, 0x7fffffffu, 0x80000000u, 0xffffu, 1u << 20};
        uint32_t x = v[rng() % 7];
        size_t at = pick(s.size() - 3);
        std::memcpy(s.data() + at, &x, 4);
      } break;
    }
  }
  return s;
}

void run(Entry f, const std::vector<std::string>& seeds, int iterations, uint64_t seed) {
  for (auto& s : seeds) {
    std::string r = f(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    ASSERT_EQ(r, "") << "on an unmutated seed";
  }
  std::mt19937_64 rng(seed);
  int failures = 0;
  for (int i = 0; i < iterations && failures < 5; ++i) {
    std::string in = mutate(seeds[static_cast<size_t>(i) % seeds.size()], rng);
    std::string r = f(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    if (!r.empty()) {
      ++failures;
      ADD_FAILURE() << "iteration " << i << ": " << r;
    }
  }
}

}  // namespace

TEST(FuzzMutations, Checkpoint) { run(tpfuzz::checkpoint, tpfuzz::checkpoint_seeds(), 6000, 1); }

TEST(FuzzMutations, Pickle) { run(tpfuzz::pickle, tpfuzz::pickle_seeds(), 20000, 2); }

TEST(FuzzMutations, Safetensors) { run(tpfuzz::safetensors, tpfuzz::safetensors_seeds(), 5000, 3); }

TEST(FuzzMutations, Manifest) { run(tpfuzz::manifest, tpfuzz::manifest_seeds(), 5000, 4); }

TEST(FuzzMutations, SubLanes) { run(tpfuzz::lanes, tpfuzz::lanes_seeds(), 20000, 5); }

TEST(FuzzMutations, Patch) { run(tpfuzz::patch, tpfuzz::patch_seeds(), 20000, 6); }

TEST(FuzzMutations, LowRankLanes) { run(tpfuzz::lowrank, tpfuzz::lowrank_seeds(), 20000, 7); }

TEST(FuzzMutations, Approx) {
  // The seeds are payloads codec 11 accepts, one per sub-method (grouped and grouped_rc twice).
  const auto seeds = tpfuzz::approx_seeds();
  ASSERT_EQ(seeds.size(), 7u);
  for (auto& s : seeds) {
    const size_t count = 1 + ((static_cast<uint8_t>(s[1]) | (size_t(static_cast<uint8_t>(s[2])) << 8)) % 2048);
    const auto dt = tpfuzz::lowrank_dtype(static_cast<uint8_t>(s[0]));
    const auto base = tpfuzz::lanes_base(dt, count);
    std::vector<uint8_t> out(base.size());
    EXPECT_TRUE(tenpak::decode_approx(reinterpret_cast<const uint8_t*>(s.data()) + 3, s.size() - 3, base.data(),
                                      base.size(), dt, out.data()).ok()) << "seed with sub-method " << int(s[3]);
  }
  run(tpfuzz::approx, seeds, 20000, 8);
}
