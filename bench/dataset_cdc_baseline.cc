// dataset_cdc_baseline BASE DERIVED [LEVEL]: the content-defined-chunking
// baseline of bench/dataset_bench.sh, done the way Hugging Face's Xet storage
// stores a new revision: both files cut by a gear hash into chunks of 64 KiB
// on average (8-128 KiB), chunks of the derived file already in the base
// cost nothing but a reference, new chunks are stored zstd-compressed (level
// 19 by default: the strongest form of the baseline). Prints the bytes of
// the new chunks compressed plus 40 bytes per chunk reference (hash +
// length; the index a chunk store keeps), and the chunk counts.
#include <zstd.h>
#include <xxhash.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unordered_set>
#include <vector>

static std::string slurp(const char* p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

static std::vector<size_t> chunks(const std::string& s) {
  static std::array<uint64_t, 256> gear = [] {
    std::array<uint64_t, 256> g{};
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (auto& v : g) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      v = x;
    }
    return g;
  }();
  const size_t kMin = 8 << 10, kMax = 128 << 10;
  const uint64_t mask = 0xFFFFull << 48;  // 16 bits: 64 KiB average past the minimum
  std::vector<size_t> ends;
  size_t start = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  while (start < s.size()) {
    size_t end = std::min(s.size(), start + kMax), cut = end;
    uint64_t h = 0;
    for (size_t i = std::min(end, start + kMin); i < end; ++i) {
      h = (h << 1) + gear[p[i]];
      if ((h & mask) == 0) { cut = i + 1; break; }
    }
    ends.push_back(cut);
    start = cut;
  }
  return ends;
}

int main(int argc, char** argv) {
  if (argc < 3) { std::fprintf(stderr, "usage: %s BASE DERIVED [LEVEL]\n", argv[0]); return 2; }
  int level = argc > 3 ? std::atoi(argv[3]) : 19;
  std::string b = slurp(argv[1]), d = slurp(argv[2]);
  std::unordered_set<uint64_t> have;
  size_t s = 0;
  for (size_t e : chunks(b)) { have.insert(XXH3_64bits(b.data() + s, e - s)); s = e; }
  size_t total = 0, n = 0, fresh = 0;
  s = 0;
  std::vector<char> buf;
  for (size_t e : chunks(d)) {
    ++n;
    total += 40;
    uint64_t h = XXH3_64bits(d.data() + s, e - s);
    if (!have.count(h)) {
      ++fresh;
      buf.resize(ZSTD_compressBound(e - s));
      size_t z = ZSTD_compress(buf.data(), buf.size(), d.data() + s, e - s, level);
      total += ZSTD_isError(z) ? e - s : z;
      have.insert(h);
    }
    s = e;
  }
  std::printf("%zu %zu %zu\n", total, n, fresh);
  return 0;
}
