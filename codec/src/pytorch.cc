#include "tenpak/pytorch.h"

namespace tenpak {

Result<Checkpoint> read_pytorch_checkpoint(const uint8_t*, uint64_t, const std::string& path) {
  return Status{Errc::unsupported, path + ": PyTorch checkpoints are not read yet"};
}

Result<std::vector<uint8_t>> checkpoint_to_safetensors(const Checkpoint&, const uint8_t*, const std::string& path) {
  return Status{Errc::unsupported, path + ": PyTorch checkpoints are not read yet"};
}

}  // namespace tenpak
