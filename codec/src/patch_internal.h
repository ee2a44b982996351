// Codec 10 (patch): what its encoder (patch_encode.cc) and decoder
// (patch_decode.cc) share (private to codec/): the method bits and the line
// table of B that line-counted copies index.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace tenpak::patch_detail {

constexpr uint8_t kOpsZstd = 1, kLitZstd = 2, kLitPrefix = 4, kLineOps = 8;
// The literal stream is word-coded (patch_words.h); never with kLitZstd.
constexpr uint8_t kLitWords = 16;
// Snappy pages (patch_snappy.h): every extent is a snappy stream, B their
// decompressions; the output is a raw prefix then snappy of the rest.
constexpr uint8_t kSnappy = 32;
// The literal stream is word-coded with a static model (patch_wrans.h);
// never with kLitZstd or kLitWords.
constexpr uint8_t kLitWordsStatic = 64;

// Line starts of B and its end: T[0] = 0, every i + 1 < |B| with B[i] = '\n',
// then |B| (when |B| > 0). Strictly increasing; K = T.size() - 1 lines.
// (A memchr call per line: on ds-reorder's B, ~300-byte lines, glibc's
// AVX-512 memchr beat a 64-byte SSE2 newline mask, 0.9 vs 1.2 ms per 16 MB.)
inline void line_table(const uint8_t* b, uint64_t n, std::vector<uint32_t>& t) {
  t.clear();
  t.push_back(0);
  for (const uint8_t* p = b; n && p < b + n;) {
    const void* q = std::memchr(p, '\n', static_cast<size_t>(b + n - p));
    if (!q) break;
    p = static_cast<const uint8_t*>(q) + 1;
    if (p < b + n) t.push_back(static_cast<uint32_t>(p - b));
  }
  if (n) t.push_back(static_cast<uint32_t>(n));
}
// Index of the first line start at or after c (K for c = |B|).
inline uint64_t line_index(const std::vector<uint32_t>& t, uint64_t c) {
  return static_cast<uint64_t>(std::lower_bound(t.begin(), t.end(), c) - t.begin());
}

}  // namespace tenpak::patch_detail
