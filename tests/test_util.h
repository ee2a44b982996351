#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tenpak/safetensors.h"

namespace tptest {

inline std::string temp_dir(const std::string& tag) {
  std::string t = (std::filesystem::temp_directory_path() / ("tenpak-test-" + tag + "-XXXXXX")).string();
  std::vector<char> buf(t.begin(), t.end());
  buf.push_back('\0');
  return ::mkdtemp(buf.data());
}

inline void write_file(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), data.size());
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

struct T {
  std::string name;
  tenpak::DType dtype;
  std::vector<uint64_t> shape;
  std::string bytes;
};

// A safetensors file from the given tensors (in order).
inline std::string make_st(std::vector<T> ts) {
  std::vector<tenpak::TensorInfo> infos;
  for (auto& t : ts) {
    tenpak::TensorInfo i;
    i.name = t.name;
    i.dtype = t.dtype;
    i.shape = t.shape;
    i.begin = 0;
    i.end = t.bytes.size();
    infos.push_back(i);
  }
  std::string out = tenpak::make_safetensors_header(infos);
  for (auto& t : ts) out += t.bytes;
  return out;
}

// Random float32 weights ~ N(0, 0.02) as bytes of dtype `dt` (F32/BF16/F16).
inline std::vector<float> gauss(size_t n, uint64_t seed, float std = 0.02f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace tptest
