// Record splitting and content-defined chunking.
#include <algorithm>
#include <array>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "tenpak/dataset.h"

namespace tenpak {

namespace {

// The first j >= from with p[j] = '\n' followed by an empty line ("\n", or
// "\r\n"), else n.
uint64_t next_empty_line(const uint8_t* p, uint64_t n, uint64_t from) {
  uint64_t j = from;
#ifdef __SSE2__
  const __m128i nl = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
  for (; j + 18 <= n; j += 16) {
    auto at = [&](uint64_t k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k)); };
    const __m128i a = at(j), b = at(j + 1), c = at(j + 2);
    const __m128i hit = _mm_and_si128(_mm_cmpeq_epi8(a, nl),
                                      _mm_or_si128(_mm_cmpeq_epi8(b, nl), _mm_and_si128(_mm_cmpeq_epi8(b, cr), _mm_cmpeq_epi8(c, nl))));
    if (const int m = _mm_movemask_epi8(hit)) return j + static_cast<uint64_t>(__builtin_ctz(static_cast<unsigned>(m)));
  }
#endif
  for (; j + 1 < n; ++j)
    if (p[j] == '\n' && (p[j + 1] == '\n' || (p[j + 1] == '\r' && j + 2 < n && p[j + 2] == '\n'))) return j;
  return n;
}

// Calls f(end) for the end offset of every record of p[0, n) after `from`
// (0 or a record end), in order (split_records' records), while f returns
// true. Each record end depends only on the bytes from the one before, so a
// walk from a record end continues the walk from 0.
template <class F>
void for_record_ends(const uint8_t* p, uint64_t n, bool blocks, F&& f, uint64_t from = 0) {
  uint64_t i = from;
  if (blocks) {
    // A block ends after an empty line ("\n" or "\r\n") and the empty lines
    // right after it; the rest of the file is the last block. Found by
    // scanning 16 bytes at a time for a newline followed by an empty line
    // instead of one memchr per line (CoNLL's lines are ~10 bytes: that was
    // 12% of a ds-conll build).
    auto empty_at = [&](uint64_t x) { return p[x] == '\n' || (p[x] == '\r' && x + 1 < n && p[x + 1] == '\n'); };
    while (i < n) {
      uint64_t q = i;  // the next empty line at or after the line start i
      if (!empty_at(i)) {
        const uint64_t j = next_empty_line(p, n, i);
        if (j >= n) { f(n); return; }
        q = j + 1;
      }
      uint64_t e = q + (p[q] == '\n' ? 1 : 2);
      while (e < n && (p[e] == '\n' || (p[e] == '\r' && e + 1 < n && p[e + 1] == '\n'))) e += p[e] == '\n' ? 1 : 2;
      if (!f(e)) return;
      i = e;
    }
    return;
  }
  while (i < n) {
    const void* nl = std::memchr(p + i, '\n', n - i);
    if (!nl) { f(n); return; }
    uint64_t e = static_cast<const uint8_t*>(nl) - p + 1;
    if (!f(e)) return;
    i = e;
  }
}

}  // namespace

std::vector<uint64_t> split_records(const uint8_t* p, uint64_t n, bool blocks) {
  std::vector<uint64_t> ends;
  for_record_ends(p, n, blocks, [&](uint64_t e) { ends.push_back(e); return true; });
  return ends;
}

void split_records_window(const uint8_t* p, uint64_t n, bool blocks, uint64_t from, uint64_t window,
                          std::vector<uint64_t>& ends) {
  ends.clear();
  const uint64_t until = from + std::max<uint64_t>(window, 1);
  for_record_ends(p, n, blocks, [&](uint64_t e) { ends.push_back(e); return e < until; }, from);
}

bool records_fit(const uint8_t* p, uint64_t n, bool blocks, uint64_t max) {
  if (n <= max) return true;
  uint64_t count = 0;
  for_record_ends(p, n, blocks, [&](uint64_t) { return ++count <= max; });
  return count <= max;
}

bool looks_like_records(const std::string& name, const uint8_t* p, uint64_t n) {
  static const char* kBinary[] = {".parquet", ".arrow", ".feather", ".zip", ".gz", ".zst", ".tar", ".png",
                                  ".jpg", ".jpeg", ".bin", ".npy", ".safetensors", ".pt"};
  for (auto* s : kBinary) {
    size_t l = std::strlen(s);
    if (name.size() >= l && name.compare(name.size() - l, l, s) == 0) return false;
  }
  // An empty file (whose mapping is a null pointer: memchr may not be
  // given one, even for 0 bytes) is records, of none.
  if (n == 0) return true;
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
