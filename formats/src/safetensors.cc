#include "tenpak/safetensors.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

namespace tenpak {

namespace {
struct DTypeRow { DType d; const char* name; size_t size; bool is_float; };
constexpr DTypeRow kRows[] = {
    {DType::F64, "F64", 8, true},        {DType::F32, "F32", 4, true},   {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},      {DType::F8_E4M3, "F8_E4M3", 1, true},
    {DType::F8_E5M2, "F8_E5M2", 1, true}, {DType::I64, "I64", 8, false}, {DType::I32, "I32", 4, false},
    {DType::I16, "I16", 2, false},       {DType::I8, "I8", 1, false},    {DType::U8, "U8", 1, false},
    {DType::BOOL, "BOOL", 1, false},     {DType::U16, "U16", 2, false},  {DType::U32, "U32", 4, false},
    {DType::U64, "U64", 8, false},
};
const DTypeRow* row(DType d) {
  for (auto& r : kRows) if (r.d == d) return &r;
  return nullptr;
}
}  // namespace

size_t dtype_size(DType d) { auto r = row(d); return r ? r->size : 0; }
const char* dtype_name(DType d) { auto r = row(d); return r ? r->name : "unknown"; }
bool dtype_is_float(DType d) { auto r = row(d); return r && r->is_float; }
DType dtype_from_name(const std::string& s) {
  for (auto& r : kRows) if (s == r.name) return r.d;
  return DType::unknown;
}

Result<uint64_t> safetensors_header_len(const uint8_t* p, uint64_t file_size, const std::string& file) {
  if (file_size < 8) return Status{Errc::corrupt, file + ": not a safetensors file: shorter than 8 bytes"};
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];
  if (n > kMaxSafetensorsHeader)
    return Status{Errc::corrupt, file + ": safetensors header of " + std::to_string(n) +
                                     " bytes is over the 100 MB limit"};
  if (n > file_size - 8)
    return Status{Errc::corrupt, file + ": safetensors header length " + std::to_string(n) +
                                     " runs past the end of the file (" + std::to_string(file_size) + " bytes)"};
  return n;
}

Result<SafetensorsHeader> parse_safetensors_header(const char* json, uint64_t n, uint64_t file_size,
                                                   const std::string& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json, json + n);
  } catch (const std::exception& e) {
    return Status{Errc::corrupt, file + ": safetensors header is not valid JSON: " + e.what()};
  }
  if (!j.is_object()) return Status{Errc::corrupt, file + ": safetensors header is not a JSON object"};
  SafetensorsHeader h;
  h.header_len = n;
  h.data_start = 8 + n;
  const uint64_t data_len = file_size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& v = it.value();
    auto bad = [&](const std::string& why) {
      return Status{Errc::corrupt, file + ": tensor '" + it.key() + "': " + why};
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      return bad("entry needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) return bad("dtype is not a string");
    TensorInfo t;
    t.name = it.key();
    t.dtype = dtype_from_name(v["dtype"].get<std::string>());
    if (t.dtype == DType::unknown) return bad("unsupported dtype " + v["dtype"].get<std::string>());
    if (!v["shape"].is_array()) return bad("shape is not an array");
    unsigned __int128 count = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) return bad("shape holds a non-integer");
      t.shape.push_back(d.get<uint64_t>());
      count *= d.get<uint64_t>();
      if (count > (static_cast<unsigned __int128>(1) << 62)) return bad("shape too large");
    }
    const auto& o = v["data_offsets"];
    if (!o.is_array() || o.size() != 2 || !o[0].is_number_unsigned() || !o[1].is_number_unsigned())
      return bad("data_offsets must be two unsigned integers");
    uint64_t b = o[0].get<uint64_t>(), e = o[1].get<uint64_t>();
    if (b > e || e > data_len)
      return bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] out of range (data is " +
                 std::to_string(data_len) + " bytes)");
    if (count * dtype_size(t.dtype) != e - b) return bad("byte length does not match dtype and shape");
    t.begin = h.data_start + b;
    t.end = h.data_start + e;
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < h.tensors.size(); ++i)
    if (h.tensors[i].begin < h.tensors[i - 1].end)
      return Status{Errc::corrupt, file + ": tensors '" + h.tensors[i - 1].name + "' and '" + h.tensors[i].name +
                                       "' overlap"};
  return h;
}

Result<SafetensorsHeader> read_safetensors_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status{Errc::io, path + ": cannot open"};
  f.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  uint8_t first[8] = {};
  f.read(reinterpret_cast<char*>(first), std::min<uint64_t>(8, size));
  auto n = safetensors_header_len(first, size, path);
  if (!n.ok()) return n.status();
  std::string json(*n, '\0');
  f.read(json.data(), static_cast<std::streamsize>(*n));
  if (!f) return Status{Errc::io, path + ": short read of the header"};
  return parse_safetensors_header(json.data(), *n, size, path);
}

std::string make_safetensors_header(std::vector<TensorInfo>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  // nlohmann::ordered_json keeps insertion order, so the file lists tensors in
  // the order given (as torch's state_dict would).
  nlohmann::ordered_json j;
  if (!metadata.empty()) j["__metadata__"] = metadata;
  uint64_t off = 0;
  for (auto& t : tensors) {
    uint64_t n = t.nbytes();
    j[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string s = j.dump();
  while ((s.size() + 8) % 8) s.push_back(' ');
  uint64_t n = s.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  uint64_t data_start = 8 + n;
  off = 0;
  for (auto& t : tensors) {
    uint64_t len = t.nbytes();
    t.begin = data_start + off;
    t.end = t.begin + len;
    off += len;
  }
  return out + s;
}

}  // namespace tenpak
