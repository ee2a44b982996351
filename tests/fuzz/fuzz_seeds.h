// Valid inputs that the mutation test and libFuzzer runs start from.
#pragma once
#include <string>
#include <vector>

#include "pytorch/ckpt_fixtures.h"
#include "tenpak/format.h"
#include "test_util.h"

namespace tpfuzz {

inline std::string pkl_of(const std::string& pt) {
  // The data.pkl entry is the first one written by ckpt::make_pt.
  auto ar = tenpak::zip::read_archive(reinterpret_cast<const uint8_t*>(pt.data()), pt.size(), "seed");
  const auto& e = ar->entries.at(0);
  return pt.substr(e.data_offset, e.size);
}

inline tenpak::Manifest seed_manifest() {
  using namespace tenpak;
  Manifest m;
  m.base_locations = {"/models/base"};
  BaseFile b;
  b.name = "model.safetensors";
  b.size = 4096;
  m.base_files.push_back(b);
  OutFile o;
  o.name = "sub/model.safetensors";
  o.size = 300;
  o.frame_count = 2;
  m.out_files.push_back(o);
  OutFile c;
  c.name = "config.json";
  c.size = 10;
  c.first_frame = 2;
  c.frame_count = 1;
  m.out_files.push_back(c);
  Frame f1;
  f1.file = 0; f1.out_offset = 0; f1.out_len = 200; f1.codec = Codec::xor_planes; f1.dtype = DType::BF16;
  f1.base_dtype = DType::BF16; f1.base_file = 0; f1.base_offset = 64; f1.base_len = 200; f1.data_len = 50;
  Frame f2;
  f2.file = 0; f2.out_offset = 200; f2.out_len = 100; f2.codec = Codec::zstd; f2.data_offset = 50; f2.data_len = 30;
  Frame f3;
  f3.file = 1; f3.out_offset = 0; f3.out_len = 10; f3.codec = Codec::store; f3.data_offset = 80; f3.data_len = 10;
  m.frames = {f1, f2, f3};
  return m;
}


inline std::vector<std::string> checkpoint_seeds() {
  return {ckpt::plain_state_dict().pt, ckpt::module_checkpoint().pt, ckpt::plain_state_dict(0, "archive", true).pt};
}

inline std::vector<std::string> pickle_seeds() {
  std::vector<std::string> seeds;
  for (auto& pt : {ckpt::plain_state_dict().pt, ckpt::module_checkpoint().pt}) seeds.push_back(pkl_of(pt));
  return seeds;
}

inline std::vector<std::string> safetensors_seeds() {
  using tenpak::DType;
  return {tptest::make_st({{"a", DType::F32, {2, 3}, std::string(24, 'x')}, {"b.c", DType::BF16, {4}, std::string(8, 'y')},
                           {"n", DType::I64, {}, std::string(8, 'z')}}),
          tptest::make_st({{"e", DType::F16, {0, 5}, ""}, {"u", DType::U8, {3}, "abc"}})};
}

inline std::vector<std::string> manifest_seeds() { return {tenpak::serialize_manifest(seed_manifest())}; }

}  // namespace tpfuzz
