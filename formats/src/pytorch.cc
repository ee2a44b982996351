// PyTorch zip checkpoints: zip directory -> restricted unpickle of data.pkl
// -> which tensors and their names -> where their bytes are in the file.
#include "tenpak/pytorch.h"

#include <cstring>
#include <map>
#include <unordered_set>

#include "pickle_reader.h"
#include "zip_reader.h"

namespace tenpak {
namespace {

using pickle::Kind;
using pickle::Node;

constexpr size_t kMaxDepth = 256;            // nesting of modules/containers when naming tensors
constexpr uint64_t kMaxVisits = 1u << 24;    // object graph walk budget (shared sub-graphs)
constexpr size_t kMaxTensors = 1u << 20;
constexpr size_t kMaxName = 4096;
constexpr uint64_t kMaxNameBytes = 64u << 20;  // all names together
// Views may share storages (tied weights), but the tensors' total size is
// bounded by a multiple of the file so that a tiny file cannot ask for a
// huge conversion.
constexpr uint64_t kMaxViewFactor = 8;

// Walks the selected object like torch's state_dict() / a nested dict and
// collects (name, tensor) in order.
class Namer {
 public:
  explicit Namer(const std::string& file) : file_(file) {}
  std::vector<std::pair<std::string, const Node*>> out;

  Status collect(const Node* v, const std::string& name, size_t depth) {
    if (++visits_ > kMaxVisits) return Status{Errc::corrupt, file_ + ": data.pkl object graph is too large to walk"};
    if (depth > kMaxDepth) return Status{Errc::corrupt, file_ + ": data.pkl nests containers deeper than " + std::to_string(kMaxDepth)};
    switch (v->kind) {
      case Kind::tensor:
        if (name.size() > kMaxName)
          return Status{Errc::unsupported, file_ + ": a tensor name is longer than " + std::to_string(kMaxName) + " bytes"};
        if (out.size() >= kMaxTensors) return Status{Errc::corrupt, file_ + ": more than " + std::to_string(kMaxTensors) + " tensors"};
        if ((name_bytes_ += name.size()) > kMaxNameBytes) return Status{Errc::corrupt, file_ + ": tensor names too large in total"};
        out.emplace_back(name, v);
        return Status::Ok();
      case Kind::object: {
        const Node* st = module_state(v);
        if (!st) return Status::Ok();  // an opaque non-module object: holds no state_dict tensors
        return guarded(v, [&] { return module(st, name, depth); });
      }
      case Kind::dict:
        return guarded(v, [&]() -> Status {
          for (size_t k = 0; k + 1 < v->items.size(); k += 2) {
            std::string key;
            if (!key_string(v->items[k], key)) continue;
            TP_RETURN_IF_ERROR(collect(v->items[k + 1], join(name, key), depth + 1));
          }
          return Status::Ok();
        });
      case Kind::list: case Kind::tuple:
        return guarded(v, [&]() -> Status {
          for (size_t k = 0; k < v->items.size(); ++k)
            TP_RETURN_IF_ERROR(collect(v->items[k], join(name, std::to_string(k)), depth + 1));
          return Status::Ok();
        });
      default:
        return Status::Ok();
    }
  }

  // The state dict of a pickled nn.Module, or null when `v` is not one.
  static const Node* module_state(const Node* v) {
    const Node* st = v->state;
    if (st && st->kind == Kind::tuple && !st->items.empty()) st = st->items[0];  // (dict, slots)
    if (!st || st->kind != Kind::dict) return nullptr;
    if (!pickle::dict_get(st, "_parameters") && !pickle::dict_get(st, "_modules")) return nullptr;
    return st;
  }

