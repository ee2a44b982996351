// Read-only view of a zip archive held in memory (a mapped torch.save file):
// the central directory, zip64 included, with every offset and size checked
// against the buffer. Entries are not decompressed here.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::zip {

struct Entry {
  std::string name;
  uint16_t method = 0;        // 0 = STORED, 8 = DEFLATE, ...
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t comp_size = 0;
  uint64_t size = 0;          // uncompressed
  uint64_t data_offset = 0;   // first byte of the (compressed) data in the archive
};

struct Archive {
  std::vector<Entry> entries;                        // central directory order
  std::unordered_map<std::string, size_t> by_name;   // name -> index in entries
  const Entry* find(const std::string& name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : &entries[it->second];
  }
};

constexpr uint64_t kMaxEntries = 1u << 20;

// Errc::corrupt for anything malformed or out of bounds (truncated files
// included); Errc::unsupported for multi-disk or encrypted archives.
Result<Archive> read_archive(const uint8_t* data, uint64_t size, const std::string& file);

uint32_t crc32(const uint8_t* p, uint64_t n);

}  // namespace tenpak::zip
