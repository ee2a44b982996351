// Record splitting and content-defined chunking.
#include <algorithm>
#include <array>
#include <cstring>

#include "tenpak/dataset.h"

namespace tenpak {

std::vector<uint64_t> split_records(const uint8_t* p, uint64_t n, bool blocks) {
  std::vector<uint64_t> ends;
  uint64_t i = 0;
  while (i < n) {
    const void* nl = std::memchr(p + i, '\n', n - i);
    if (!nl) { ends.push_back(n); break; }
    uint64_t e = static_cast<const uint8_t*>(nl) - p + 1;
    if (blocks) {
      // A block ends after the newline of a line that is empty (or "\r").
      uint64_t ls = i;  // start of this line
      (void)ls;
      // Absorb following empty lines into this record when this line itself ended a block.
      bool empty_line = (e - i == 1) || (e - i == 2 && p[i] == '\r');
      if (!empty_line) { i = e; if (i == n) ends.push_back(n); continue; }
      while (e < n && (p[e] == '\n' || (p[e] == '\r' && e + 1 < n && p[e + 1] == '\n'))) e += p[e] == '\n' ? 1 : 2;
      ends.push_back(e);
      i = e;
      continue;
    }
    ends.push_back(e);
    i = e;
  }
  if (blocks && !ends.empty() && ends.back() != n) ends.push_back(n);
  if (blocks && ends.empty() && n) ends.push_back(n);
  return ends;
}

bool looks_like_records(const std::string& name, const uint8_t* p, uint64_t n) {
  static const char* kBinary[] = {".parquet", ".arrow", ".feather", ".zip", ".gz", ".zst", ".tar", ".png",
                                  ".jpg", ".jpeg", ".bin", ".npy", ".safetensors", ".pt"};
  for (auto* s : kBinary) {
    size_t l = std::strlen(s);
    if (name.size() >= l && name.compare(name.size() - l, l, s) == 0) return false;
  }
  uint64_t m = std::min<uint64_t>(n, 64 << 10);
  if (std::memchr(p, 0, m)) return false;
  // Text whose lines are not absurdly long on average.
  uint64_t lines = 0;
  for (uint64_t i = 0; i < m; ++i) lines += p[i] == '\n';
  return m == 0 || lines > 0 || n <= (1 << 20);
}

bool looks_like_blocks(const uint8_t* p, uint64_t n) {
  uint64_t m = std::min<uint64_t>(n, 1 << 20), lines = 0, blank = 0;
  for (uint64_t i = 0; i < m; ++i)
    if (p[i] == '\n') {
      ++lines;
      if (i + 1 < m && p[i + 1] == '\n') ++blank;
    }
  // CoNLL-like: a blank line every few dozen lines at least.
  return lines >= 8 && blank * 50 >= lines;
}

namespace {
// 256 pseudo-random 64-bit values (splitmix64 of the byte), fixed forever:
// chunk boundaries must not change between builds.
std::array<uint64_t, 256> make_gear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& v : g) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    v = z ^ (z >> 31);
  }
  return g;
}
}  // namespace

std::vector<uint64_t> cdc_chunks(const uint8_t* p, uint64_t n) {
  static const std::array<uint64_t, 256> gear = make_gear();
  constexpr uint64_t kMin = 8 << 10, kMax = 64 << 10;
  constexpr uint64_t kMask = 0x1FFFull << 51;  // 13 top bits: 8 KiB after the minimum, 16 KiB average
  std::vector<uint64_t> ends;
  uint64_t start = 0;
  while (start < n) {
    uint64_t end = std::min(n, start + kMax);
    uint64_t i = std::min(end, start + kMin);
    uint64_t h = 0;
    uint64_t cut = end;
    for (; i < end; ++i) {
      h = (h << 1) + gear[p[i]];
      if ((h & kMask) == 0) { cut = i + 1; break; }
    }
    ends.push_back(cut);
    start = cut;
  }
  return ends;
}

}  // namespace tenpak
