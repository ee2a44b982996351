// Codec 10, method bit 5 (snappy pages): B from snappy-compressed extents and
// the re-compressed output. patch_snappy.h states the contract.
#include "patch_snappy.h"

#include <snappy-sinksource.h>
#include <snappy.h>

#include <cstring>

#include "tenpak/scratch.h"

namespace tenpak::patch_detail {

bool snappy_layout(const std::vector<PatchExtent>& ext, const uint8_t* raw, std::vector<uint64_t>& starts) {
  starts.resize(ext.size() + 1);
  uint64_t total = 0, at = 0;
  for (size_t i = 0; i < ext.size(); ++i) {
    size_t len = 0;
    if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(raw + at), ext[i].len, &len)) return false;
    starts[i] = total;
    total += len;
    if (total > kMaxPatchBase) return false;
    at += ext[i].len;
  }
  starts[ext.size()] = total;
  return true;
}

bool snappy_expand(const std::vector<PatchExtent>& ext, const uint8_t* raw, const std::vector<uint64_t>& starts,
                   uint8_t* b) {
  uint64_t at = 0;
  for (size_t i = 0; i < ext.size(); ++i) {
    const char* s = reinterpret_cast<const char*>(raw + at);
    at += ext[i].len;
    // RawUncompress checks every copy and literal against the stream and the
    // preamble's length: corrupt input returns false, it never reads or
    // writes outside the buffers.
    if (!snappy::RawUncompress(s, ext[i].len, reinterpret_cast<char*>(b + starts[i]))) return false;
  }
  return true;
}

namespace {

// snappy::Compress's output written straight into [p, p + cap): each block
// is compressed in place when its worst case fits, else into snappy's
// scratch and copied if it does fit. Past cap: only the count goes on.
class BoundedSink final : public snappy::Sink {
 public:
  BoundedSink(char* p, size_t cap) : p_(p), cap_(cap) {}
  void Append(const char* bytes, size_t n) override {
    if (!over_ && n <= cap_ - pos_) {
      if (bytes != p_ + pos_) std::memcpy(p_ + pos_, bytes, n);
      pos_ += n;
    } else {
      over_ = true;
    }
  }
  char* GetAppendBuffer(size_t length, char* scratch) override {
    return !over_ && length <= cap_ - pos_ ? p_ + pos_ : scratch;
  }
  bool fits_exactly() const { return !over_ && pos_ == cap_; }

 private:
  char* p_;
  size_t cap_, pos_ = 0;
  bool over_ = false;
};

}  // namespace

bool snappy_output(const uint8_t* inner, uint64_t inner_len, uint64_t raw_len, uint8_t* out, uint64_t out_len) {
  if (raw_len > inner_len || raw_len > out_len) return false;
  std::memmove(out, inner, raw_len);
  snappy::ByteArraySource src(reinterpret_cast<const char*>(inner + raw_len), inner_len - raw_len);
  BoundedSink sink(reinterpret_cast<char*>(out + raw_len), out_len - raw_len);
  snappy::Compress(&src, &sink);
  return sink.fits_exactly();
}

}  // namespace tenpak::patch_detail
