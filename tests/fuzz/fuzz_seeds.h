// Valid inputs that the mutation test and libFuzzer runs start from.
#pragma once
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "lanes_codec.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/patch_codec.h"
#include <snappy.h>
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

// Version-1 layout, and the compact index (raw and zstd body) of the same
// records, without and with a lossy record (flags 1, 3, 5, 7), the record
// also with the optional qat_label_weight.
inline std::vector<std::string> manifest_seeds() {
  std::vector<std::string> v{tenpak::serialize_manifest(seed_manifest())};
  tenpak::Manifest rec = seed_manifest();
  rec.lossy_record =
      R"({"format":"tenpak.lossy","version":1,"lossy":true,"method":"gptqmix:0.0625","embeddings":true,)"
      R"("quality":{"eval_text":"held-out.txt","ppl_ratio":1.00801,"kl_mean":0.00553,"top1_agreement":0.9712,)"
      R"("scored_tokens":8128}})";
  tenpak::Manifest labels = seed_manifest();
  labels.lossy_record =
      R"({"format":"tenpak.lossy","version":1,"lossy":true,"method":"gptqmix:0.0625","embeddings":true,)"
      R"("quality":{"eval_text":"held-out.txt","ppl_ratio":0.99647,"kl_mean":0.0528834,"top1_agreement":0.7956,)"
      R"("scored_tokens":8128},"qat_label_weight":0.25})";
  const tenpak::Manifest plain = seed_manifest();
  for (const tenpak::Manifest* m : {&plain, static_cast<const tenpak::Manifest*>(&rec),
                                    static_cast<const tenpak::Manifest*>(&labels)})
    for (bool z : {false, true})
      if (auto c = tenpak::serialize_manifest_compact(*m, z); c.ok()) v.push_back(*c);
  return v;
}

// Valid payloads: each dtype, a few sizes, fine-tunes a few ulps away.
inline std::vector<std::string> lanes_seeds() {
  std::vector<std::string> out;
  uint64_t x = 7;
  for (uint8_t sel = 0; sel < 8; ++sel)
    for (size_t count : {size_t(5), size_t(40), size_t(700)}) {
      const tenpak::DType dt = lanes_dtype(sel);
      std::vector<uint8_t> base = lanes_base(dt, count), ft = base;
      const size_t w = tenpak::dtype_size(dt);
      for (size_t i = 0; i < ft.size(); i += w) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ft[i] = static_cast<uint8_t>(ft[i] + static_cast<int>((x >> 60) % 7) - 3);
      }
      std::string s{static_cast<char>(sel), static_cast<char>(count & 0xff), static_cast<char>(count >> 8)};
      tenpak::lanes::encode(ft.data(), base.data(), ft.size(), dt, s);
      out.push_back(s);
    }
  return out;
}

