// Internal to dataset/: a static multimap from 64-bit content hashes to a
// 32-bit index (a record, a Parquet page), used by the record matching and
// the Parquet page matching alike.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace tenpak::dataset_internal {

// (hash, index) pairs sorted, with a directory on the hash's top bits: a
// lookup searches one small bucket instead of the whole array (the binary
// searches' cache misses were a third of a record build and 70% of choosing
// Parquet pages), and the build is a counting sort on the bucket then small
// sorts. Entries with one hash come in increasing index order, so callers
// that stop after the first few get the same ones whatever the bucket count.
struct HashIndex {
  using Entry = std::pair<uint64_t, uint32_t>;
  std::vector<Entry> v;
  std::vector<uint32_t> dir;
  int shift = 56;
  void build(const std::vector<Entry>& in) {
    int bits = 8;
    while ((size_t(1) << bits) < in.size() && bits < 22) ++bits;
    shift = 64 - bits;
    dir.assign((size_t(1) << bits) + 1, 0);
    for (auto& e : in) ++dir[(e.first >> shift) + 1];
    for (size_t b = 1; b < dir.size(); ++b) dir[b] += dir[b - 1];
    std::vector<uint32_t> pos(dir.begin(), dir.end() - 1);
    v.resize(in.size());
    for (auto& e : in) v[pos[e.first >> shift]++] = e;
    for (size_t b = 0; b + 1 < dir.size(); ++b)
      if (dir[b + 1] - dir[b] > 1) std::sort(v.begin() + dir[b], v.begin() + dir[b + 1]);
  }
  // The first entry with hash h (or a larger one: callers compare).
  std::vector<Entry>::const_iterator find(uint64_t h) const {
    const size_t b = h >> shift;
    return std::lower_bound(v.begin() + dir[b], v.begin() + dir[b + 1], Entry(h, 0));
  }
  std::vector<Entry>::const_iterator end() const { return v.end(); }
  // Cache hints for a lookup of h to come: its directory slot, then (once
  // that slot is cached) the start of its bucket.
  void prefetch_dir(uint64_t h) const { __builtin_prefetch(dir.data() + (h >> shift)); }
  void prefetch_bucket(uint64_t h) const {
    if (!v.empty()) __builtin_prefetch(v.data() + std::min<size_t>(dir[h >> shift], v.size() - 1));
  }
};

}  // namespace tenpak::dataset_internal
