#include "st_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tenpak/out_file.h"
#include "tenpak/safetensors.h"

namespace fs = std::filesystem;

namespace tenpak::quant {
namespace {

bool torch_type(DType d, torch::ScalarType& st) {
  switch (d) {
    case DType::F32: st = torch::kFloat32; return true;
    case DType::F16: st = torch::kFloat16; return true;
    case DType::BF16: st = torch::kBFloat16; return true;
    case DType::I32: st = torch::kInt32; return true;
    case DType::I8: st = torch::kInt8; return true;
    case DType::U8: st = torch::kUInt8; return true;
    case DType::I64: st = torch::kInt64; return true;
    case DType::I16: st = torch::kInt16; return true;
    case DType::F64: st = torch::kFloat64; return true;
    default: return false;
  }
}

bool st_type(torch::ScalarType st, DType& d) {
  switch (st) {
    case torch::kFloat32: d = DType::F32; return true;
    case torch::kFloat16: d = DType::F16; return true;
    case torch::kBFloat16: d = DType::BF16; return true;
    case torch::kInt32: d = DType::I32; return true;
    case torch::kInt8: d = DType::I8; return true;
    case torch::kUInt8: d = DType::U8; return true;
    case torch::kInt64: d = DType::I64; return true;
    case torch::kInt16: d = DType::I16; return true;
    case torch::kFloat64: d = DType::F64; return true;
    default: return false;
  }
}

}  // namespace

Status read_safetensors_all(const std::string& path, std::map<std::string, torch::Tensor>& out) {
  auto hdr = read_safetensors_header(path);
  if (!hdr.ok()) return hdr.status();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {Errc::io, path + ": cannot open: " + std::strerror(errno)};
  Status st;
  for (const auto& ti : hdr->tensors) {
    torch::ScalarType t;
    if (!torch_type(ti.dtype, t)) {
      st = {Errc::unsupported, path + ": tensor '" + ti.name + "' has dtype " + dtype_name(ti.dtype)};
      break;
    }
    if (out.count(ti.name)) {
      st = {Errc::corrupt, path + ": tensor '" + ti.name + "' appears in more than one shard"};
      break;
    }
    std::vector<int64_t> shape(ti.shape.begin(), ti.shape.end());
    auto x = torch::empty(shape, torch::TensorOptions().dtype(t));
    uint64_t done = 0;
    auto* dst = static_cast<char*>(x.data_ptr());
    while (done < ti.nbytes()) {
      ssize_t r = ::pread(fd, dst + done, ti.nbytes() - done, static_cast<off_t>(ti.begin + done));
      if (r <= 0) {
        st = {Errc::io, path + ": short read of tensor '" + ti.name + "'"};
        break;
      }
      done += static_cast<uint64_t>(r);
    }
    if (!st.ok()) break;
    out[ti.name] = x;
  }
  ::close(fd);
  return st;
}

Status read_model_tensors(const std::string& dir, std::map<std::string, torch::Tensor>& out) {
  const std::string index = (fs::path(dir) / "model.safetensors.index.json").string();
  std::vector<std::string> files;
  if (fs::exists(index)) {
    std::ifstream f(index, std::ios::binary);
    nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return {Errc::corrupt, index + ": not a safetensors index (no 'weight_map' object)"};
    std::set<std::string> names;
    for (auto& [k, v] : j["weight_map"].items())
      if (v.is_string()) names.insert(v.get<std::string>());
    for (auto& n : names) {
      auto p = (fs::path(dir) / n).string();
      if (!fs::exists(p)) return {Errc::invalid, index + ": names shard '" + n + "', which is missing"};
      files.push_back(p);
    }
  } else {
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
    if (ec) return {Errc::io, dir + ": " + ec.message()};
    std::sort(files.begin(), files.end());
    if (files.empty()) return {Errc::invalid, dir + ": no *.safetensors file"};
  }
  for (auto& f : files) TP_RETURN_IF_ERROR(read_safetensors_all(f, out));
  return Status::Ok();
}

Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<torch::Tensor> data;  // holds the contiguous copies the file is written from
  std::vector<SafetensorsTensor> st;
  for (auto& [name, t0] : tensors) {
    const torch::Tensor& t = data.emplace_back(t0.contiguous());
    SafetensorsTensor s{name, DType::unknown, std::vector<uint64_t>(t.sizes().begin(), t.sizes().end()), t.data_ptr()};
    if (!st_type(t.scalar_type(), s.dtype))
      return {Errc::invalid, path + ": tensor '" + name + "' has a dtype safetensors cannot hold"};
    st.push_back(std::move(s));
  }
  return write_safetensors_file(path, st);
}

}  // namespace tenpak::quant