// Valid patch payloads (raw and zstd streams, with and without extents),
// each prefixed by the two out_len bytes of tpfuzz::patch.
inline std::vector<std::string> patch_seeds() {
  using tenpak::PatchExtent;
  using tenpak::PatchOp;
  const std::vector<uint8_t>& base = patch_base();
  std::vector<std::string> out;
  struct S { std::vector<PatchExtent> ext; std::vector<PatchOp> ops; std::string lit; int level; int line_ops = 0; int words = 0; };
  std::string words = "the quick brown fox jumps over the lazy dog; the quick brown fox again";
  const S ss[] = {{{{100, 300}, {5000, 200}}, {{4, 0, 100}, {2, 350, 50}, {0, 120, 30}, {3, 0, 0}}, "abcdefghi", 0},
                  {{{0, 4096}}, {{30, 0, 1000}, {40, 3000, 500}}, words, 3},
                  {{}, {{static_cast<uint32_t>(words.size()), 0, 0}}, words, 3},
                  {{}, {{5, 0, 0}}, "hello", 0},
                  // Line ops (method bit 3): copy values carry a kind bit; mutations reach line copies.
                  {{{0, 4096}}, {{4, 0, 1000}, {0, 2000, 700}, {2, 100, 50}}, "abcdef", 0, 1},
                  {{{0, 4096}}, {{4, 0, 1000}, {0, 2000, 700}}, "abcd", 3, 1},
                  // Word-coded literals (method bit 4): primed from B, and with no base.
                  {{{0, 4096}}, {{40, 0, 100}, {static_cast<uint32_t>(words.size() - 40), 300, 0}}, words, 0, 0, 2},
                  {{}, {{static_cast<uint32_t>(words.size() + 3), 0, 0}}, words + "\xff\r\n", 0, 0, 2},
                  // Static word-coded literals (method bit 6): the same two.
                  {{{0, 4096}}, {{40, 0, 100}, {static_cast<uint32_t>(words.size() - 40), 300, 0}}, words, 0, 0, 3},
                  {{}, {{static_cast<uint32_t>(words.size() + 3), 0, 0}}, words + "\xff\r\n", 0, 0, 3}};
  for (const S& s : ss) {
    std::string b;
    for (auto& e : s.ext) b.append(reinterpret_cast<const char*>(base.data()) + e.offset, e.len);
    uint64_t n = 0;
    for (auto& o : s.ops) n += o.lit + o.copy;
    std::string p = tenpak::encode_patch(s.ext, s.ops, s.lit, reinterpret_cast<const uint8_t*>(b.data()), b.size(), s.level,
                                           true, s.line_ops, s.words);
    const uint32_t v = static_cast<uint32_t>(n - 1);
    out.push_back(std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)} + p);
  }
  // Snappy pages (method bit 5): B is the two snappy streams of patch_base()
  // decompressed (600 + 88 bytes); the output is a raw header then snappy of
  // the rest. And one without a base.
  {
    std::string b;
    for (int e = 0; e < 10; ++e)
      for (int i = 0; i < 60; ++i) b.push_back(static_cast<char>('a' + (e * 7 + i) % 26));
    std::string s = "01234567";
    for (int i = 0; i < 64; ++i) s.push_back(s[s.size() - 8]);
    for (int i = 0; i < 11; ++i) s.push_back(s[s.size() - 3]);
    b += s + "xyz!?";
    struct T { std::vector<PatchExtent> ext; std::vector<PatchOp> ops; std::string lit; uint32_t raw; int level; };
    const T ts[] = {{{{kSnappyA, snappy_a_len()}, {kSnappyB, snappy_b_len()}}, {{6, 600, 88}, {3, 100, 400}, {2, 0, 0}}, "HEADERnewxy", 6, 0},
                    {{{kSnappyB, snappy_b_len()}, {kSnappyA, snappy_a_len()}}, {{0, 0, 88}, {5, 88, 600}}, "abcde", 0, 3},
                    {{}, {{40, 0, 0}}, std::string(20, 'h') + std::string(20, 'q'), 10, 0}};
    for (const T& t : ts) {
      std::string bb = t.ext.empty() ? std::string() : t.ext[0].offset == kSnappyA ? b : b.substr(600) + b.substr(0, 600);
      std::string inner;
      size_t lp = 0;
      for (auto& o : t.ops) { inner += t.lit.substr(lp, o.lit); lp += o.lit; inner += bb.substr(o.src, o.copy); }
      std::string z;
      snappy::Compress(inner.data() + t.raw, inner.size() - t.raw, &z);
      const tenpak::PatchSnappy sn{static_cast<uint32_t>(inner.size()), t.raw};
      std::string p = tenpak::encode_patch(t.ext, t.ops, t.lit, reinterpret_cast<const uint8_t*>(bb.data()), bb.size(), t.level,
                                           true, 0, 0, &sn);
      const uint32_t v = static_cast<uint32_t>(t.raw + z.size() - 1);
      out.push_back(std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)} + p);
    }
  }
  return out;
}

