// PyTorch zip checkpoints (torch.save, `pytorch_model.bin`, `.pt`) read
// WITHOUT running pickle code: a restricted unpickler that understands
// tensors and plain containers (dict, list, tuple, OrderedDict, sets) and the
// state of pickled objects (nn.Module's _parameters/_buffers/_modules), and
// refuses any call it does not know with a clear error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/safetensors.h"
#include "tenpak/status.h"

namespace tenpak {

struct CheckpointTensor {
  std::string name;              // state_dict-style name, e.g. "model.0.conv.weight"
  DType dtype = DType::unknown;
  std::vector<uint64_t> shape;
  uint64_t file_offset = 0;      // where its bytes start inside the zip file
  uint64_t nbytes = 0;
  bool contiguous_in_file = false;  // row-major, dense, in a STORED entry
  // Where the view lives (checked to lie inside the storage's zip entry):
  // element (i0, i1, ...) is at storage_offset + sum(ik * stride[k]) elements
  // from storage_file_offset. Used to copy non-contiguous views.
  uint64_t storage_file_offset = 0;
  uint64_t storage_bytes = 0;       // size of the storage's zip entry
  uint64_t storage_offset = 0;      // in elements
  std::vector<uint64_t> stride;     // in elements
};

struct Checkpoint {
  std::vector<CheckpointTensor> tensors;  // in state_dict order
};

// Reads the zip's data.pkl with the restricted unpickler and locates every
// tensor. Which tensors: a plain state_dict; the "state_dict" entry of a dict;
// else its "model" entry (or "ema" when model is None); pickled nn.Module
// objects are named as their state_dict() would (parameters, persistent
// buffers, then sub-modules). Errors name `path` and the problem:
// Errc::unsupported for refused content (code, unknown opcodes or dtypes,
// compressed entries), Errc::corrupt for malformed or inconsistent files.
Result<Checkpoint> read_pytorch_checkpoint(const uint8_t* data, uint64_t size, const std::string& path);

// How a checkpoint served as it is (bit for bit) is cut for delta coding:
// ranges of the zip file, sorted and disjoint, one per storage its tensors
// view. The largest dense view inside a storage gives the range (its name,
// dtype, shape and bytes: coded like a safetensors tensor against the base
// tensor of that name); the storage's bytes outside it are left to the
// bytes between ranges. A storage that no dense, non-empty view covers
// (only strided views) gives one range over its whole entry with an EMPTY
// name: elements of its dtype (U8 when the entry is not whole elements),
// coded without a base. Everything not in a range (local headers, data.pkl,
// the central directory, storages no named tensor views) is structure,
// coded losslessly as bytes. The served bytes are the original's, so the
// zip's CRCs hold by construction.
std::vector<TensorInfo> checkpoint_storage_ranges(const Checkpoint& ck);

// A safetensors file with the checkpoint's tensors in state_dict order.
Result<std::vector<uint8_t>> checkpoint_to_safetensors(const Checkpoint& ck, const uint8_t* data,
                                                       const std::string& path);

}  // namespace tenpak
