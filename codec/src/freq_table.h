// Static frequency tables shared by the rANS codecs (8 and 9): normalising
// counts to a power-of-two total, and their LEB128 serialisation (docs/
// FORMAT.md, "codec 8" tables). Private to tenpak_codec.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tenpak::freq {

// Scales counts to frequencies summing to `scale`, every present symbol >= 1
// (any such table is valid for the decoder; this one is close to optimal).
// All-zero counts give all-zero frequencies.
inline void normalise(const uint32_t* cnt, int ns, uint32_t scale, uint32_t* freq) {
  uint64_t total = 0;
  for (int s = 0; s < ns; ++s) total += cnt[s];
  if (total == 0) {
    for (int s = 0; s < ns; ++s) freq[s] = 0;
    return;
  }
  int64_t sum = 0;
  for (int s = 0; s < ns; ++s) {
    if (!cnt[s]) { freq[s] = 0; continue; }
    uint64_t f = (uint64_t(cnt[s]) * scale + total / 2) / total;
    freq[s] = static_cast<uint32_t>(f ? f : 1);
    sum += freq[s];
  }
  // Fix the rounding on the largest entries (at most ns steps of one each;
  // the largest is always > 1 while the sum exceeds scale).
  while (sum != static_cast<int64_t>(scale)) {
    int best = -1;
    for (int s = 0; s < ns; ++s)
      if (freq[s] && (best < 0 || freq[s] > freq[best])) best = s;
    if (sum > static_cast<int64_t>(scale)) { --freq[best]; --sum; } else { ++freq[best]; ++sum; }
  }
}

// Number of symbols to store: the highest symbol with a frequency, plus one.
inline int used_symbols(const uint32_t* freq, int ns) {
  int n = 0;
  for (int s = 0; s < ns; ++s)
    if (freq[s]) n = s + 1;
  return n;
}

// Appends u8 n, then f_0..f_{n-1} as LEB128 (values < 2^14: at most 2 bytes).
inline void put_table(std::string& out, const uint32_t* freq, int n) {
  out.push_back(static_cast<char>(n));
  for (int s = 0; s < n; ++s) {
    uint32_t v = freq[s];
    if (v >= 0x80) { out.push_back(static_cast<char>(0x80 | (v & 0x7f))); v >>= 7; }
    out.push_back(static_cast<char>(v));
  }
}

// Reads one table written by put_table at p[pos..len): n (0 = unused, else
// <= ns) and the frequencies into f. Checks every value <= scale, the sum ==
// scale and f[n-1] > 0 when n > 0. Returns false on any violation.
inline bool get_table(const uint8_t* p, size_t len, size_t& pos, int ns, uint32_t scale, uint32_t* f, int& n) {
  if (pos >= len) return false;
  n = p[pos++];
  if (n > ns) return false;
  if (n == 0) return true;
  uint32_t sum = 0;
  for (int s = 0; s < n; ++s) {
    if (pos >= len) return false;
    uint32_t v = p[pos++];
    if (v & 0x80) {
      if (pos >= len) return false;
      uint32_t hi = p[pos++];
      if (hi & 0x80) return false;
      v = (v & 0x7f) | (hi << 7);
    }
    if (v > scale) return false;
    f[s] = v;
    sum += v;
  }
  return sum == scale && f[n - 1] != 0;
}

}  // namespace tenpak::freq
