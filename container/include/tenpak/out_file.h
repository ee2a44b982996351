// Writing an output file: errors name the file, a full disk is Errc::no_space.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/safetensors.h"
#include "tenpak/status.h"

namespace tenpak {

// A file being written; the error it reports names the file and maps
// ENOSPC/EDQUOT to Errc::no_space. Closing is explicit so errors surface.
class OutFileWriter {
 public:
  OutFileWriter() = default;
  ~OutFileWriter();
  OutFileWriter(const OutFileWriter&) = delete;
  OutFileWriter& operator=(const OutFileWriter&) = delete;
  Status open(const std::string& path, unsigned mode = 0644);
  Status write(const void* p, size_t n);
  Status close();  // flush + fsync + close
  uint64_t written() const { return written_; }

 private:
  Status error(const char* what, int err);
  int fd_ = -1;
  std::string path_;
  uint64_t written_ = 0;
  uint64_t synced_ = 0;  // writeback started up to here
};

// Writes `parts` one after another to PATH.tenpak-tmp-PID, then renames it
// to `path`: a reader never sees a partial file under the final name, and on
// any error the temporary file is removed.
Status write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts);

// One tensor of a safetensors file: numel(shape) * dtype_size(dtype) bytes
// at `data`, row-major.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::unknown;
  std::vector<uint64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file of `tensors`, stored in the order given, through
// write_file_atomic. The default metadata {"format": "pt"} is what
// safetensors.torch and transformers' save_pretrained write; transformers
// before 4.48 refuses a file without it (docs/FORMAT.md).
Status write_safetensors_file(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace tenpak