 private:
  // Names past the limit are cut to kMaxName + 1 bytes (refused if a tensor
  // gets one), so deep nesting of long keys cannot grow memory.
  static std::string join(const std::string& a, const std::string& b) {
    std::string s = a.empty() ? b.substr(0, kMaxName + 1) : a + "." + b.substr(0, kMaxName + 1);
    if (s.size() > kMaxName) s.resize(kMaxName + 1);
    return s;
  }
  static bool key_string(const Node* k, std::string& out) {
    if (k->kind == Kind::str) { out = k->str; return true; }
    if (k->kind == Kind::integer) { out = std::to_string(k->i); return true; }
    return false;
  }
  // Refuses cycles (a container inside itself); shared sub-graphs are walked
  // once per path, as state_dict() names tied modules under each name.
  template <class F>
  Status guarded(const Node* v, F&& f) {
    if (!active_.insert(v).second) return Status{Errc::corrupt, file_ + ": data.pkl object graph contains a cycle"};
    Status s = f();
    active_.erase(v);
    return s;
  }
  // nn.Module._save_to_state_dict: parameters, persistent buffers, then children.
  Status module(const Node* st, const std::string& name, size_t depth) {
    const Node* params = pickle::dict_get(st, "_parameters");
    const Node* buffers = pickle::dict_get(st, "_buffers");
    const Node* mods = pickle::dict_get(st, "_modules");
    const Node* nonpersist = pickle::dict_get(st, "_non_persistent_buffers_set");
    auto each = [&](const Node* d, bool skip_nonpersistent, bool tensors) -> Status {
      if (!d || d->kind != Kind::dict) return Status::Ok();
      for (size_t k = 0; k + 1 < d->items.size(); k += 2) {
        std::string key;
        if (!key_string(d->items[k], key)) continue;
        const Node* val = d->items[k + 1];
        if (skip_nonpersistent && nonpersist && nonpersist->kind == Kind::set) {
          bool skip = false;
          for (const Node* n : nonpersist->items) skip |= n->kind == Kind::str && n->str == key;
          if (skip) continue;
        }
        if (tensors && val->kind != Kind::tensor) continue;  // None (or anything else) is not saved
        if (!tensors && val->kind != Kind::object) continue;
        TP_RETURN_IF_ERROR(collect(val, join(name, key), depth + 1));
      }
      return Status::Ok();
    };
    TP_RETURN_IF_ERROR(each(params, false, true));
    TP_RETURN_IF_ERROR(each(buffers, true, true));
    return each(mods, false, false);
  }

