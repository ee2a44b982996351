// Safetensors header parsing with every check a hostile file needs.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak {

enum class DType : uint8_t {
  unknown = 0, F64 = 1, F32 = 2, F16 = 3, BF16 = 4, F8_E4M3 = 5, F8_E5M2 = 6,
  I64 = 7, I32 = 8, I16 = 9, I8 = 10, U8 = 11, BOOL = 12, U16 = 13, U32 = 14, U64 = 15,
};
constexpr uint8_t kMaxDType = 15;

size_t dtype_size(DType d);            // bytes per element, 0 for unknown
const char* dtype_name(DType d);       // safetensors spelling, e.g. "BF16"
DType dtype_from_name(const std::string& s);
bool dtype_is_float(DType d);

struct TensorInfo {
  std::string name;
  DType dtype = DType::unknown;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;  // absolute file offsets (8 + header_len + data_offsets)
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  uint64_t header_len = 0;   // N, the JSON length
  uint64_t data_start = 0;   // 8 + N
  std::vector<TensorInfo> tensors;  // sorted by begin
};

constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1000 * 1000;

// Reads the 8-byte length prefix. `file` names the file in errors.
Result<uint64_t> safetensors_header_len(const uint8_t* first8, uint64_t file_size, const std::string& file);

// Parses a full header: `json` holds the N bytes after the length prefix.
// Checks: valid JSON object, known dtypes, shape * element size == byte
// length, offsets inside the file, no overlaps.
Result<SafetensorsHeader> parse_safetensors_header(const char* json, uint64_t header_len, uint64_t file_size,
                                                   const std::string& file);

// Convenience: reads and parses the header of a file on disk.
Result<SafetensorsHeader> read_safetensors_header(const std::string& path);

// Serializes tensors (in the given order, contiguous) into a safetensors
// header, padded with spaces to 8-byte alignment. Offsets are assigned in
// the given order; `metadata` may be empty.
std::string make_safetensors_header(std::vector<TensorInfo>& tensors,
                                    const std::map<std::string, std::string>& metadata = {});

}  // namespace tenpak