// Valid codec-12 payloads (each prefixed by tpfuzz::lowrank's selector and
// count bytes): F32, F16, BF16; float32, float16 and 4-bit factors; one frame
// starting mid-row; a zstd prediction body.
inline std::vector<std::string> lowrank_seeds() {
  std::vector<std::string> out;
#ifndef TP_FUZZ_PARSERS_ONLY  // no codec-12 encoder in the clang parsers build
  struct S { uint8_t sel; uint64_t rows, cols, first, count; uint32_t rank; uint8_t bits; int level; };
  const S ss[] = {{0, 8, 10, 0, 80, 2, 0, 0}, {1, 12, 16, 5, 150, 3, 16, 0}, {2, 6, 40, 0, 240, 1, 4, 0},
                  {0, 20, 30, 30, 500, 2, 16, 19}};
  uint64_t x = 12;
  auto next = [&] { x = x * 6364136223846793005ull + 1442695040888963407ull; return x >> 33; };
  for (const S& s : ss) {
    const tenpak::DType dt = lowrank_dtype(s.sel);
    const size_t w = tenpak::dtype_size(dt);
    tenpak::LowRankFactors f;
    f.t.method = tenpak::ApproxMethod::lowrank;
    f.t.rows = s.rows;
    f.t.cols = s.cols;
    f.t.rank = s.rank;
    f.t.bits.assign(s.rank, s.bits);
    for (uint64_t i = 0; i < s.rows * s.rank; ++i) f.t.u.push_back(static_cast<float>(next() % 1000) / 1000.0f - 0.5f);
    for (uint64_t i = 0; i < s.rank * s.cols; ++i) f.t.v.push_back(static_cast<float>(next() % 1000) / 1000.0f - 0.5f);
    std::vector<uint8_t> base = lanes_base(dt, s.count), ft = base;
    for (size_t i = 0; i < ft.size(); i += w) ft[i] = static_cast<uint8_t>(ft[i] + static_cast<int>(next() % 7) - 3);
    auto p = tenpak::encode_lowrank_frame(f, s.first, ft.data(), base.data(), ft.size(), dt, s.level);
    const uint32_t v = static_cast<uint32_t>(s.count - 1);
    out.push_back(std::string{static_cast<char>(s.sel), static_cast<char>(v & 0xff), static_cast<char>(v >> 8)} +
                  (p.ok() ? *p : std::string()));
  }
#endif
  return out;
}

// Valid codec-11 payloads (prefixed by tpfuzz::approx's selector and count
// bytes): sparse, sign, low-rank with 3-bit factors, and grouped codes (1-bit
// one scale; ternary with per-row scales, starting mid-row; zstd body), each
// also range-coded (sub-method 4).
inline std::vector<std::string> approx_seeds() {
  std::vector<std::string> out;
#ifndef TP_FUZZ_PARSERS_ONLY
  uint64_t x = 13;
  auto next = [&] { x = x * 6364136223846793005ull + 1442695040888963407ull; return x >> 33; };
  auto add = [&](uint8_t sel, const tenpak::ApproxTensor& t, uint64_t first, uint64_t count, int level) {
    auto p = tenpak::encode_approx_frame(t, first, count, level);
    const uint32_t v = static_cast<uint32_t>(count - 1);
    out.push_back(std::string{static_cast<char>(sel), static_cast<char>(v & 0xff), static_cast<char>(v >> 8)} +
                  (p.ok() ? *p : std::string()));
  };
  tenpak::ApproxTensor s;
  s.method = tenpak::ApproxMethod::sparse;
  s.rows = 10;
  s.cols = 20;
  for (uint64_t e = 0; e < 200; e += 1 + next() % 9) { s.pos.push_back(e); s.val.push_back(0.01f * (next() % 100)); }
  add(0, s, 0, 200, 0);
  tenpak::ApproxTensor g = s;
  g.method = tenpak::ApproxMethod::sign;
  g.scale = 0.02f;
  for (uint64_t e = 0; e < 200; ++e) g.negative.push_back(next() & 1);
  add(1, g, 0, 200, 0);
  tenpak::ApproxTensor l = s;
  l.method = tenpak::ApproxMethod::lowrank;
  l.rank = 2;
  l.bits = {3, 16};
  for (int i = 0; i < 10 * 2; ++i) l.u.push_back(0.001f * (next() % 100));
  for (int i = 0; i < 2 * 20; ++i) l.v.push_back(0.001f * (next() % 100));
  add(2, l, 0, 200, 0);
  for (int k = 0; k < 2; ++k) {
    tenpak::ApproxTensor q = s;
    q.method = tenpak::ApproxMethod::grouped;
    q.qbits = k ? 2 : 1;
    q.zero2 = k ? 2 : 1;
    q.group = k ? 20 : 0;
    for (uint64_t e = 0; e < 200; ++e) q.codes.push_back(static_cast<uint8_t>(next() % (k ? 3 : 2)));
    q.scales.assign(k ? 10 : 1, 0.015625f);
    add(static_cast<uint8_t>(k), q, k ? 7 : 0, k ? 150 : 200, k ? 19 : 0);
    q.method = tenpak::ApproxMethod::grouped_rc;  // sub-method 4: the same codes range-coded
    add(static_cast<uint8_t>(k), q, k ? 7 : 0, k ? 150 : 200, 0);
  }
#endif
  return out;
}

}  // namespace tpfuzz
