#include "tenpak/block_source.h"

#include <algorithm>
#include <vector>

namespace tenpak {

Result<Sha256> sha256_of(BlockSource& src, const std::function<void(uint64_t)>& on_bytes) {
  constexpr uint64_t kChunk = 4 << 20;
  Sha256Hasher h;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kChunk, src.size())));
  for (uint64_t p = 0; p < src.size(); p += kChunk) {
    size_t n = static_cast<size_t>(std::min(kChunk, src.size() - p));
    TP_RETURN_IF_ERROR(src.read(p, n, buf.data()));
    h.update(buf.data(), n);
    if (on_bytes) on_bytes(n);
  }
  return h.finish();
}

}  // namespace tenpak
