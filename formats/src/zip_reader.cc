#include "zip_reader.h"

#include <array>

namespace tenpak::zip {
namespace {

uint64_t rd(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocSig = 0x07064b50, kZip64EocdSig = 0x06064b50,
                   kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

}  // namespace

uint32_t crc32(const uint8_t* p, uint64_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

Result<Archive> read_archive(const uint8_t* d, uint64_t size, const std::string& file) {
  auto bad = [&](const std::string& why) { return Status{Errc::corrupt, file + ": zip: " + why}; };
  if (size < 22) return bad("too short to be a zip archive (no end of central directory)");
  // The end-of-central-directory record sits in the last 22 + 65535 bytes.
  uint64_t eocd = UINT64_MAX;
  uint64_t lo = size >= 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t p = size - 22 + 1; p-- > lo;) {
    if (rd(d + p, 4) == kEocdSig && p + 22 + rd(d + p + 20, 2) <= size) { eocd = p; break; }
  }
  if (eocd == UINT64_MAX) return bad("no end of central directory record (truncated or not a zip archive)");
  uint64_t disk = rd(d + eocd + 4, 2), cd_disk = rd(d + eocd + 6, 2);
  uint64_t count = rd(d + eocd + 10, 2), cd_size = rd(d + eocd + 12, 4), cd_off = rd(d + eocd + 16, 4);
  if (eocd >= 20 && rd(d + eocd - 20, 4) == kZip64LocSig) {
    uint64_t z = rd(d + eocd - 20 + 8, 8);
    if (z > size || size - z < 56 || rd(d + z, 4) != kZip64EocdSig) return bad("zip64 end of central directory out of range");
    disk = rd(d + z + 16, 4);
    cd_disk = rd(d + z + 20, 4);
    count = rd(d + z + 32, 8);
    cd_size = rd(d + z + 40, 8);
    cd_off = rd(d + z + 48, 8);
  }
  if (disk != 0 || cd_disk != 0) return Status{Errc::unsupported, file + ": zip: multi-disk archives are not supported"};
  if (count > kMaxEntries) return bad(std::to_string(count) + " entries is over the limit");
  if (cd_off > size || cd_size > size - cd_off) return bad("central directory out of range");

  Archive a;
  a.entries.reserve(count);
  uint64_t p = cd_off, cd_end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - p < 46 || rd(d + p, 4) != kCentralSig) return bad("central directory entry " + std::to_string(i) + " is malformed");
    Entry e;
    e.flags = static_cast<uint16_t>(rd(d + p + 8, 2));
    e.method = static_cast<uint16_t>(rd(d + p + 10, 2));
    e.crc32 = static_cast<uint32_t>(rd(d + p + 16, 4));
    e.comp_size = rd(d + p + 20, 4);
    e.size = rd(d + p + 24, 4);
    uint64_t nlen = rd(d + p + 28, 2), xlen = rd(d + p + 30, 2), clen = rd(d + p + 32, 2);
    uint64_t local = rd(d + p + 42, 4);
    if (cd_end - p - 46 < nlen + xlen + clen) return bad("central directory entry " + std::to_string(i) + " runs past its end");
    e.name.assign(reinterpret_cast<const char*>(d + p + 46), nlen);
    // zip64 extra field: the 64-bit values of the fields saturated at 0xFFFFFFFF, in order.
    const uint8_t* x = d + p + 46 + nlen;
    for (uint64_t q = 0; q + 4 <= xlen;) {
      uint64_t id = rd(x + q, 2), len = rd(x + q + 2, 2);
      if (q + 4 + len > xlen) return bad("entry '" + e.name + "': extra field runs past its end");
      if (id == 1) {
        const uint8_t* z = x + q + 4;
        uint64_t used = 0;
        auto take = [&](uint64_t& v) -> bool {
          if (v != 0xFFFFFFFFu) return true;
          if (used + 8 > len) return false;
          v = rd(z + used, 8);
          used += 8;
          return true;
        };
        if (!take(e.size) || !take(e.comp_size) || !take(local)) return bad("entry '" + e.name + "': short zip64 extra field");
      }
      q += 4 + len;
    }
    p += 46 + nlen + xlen + clen;
    if (e.flags & 1) return Status{Errc::unsupported, file + ": zip: entry '" + e.name + "' is encrypted"};
    if (local > size || size - local < 30 || rd(d + local, 4) != kLocalSig)
      return bad("entry '" + e.name + "': local header out of range");
    uint64_t lnlen = rd(d + local + 26, 2), lxlen = rd(d + local + 28, 2);
    e.data_offset = local + 30 + lnlen + lxlen;
    if (e.data_offset > size || e.comp_size > size - e.data_offset)
      return bad("entry '" + e.name + "': data (" + std::to_string(e.comp_size) + " bytes at " +
                 std::to_string(e.data_offset) + ") runs past the end of the file (" + std::to_string(size) + " bytes)");
    if (e.method == 0 && e.comp_size != e.size) return bad("entry '" + e.name + "': STORED with different sizes");
    if (!a.by_name.emplace(e.name, a.entries.size()).second) return bad("entry '" + e.name + "' appears twice");
    a.entries.push_back(std::move(e));
  }
  return a;
}

}  // namespace tenpak::zip
