// Parquet pages for dataset deltas (private to dataset/): where a Parquet
// file's snappy-compressed pages are, and which pages of a base file a
// derived page most likely came from. Builder side only: the decoder knows
// nothing of Parquet (codec 10's snappy pages, docs/FORMAT.md).
//
// The footer (FileMetaData) and page headers are Thrift compact protocol
// (https://github.com/apache/parquet-format, parquet.thrift; compact
// protocol: https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md).
// Only the fields needed here are read; every other field is skipped by its
// type. A file that does not parse, or whose column chunks or pages do not
// lie where its footer says, is not Parquet here: the caller codes it as an
// ordinary file (never an error).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "hash_index.h"

namespace tenpak::parquet {

constexpr uint32_t kCodecSnappy = 1;                 // CompressionCodec.SNAPPY
constexpr uint8_t kDataPage = 0, kDictionaryPage = 2;  // PageType (DATA_PAGE_V2 = 3 is left to chunks)

struct Page {
  uint64_t hdr = 0;        // file offset of its PageHeader
  uint64_t body = 0;       // file offset of its body (compressed_page_size bytes)
  uint32_t body_len = 0;   // compressed_page_size
  uint32_t raw_len = 0;    // uncompressed_page_size
  uint32_t row_group = 0, column = 0, ordinal = 0;  // column: index in its row group
  uint8_t type = 0;        // PageType
  uint32_t codec = 0;      // the column chunk's CompressionCodec
  uint64_t end() const { return body + body_len; }
  // A snappy data page (v1) or dictionary page: the kind coded decompressed.
  bool eligible() const { return codec == kCodecSnappy && (type == kDataPage || type == kDictionaryPage); }
};

// Every page of every column chunk, sorted by offset; false when the file is
// not Parquet as understood here (see above).
bool list_pages(const uint8_t* p, uint64_t n, std::vector<Page>& out);

// The hashes of p[0, n)'s content anchors (PageIndex's, below), in position
// order, by the scan `level` asks for where the CPU has it (0: scalar, 1:
// AVX-512); every level selects the same anchors. For tests.
std::vector<uint64_t> anchors_of(const uint8_t* p, uint64_t n, int level);

// The snappy body of a page decompressed into out[0, raw_len) (false: not
// snappy, or not uncompressed_page_size bytes).
bool unsnappy_to(const uint8_t* body, uint32_t len, uint32_t raw_len, uint8_t* out);
// The same, appended to `out` (false: as above, `out` then holds garbage past its old size).
bool unsnappy_append(const uint8_t* body, uint32_t len, uint32_t raw_len, std::string& out);

// The eligible pages of a base file with content anchors of their
// decompressed bytes (16-byte windows at positions whose first 8 bytes hash
// into 1/128 of the range), to find the base pages a derived page shares content with. A column's
// pages are decompressed and anchored on the first choose() for that column
// (thread-safe): columns with no changed page cost nothing (pq-column: the
// question column, 40% of the base's text, was indexed for nothing).
class PageIndex {
 public:
  bool build(const uint8_t* p, uint64_t n);
  const std::vector<Page>& pages() const { return pages_; }
  // Base pages (indices into pages()) for a derived page `d` whose
  // decompressed bytes are `raw`: the pages of the same column sharing most
  // anchors with it (at least 2, and a quarter of the top page's count),
  // most first, while their decompressed sizes sum to at most `budget`; with none, the page of the same column at the same row
  // group and position (else that column's last page of the same type), for
  // its values' vocabulary.
  // `shared`, when given, gets the share of the page's anchors (looked up)
  // that the most voted page holds (0 with none looked up).
  std::vector<uint32_t> choose(const Page& d, std::string_view raw, uint64_t budget, double* shared = nullptr) const;
  // Base page k's decompressed body appended to `out`, for a k that choose()
  // returned: the bytes its column's indexing decompressed when they were
  // kept (up to kKeepRaw bytes an index), else decompressed again. False as
  // unsnappy_append.
  bool append_raw(uint32_t k, std::string& out) const;
  // Decompressed base pages an index keeps for append_raw: the builder's B
  // was each changed page's candidates decompressed a second time (6% of
  // pq-column's build). Pages past it are decompressed again when asked.
  static constexpr uint64_t kKeepRaw = 64u << 20;
  // Base page k's decompressed body where the index keeps it (raw_len
  // bytes, valid while the index lives), else null; for a k that choose()
  // returned (its column is indexed).
  const uint8_t* kept_raw(uint32_t k) const { return raw_[k]; }
  // A base page (index into pages()) whose compressed body is these bytes,
  // or -1: such a page is a copy, not worth decompressing.
  int64_t same_body(const uint8_t* body, uint32_t len) const;

 private:
  struct FreeBytes {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  struct Column {
    std::once_flag once;
    dataset_internal::HashIndex anchors;  // (anchor hash, page)
    std::unique_ptr<uint8_t, FreeBytes> kept;  // the decompressed pages kept (raw_ points into it)
  };
  const Column& column(uint32_t c) const;
  const uint8_t* base_ = nullptr;
  std::vector<Page> pages_;
  // 1: decompressed to raw_len; written by column() under the column's
  // once_flag, read only after it (each element by its own column).
  mutable std::vector<uint8_t> usable_;
  // Page k's decompressed body when kept (written with usable_[k]);
  // kept_ bytes in all, reserved under keep_mu_ (columns index in parallel).
  mutable std::vector<const uint8_t*> raw_;
  mutable std::mutex keep_mu_;
  mutable uint64_t kept_ = 0;
  std::vector<std::pair<uint64_t, uint32_t>> bodies_;  // (xxh64 of the compressed body, page), sorted
  std::unique_ptr<Column[]> columns_;
  uint32_t column_count_ = 0;
};

}  // namespace tenpak::parquet
