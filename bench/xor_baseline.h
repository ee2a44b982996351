// The XOR/byte-plane baseline that the codec benchmarks compare TenPak with
// (ZipLLM/BitX): tensors matched by name with the same dtype and shape are
// XORed with the base; every tensor is split into byte planes; the planes of
// equal significance (per element width) are concatenated and each stream is
// compressed with zstd -19. Bytes outside tensors, and files without tensors:
// zstd -19 as they are. One definition for codec_bench and ckpt_bench, so
// their "/ XOR" columns measure the same thing.
#pragma once
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tenpak/model.h"

namespace tenpak::bench {

inline size_t zstd19(const uint8_t* p, size_t n) {
  std::vector<uint8_t> out(ZSTD_compressBound(n));
  size_t r = ZSTD_compress(out.data(), out.size(), p, n, 19);
  return ZSTD_isError(r) ? n : r;
}

// Bytes of the baseline for `ft` against `base`, both loaded as the caller
// wants them served. A tensor with an empty name (a checkpoint storage no
// state_dict entry names) is never matched.
inline uint64_t xor_planes_size(const Model& base, const Model& ft) {
  std::map<std::string, std::pair<const ModelFile*, const TensorInfo*>> bt;
  for (auto& f : base.files)
    for (auto& t : f->header.tensors) bt[t.name] = {f.get(), &t};
  std::map<std::pair<size_t, size_t>, std::vector<uint8_t>> streams;  // (width, plane) -> bytes
  std::vector<uint8_t> rest;
  for (auto& f : ft.files) {
    const uint8_t* p = f->bytes();
    uint64_t pos = 0;
    for (auto& t : f->header.tensors) {
      if (t.begin > pos) rest.insert(rest.end(), p + pos, p + t.begin);
      const size_t w = dtype_size(t.dtype), n = t.nbytes();
      const uint8_t* b = nullptr;
      if (auto it = bt.find(t.name); !t.name.empty() && it != bt.end() && it->second.second->dtype == t.dtype &&
                                     it->second.second->shape == t.shape)
        b = it->second.first->bytes() + it->second.second->begin;
      for (size_t k = 0; k < w; ++k) {
        auto& s = streams[{w, k}];
        for (size_t i = k; i < n; i += w) s.push_back(b ? uint8_t(p[t.begin + i] ^ b[i]) : p[t.begin + i]);
      }
      pos = std::max(pos, t.end);
    }
    if (pos < f->size) rest.insert(rest.end(), p + pos, p + f->size);
  }
  uint64_t total = zstd19(rest.data(), rest.size());
  for (auto& [k, s] : streams) total += zstd19(s.data(), s.size());
  return total;
}

}  // namespace tenpak::bench
