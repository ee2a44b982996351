// The Parquet page index's anchor scan (dataset/src/parquet_pages.cc), tested
// directly: its SIMD form must select exactly the anchors of the plain test,
// since the anchors choose a page frame's base pages and so the delta's bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "content_hash.h"
#include "parquet_pages.h"

using namespace tenpak;

namespace {
const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }
}  // namespace

// The page index's anchor scan: every level (scalar, AVX-512 where the CPU
// has it) gives the anchors of the plain per-position test, in position
// order, at every length and alignment (the scan takes 64 positions a step,
// then one at a time), on random bytes, on text, and on zeros (every
// position an anchor).
TEST(Dataset, ParquetAnchorScanIsThePlainTestAtEveryLevel) {
  std::mt19937_64 rng(7);
  std::string rnd(1 << 20, '\0'), text, zeros(4096, '\0');
  for (auto& c : rnd) c = static_cast<char>(rng());
  const char* words[] = {"the ", "answer ", "is ", "42", ", ", "because ", "of ", "apples\n", "\"q\": "};
  while (text.size() < (300u << 10)) text += words[rng() % 9];
  auto plain = [](const uint8_t* p, uint64_t n) {
    std::vector<uint64_t> v;
    for (uint64_t i = 0; i + 16 <= n; ++i)
      if (dataset_internal::load64(p + i) * 0x9E3779B97F4A7C15ull < (uint64_t(1) << 57))
        v.push_back(dataset_internal::window16(p + i));
    return v;
  };
  for (const std::string* s : {&rnd, &text, &zeros}) {
    for (uint64_t n : {uint64_t(0), uint64_t(15), uint64_t(16), uint64_t(79), uint64_t(80), uint64_t(81),
                       uint64_t(143), uint64_t(144), uint64_t(145), uint64_t(1000), uint64_t(4000), uint64_t(65543),
                       uint64_t(s->size() - 8)}) {
      if (n + 8 > s->size()) continue;
      for (uint64_t off = 0; off < 8; ++off) {
        const auto want = plain(u8(*s) + off, n);
        for (int level : {0, 1}) {
          const auto got = parquet::anchors_of(u8(*s) + off, n, level);
          ASSERT_EQ(got, want) << "level " << level << " n " << n << " off " << off;
        }
      }
    }
  }
  EXPECT_EQ(parquet::anchors_of(u8(zeros), 4096, 1).size(), 4096u - 15);
  EXPECT_GT(parquet::anchors_of(u8(rnd), rnd.size(), 1).size(), rnd.size() / 256);
}