  const std::string& file_;
  uint64_t visits_ = 0, name_bytes_ = 0;
  std::unordered_set<const Node*> active_;
};

// Which part of the pickled object holds the model's tensors.
const Node* select_root(const Node* root) {
  if (root->kind != Kind::dict) return root;
  auto usable = [](const Node* n) { return n && n->kind != Kind::none; };
  if (const Node* sd = pickle::dict_get(root, "state_dict"); usable(sd)) return sd;
  if (const Node* m = pickle::dict_get(root, "model"); usable(m)) return m;
  if (const Node* e = pickle::dict_get(root, "ema"); usable(e)) return e;
  return root;
}

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
// names go into a JSON header.
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

}  // namespace

Result<Checkpoint> read_pytorch_checkpoint(const uint8_t* data, uint64_t size, const std::string& path) {
  if (size >= 2 && data[0] == 0x80 && data[1] <= 5)
    return Status{Errc::unsupported, path + ": legacy (pre-1.6, non-zip) torch.save format is not supported"};
  if (size < 4 || std::memcmp(data, "PK\x03\x04", 4) != 0)
    return Status{Errc::corrupt, path + ": not a PyTorch zip checkpoint (no zip signature)"};
  auto ar = zip::read_archive(data, size, path);
  if (!ar.ok()) return ar.status();

  // torch.save writes <root>/data.pkl, <root>/data/<key>, <root>/byteorder, <root>/version.
  std::string prefix;
  const zip::Entry* pkl = nullptr;
  for (auto& e : ar->entries) {
    auto slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    if (pkl) return Status{Errc::corrupt, path + ": the zip holds two data.pkl entries"};
    pkl = &e;
    prefix = e.name.substr(0, slash + 1);
  }
  if (!pkl) return Status{Errc::corrupt, path + ": the zip holds no <root>/data.pkl: not a torch.save checkpoint"};
  if (pkl->method != 0)
    return Status{Errc::unsupported, path + ": " + pkl->name + " is compressed (method " + std::to_string(pkl->method) +
                                         "); only STORED entries are supported"};
  const uint8_t* pk = data + pkl->data_offset;
  if (zip::crc32(pk, pkl->size) != pkl->crc32) return Status{Errc::corrupt, path + ": " + pkl->name + ": CRC mismatch"};
  if (const zip::Entry* bo = ar->find(prefix + "byteorder")) {
    std::string order(reinterpret_cast<const char*>(data + bo->data_offset), bo->method == 0 ? bo->size : 0);
    if (order != "little")
      return Status{Errc::unsupported, path + ": byteorder '" + order + "' is not supported (only little-endian)"};
  }

  pickle::Graph g;
  TP_RETURN_IF_ERROR(pickle::unpickle(pk, pkl->size, path, g));
  Namer namer(path);
  TP_RETURN_IF_ERROR(namer.collect(select_root(g.root), "", 0));
  if (namer.out.empty()) return Status{Errc::unsupported, path + ": the checkpoint holds no tensors this reader can name"};

  Checkpoint ck;
  std::unordered_set<std::string> names;
  uint64_t total_bytes = 0;
  for (auto& [name, t] : namer.out) {
    auto bad = [&, &name = name](const std::string& why) { return Status{Errc::corrupt, path + ": tensor '" + name + "': " + why}; };
    if (!names.insert(name).second) return bad("name appears twice");
    if (name.empty() || name == "__metadata__" || name.size() > kMaxName || !valid_utf8(name))
      return Status{Errc::unsupported, path + ": a tensor name is empty, reserved, too long or not UTF-8"};
    const Node* s = t->ref;
    const zip::Entry* e = ar->find(prefix + "data/" + s->str);
    if (!e) return bad("its storage '" + s->str + "' is missing from the zip (" + prefix + "data/" + s->str + ")");
    if (e->method != 0)
      return Status{Errc::unsupported, path + ": storage " + e->name + " is compressed (method " +
                                           std::to_string(e->method) + "); only STORED entries are supported"};
    const uint64_t w = dtype_size(t->dtype);
    uint64_t storage_bytes;
    if (!mul_ok(static_cast<uint64_t>(s->i), w, storage_bytes) || storage_bytes > e->size)
      return bad("storage '" + s->str + "' declares " + std::to_string(s->i) + " elements but its zip entry holds " +
                 std::to_string(e->size) + " bytes");
    // Extent of the view in elements: offset + sum((size-1)*stride) + 1.
    uint64_t numel = 1, last = static_cast<uint64_t>(t->i);
    bool empty = false, overflow = false;
    for (size_t k = 0; k < t->shape.size(); ++k) {
      overflow |= !mul_ok(numel, t->shape[k], numel);
      if (t->shape[k] == 0) { empty = true; continue; }
      uint64_t span;
      overflow |= !mul_ok(t->shape[k] - 1, t->stride[k], span) || __builtin_add_overflow(last, span, &last);
    }
    uint64_t nbytes;
    if (overflow || !mul_ok(numel, w, nbytes)) return bad("shape or strides overflow");
    if (!empty && last >= static_cast<uint64_t>(s->i))
      return bad("view needs element " + std::to_string(last) + " of storage '" + s->str + "', which holds " +
                 std::to_string(s->i) + " (storage too small for the tensor)");
    // Row-major dense? Dimensions of size 1 may carry any stride.
    bool dense = true;
    uint64_t expect = 1;
    for (size_t k = t->shape.size(); k-- > 0;) {
      if (t->shape[k] != 1 && t->stride[k] != expect) dense = false;
      expect *= t->shape[k];
    }
    total_bytes += nbytes;
    if (total_bytes > kMaxViewFactor * size + (1u << 20))
      return Status{Errc::unsupported, path + ": tensors view the same storages too many times (" +
                                           std::to_string(total_bytes) + " bytes of tensors in a " + std::to_string(size) +
                                           "-byte file)"};
    CheckpointTensor ct;
    ct.name = name;
    ct.dtype = t->dtype;
    ct.shape = t->shape;
    ct.nbytes = nbytes;
    ct.storage_file_offset = e->data_offset;
    ct.storage_bytes = e->size;
    ct.storage_offset = static_cast<uint64_t>(t->i);
    ct.stride = t->stride;
    ct.contiguous_in_file = dense || empty;
    ct.file_offset = e->data_offset + (empty ? 0 : ct.storage_offset * w);
    ck.tensors.push_back(std::move(ct));
  }
  return ck;
}

std::vector<TensorInfo> checkpoint_storage_ranges(const Checkpoint& ck) {
  // Views grouped by storage (its entry's data offset), in state_dict order
  // within each: on equal sizes the first view names the range.
  std::map<uint64_t, std::vector<const CheckpointTensor*>> storages;
  for (auto& t : ck.tensors)
    if (t.storage_bytes > 0) storages[t.storage_file_offset].push_back(&t);
  std::vector<TensorInfo> out;
  uint64_t prev_end = 0;
  for (auto& [off, views] : storages) {
    const CheckpointTensor* best = nullptr;
    for (const CheckpointTensor* v : views)
      if (v->contiguous_in_file && v->nbytes > 0 && (!best || v->nbytes > best->nbytes)) best = v;
    TensorInfo ti;
    if (best) {
      ti.name = best->name;
      ti.dtype = best->dtype;
      ti.shape = best->shape;
      ti.begin = best->file_offset;
      ti.end = best->file_offset + best->nbytes;
    } else {
      const CheckpointTensor& v = *views.front();
      const uint64_t w = dtype_size(v.dtype);
      const bool whole = w > 0 && v.storage_bytes % w == 0;
      ti.dtype = whole ? v.dtype : DType::U8;
      ti.shape = {whole ? v.storage_bytes / w : v.storage_bytes};
      ti.begin = off;
      ti.end = off + v.storage_bytes;
    }
    // Entries of a well-formed zip never overlap; a crafted one may: the
    // later range is then left to the structure bytes.
    if (ti.begin < prev_end) continue;
    prev_end = ti.end;
    out.push_back(std::move(ti));
  }
  return out;
}

Result<std::vector<uint8_t>> checkpoint_to_safetensors(const Checkpoint& ck, const uint8_t* data, const std::string& path) {
  std::vector<TensorInfo> infos;
  infos.reserve(ck.tensors.size());
  for (auto& t : ck.tensors) {
    TensorInfo i;
    i.name = t.name;
    i.dtype = t.dtype;
    i.shape = t.shape;
    i.begin = 0;
    i.end = t.nbytes;
    infos.push_back(std::move(i));
  }
  // {"format": "pt"}: what safetensors.torch / transformers' save_pretrained
  // write; transformers before 4.48 refuses a file without it (docs/FORMAT.md).
  std::string head = make_safetensors_header(infos, {{"format", "pt"}});
  uint64_t total = head.size();
  for (auto& i : infos) total += i.nbytes();
  std::vector<uint8_t> out(total);
  std::memcpy(out.data(), head.data(), head.size());
  for (size_t n = 0; n < ck.tensors.size(); ++n) {
    const CheckpointTensor& t = ck.tensors[n];
    uint8_t* dst = out.data() + infos[n].begin;
    if (t.contiguous_in_file) {
      std::memcpy(dst, data + t.file_offset, t.nbytes);
      continue;
    }
    // Strided view: copy element by element in row-major order (bounds were
    // checked by read_pytorch_checkpoint).
    const size_t w = dtype_size(t.dtype), rank = t.shape.size();
    const uint64_t count = w ? t.nbytes / w : 0;
    std::vector<uint64_t> idx(rank, 0);
    uint64_t src = t.storage_offset;
    for (uint64_t e = 0; e < count; ++e) {
      std::memcpy(dst + e * w, data + t.storage_file_offset + src * w, w);
      for (size_t k = rank; k-- > 0;) {  // odometer increment
        if (++idx[k] < t.shape[k]) { src += t.stride[k]; break; }
        src -= (t.shape[k] - 1) * t.stride[k];
        idx[k] = 0;
      }
    }
  }
  (void)path;
  return out;
}

}  // namespace tenpak
