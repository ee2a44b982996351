// Codec 10 (patch): what its encoder (patch_encode.cc) and decoder
// (patch_decode.cc) share (private to codec/): the method bits and the line
// table of B that line-counted copies index.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tenpak::patch_detail {

constexpr uint8_t kOpsZstd = 1, kLitZstd = 2, kLitPrefix = 4, kLineOps = 8;
// The literal stream is word-coded (patch_words.h); never with kLitZstd.
constexpr uint8_t kLitWords = 16;
// Snappy pages (patch_snappy.h): every extent is a snappy stream, B their
// decompressions; the output is a raw prefix then snappy of the rest.
constexpr uint8_t kSnappy = 32;

// Line starts of B and its end: T[0] = 0, every i + 1 < |B| with B[i] = '\n',
// then |B| (when |B| > 0). Strictly increasing; K = T.size() - 1 lines.
// Scanned 64 bytes at a time into a bit mask of newlines (SSE2, part of
// x86-64): a memchr call per line cost more than the scan itself on lines
// of ~100 bytes (memchr was 4-5% of ds-reorder's rebuild, which builds the
// table of 1.2-1.8 MB of B per frame; docs/BENCHMARKS.md, Dataset deltas
// run 7).
inline void line_table(const uint8_t* b, uint64_t n, std::vector<uint32_t>& t) {
  t.clear();
  t.push_back(0);
  uint64_t i = 0;
#if defined(__SSE2__)
  const __m128i nl = _mm_set1_epi8('\n');
  for (; i + 64 <= n; i += 64) {
    uint64_t m = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + 16 * k));
      m |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)))) << (16 * k);
    }
    for (; m; m &= m - 1) {
      const uint64_t at = i + static_cast<uint64_t>(__builtin_ctzll(m)) + 1;
      if (at < n) t.push_back(static_cast<uint32_t>(at));
    }
  }
#endif
  for (; i < n; ++i)
    if (b[i] == '\n' && i + 1 < n) t.push_back(static_cast<uint32_t>(i + 1));
  if (n) t.push_back(static_cast<uint32_t>(n));
}
// Index of the first line start at or after c (K for c = |B|).
inline uint64_t line_index(const std::vector<uint32_t>& t, uint64_t c) {
  return static_cast<uint64_t>(std::lower_bound(t.begin(), t.end(), c) - t.begin());
}

}  // namespace tenpak::patch_detail
