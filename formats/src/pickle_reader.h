// A restricted unpickler for the data.pkl of torch.save checkpoints.
//
// It NEVER executes anything: it builds a graph of plain values (Node) from
// the opcodes. GLOBAL only names a symbol; REDUCE (a call) is honoured only
// for the explicit allowlist below and refused otherwise with an error naming
// the global. Objects built by NEWOBJ or copyreg._reconstructor are kept as
// opaque records (class name + BUILD state), never instantiated.
//
// Globals and how they are treated:
//   call -> value  collections.OrderedDict (dict), builtins/__builtin__ set and
//                  frozenset (set), torch.Size (tuple), _codecs.encode (bytes),
//                  builtins.bytearray (bytes),
//                  torch._utils._rebuild_tensor_v2 / _rebuild_tensor (tensor),
//                  torch._utils._rebuild_parameter / _rebuild_parameter_with_state
//                  (the tensor argument), torch._tensor._rebuild_from_type_v2
//                  (applies its allowlisted rebuild function)
//   call -> opaque copyreg._reconstructor (object of the named class),
//                  numpy scalar/dtype/_reconstruct (numpy.core.multiarray.scalar,
//                  numpy._core.multiarray.scalar, numpy.dtype,
//                  numpy.core.multiarray._reconstruct, numpy._core...), torch.device,
//                  pathlib.{Path,PosixPath,WindowsPath,PurePath,PurePosixPath,
//                  PureWindowsPath}, datetime.{datetime,date,time,timedelta}:
//                  kept as opaque values, their arguments never interpreted
//   value          torch.*Storage, torch.cuda.*Storage, torch.UntypedStorage,
//                  torch.<dtype> (torch.float16, ...): storage types / dtypes
//   NEWOBJ         any class: an opaque object record
//   anything else  REDUCE refused: "pickle asks to call os.system: refused"
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tenpak/safetensors.h"
#include "tenpak/status.h"

namespace tenpak::pickle {

enum class Kind : uint8_t {
  none, boolean, integer, bigint, floating, str, bytes, tuple, list, dict, set,
  global,   // a symbol: str = module, str2 = name
  object,   // opaque instance: cls -> global, state = BUILD state, items/pairs from APPEND/SETITEM
  opaque,   // result of an allowlisted call whose value we do not model (numpy scalar, device)
  storage,  // persistent id of a torch storage: str = key, dtype, numel
  tensor,   // a view of a storage: ref = storage, offset, shape, stride
};

struct Node {
  Kind kind = Kind::none;
  DType dtype = DType::unknown;  // storage / tensor element type
  int64_t i = 0;                  // integer, boolean; storage numel; tensor storage offset
  double f = 0;
  std::string str, str2;
  std::vector<struct Node*> items;  // tuple/list/set elements; dict keys and values interleaved
  Node* ref = nullptr;              // object: class (global); tensor: storage
  Node* state = nullptr;            // object: BUILD state
  std::vector<uint64_t> shape, stride;
  std::string qualname() const { return str + "." + str2; }
};

struct Limits {
  size_t max_nodes = size_t{1} << 21;  // ~200 bytes each
  size_t max_stack = size_t{1} << 20;
  size_t max_marks = size_t{1} << 12;   // nesting depth of MARK groups
  size_t max_memo = size_t{1} << 20;
  uint64_t max_string = uint64_t{1} << 30;
};

// Owns every node; values are plain pointers into the arena (cycles are fine).
class Graph {
 public:
  Node* root = nullptr;
  Node* make(Kind k);
  size_t size() const { return nodes_.size(); }

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
};

// Parses `size` bytes of pickle. `file` names the input in errors. Errors:
// Errc::unsupported for anything understood but refused (calls not on the
// allowlist, unknown opcodes, unsupported storage types), Errc::corrupt for
// malformed streams and exceeded limits.
Status unpickle(const uint8_t* data, size_t size, const std::string& file, Graph& g, const Limits& lim = {});

// Dict lookup by string key (last occurrence wins, as SETITEM would).
Node* dict_get(const Node* dict, const std::string& key);

}  // namespace tenpak::pickle
