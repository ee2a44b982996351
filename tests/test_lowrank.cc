// Codec 12 (lowrank_lanes): exact round trips of merged-LoRA matrices whose
// merge was rounded differently from codec 11's prediction (another order,
// FMA), refusal of full-rank changes, refusal of corrupt payloads, and the
// builder's choice through build/apply.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <filesystem>
#include <random>

#include "lanes_codec.h"
#include "tenpak/delta.h"
#include "tenpak/frame_codec.h"
#include "tenpak/lowrank_codec.h"
#include "test_util.h"

using namespace tenpak;
namespace fs = std::filesystem;

namespace {

std::string to_dtype(const std::vector<float>& v, DType dt) {
  std::string out(v.size() * dtype_size(dt), '\0');
  convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, v.size(), dt, reinterpret_cast<uint8_t*>(out.data()));
  return out;
}
std::vector<float> to_f32(const std::string& b, DType dt) {
  std::vector<float> v(b.size() / dtype_size(dt));
  convert_dtype(reinterpret_cast<const uint8_t*>(b.data()), dt, v.size(), DType::F32, reinterpret_cast<uint8_t*>(v.data()));
  return v;
}

// A LoRA merge as a training framework might do it, deliberately unlike
// codec 11's order: the adapter product B·A accumulated from the LAST
// component down with fused multiply-adds, scaled by alpha / r, added to the
// base in float32 and rounded to the tensor's dtype.
struct Pair {
  std::string base, ft;  // bytes of dt
};
Pair merged_lora(uint64_t rows, uint64_t cols, uint32_t r, DType dt, uint64_t seed, float b_std = 0.02f) {
  auto w = tptest::gauss(rows * cols, seed, 0.05f);
  auto a = tptest::gauss(uint64_t(r) * cols, seed + 1, 0.1f);
  auto b = tptest::gauss(rows * r, seed + 2, b_std);
  const float scale = 16.0f / static_cast<float>(r);
  Pair p;
  p.base = to_dtype(w, dt);
  auto wb = to_f32(p.base, dt);
  std::vector<float> m(rows * cols);
  for (uint64_t i = 0; i < rows; ++i)
    for (uint64_t c = 0; c < cols; ++c) {
      float acc = 0;
      for (uint32_t j = r; j-- > 0;) acc = std::fma(b[i * r + j], a[uint64_t(j) * cols + c], acc);
      m[i * cols + c] = wb[i * cols + c] + acc * scale;
    }
  p.ft = to_dtype(m, dt);
  return p;
}

Frame frame_of(DType dt, size_t n, size_t payload) {
  Frame f;
  f.codec = Codec::lowrank_lanes;
  f.dtype = f.base_dtype = dt;
  f.out_len = static_cast<uint32_t>(n);
  f.base_file = 0;
  f.base_len = static_cast<uint32_t>(n);
  f.data_len = static_cast<uint32_t>(payload);
  return f;
}

// Encodes the tensor in frames of `per` elements with codec 12 and checks
// each decodes to the fine-tune's bytes; returns the total payload size and
// how many elements the prediction alone got wrong.
size_t round_trip(const Pair& p, const LowRankFactors& f, DType dt, uint64_t per, uint64_t* mispredicted) {
  const size_t w = dtype_size(dt), count = p.ft.size() / w;
  size_t total = 0;
  *mispredicted = 0;
  for (uint64_t e0 = 0; e0 < count; e0 += per) {
    const size_t ne = std::min<uint64_t>(per, count - e0), n = ne * w;
    const auto* out = reinterpret_cast<const uint8_t*>(p.ft.data()) + e0 * w;
    const auto* base = reinterpret_cast<const uint8_t*>(p.base.data()) + e0 * w;
    auto pay = encode_lowrank_frame(f, e0, out, base, n, dt, 3);
    EXPECT_TRUE(pay.ok()) << pay.status().message();
    if (!pay.ok()) return 0;
    std::vector<uint8_t> dec(n, 0xee);
    Status st = decode_frame(frame_of(dt, n, pay->size()), reinterpret_cast<const uint8_t*>(pay->data()), base, dec.data());
    EXPECT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(0, std::memcmp(dec.data(), out, n)) << "frame at element " << e0;
    // The prediction alone (the codec-11 part).
    uint32_t a;
    std::memcpy(&a, pay->data(), 4);
    std::vector<uint8_t> pred(n);
    EXPECT_TRUE(decode_approx(reinterpret_cast<const uint8_t*>(pay->data()) + 4, a, base, n, dt, pred.data()).ok());
    for (size_t i = 0; i < ne; ++i) *mispredicted += std::memcmp(pred.data() + i * w, out + i * w, w) != 0;
    total += pay->size();
  }
  return total;
}

size_t lanes_size(const Pair& p, DType dt, uint64_t per) {
  const size_t w = dtype_size(dt), count = p.ft.size() / w;
  size_t total = 0;
  for (uint64_t e0 = 0; e0 < count; e0 += per) {
    const size_t ne = std::min<uint64_t>(per, count - e0);
    std::string s;
    lanes::encode(reinterpret_cast<const uint8_t*>(p.ft.data()) + e0 * w,
                  reinterpret_cast<const uint8_t*>(p.base.data()) + e0 * w, ne * w, dt, s);
    total += s.size();
  }
  return total;
}

}  // namespace

TEST(LowRank, MergedLoraRoundTripsExactlyInEveryFloatDtype) {
  struct C { DType dt; uint64_t rows, cols; uint32_t r; uint64_t per; };
  // Frames of `per` elements: several per tensor, starting mid-row.
  for (C c : {C{DType::F32, 96, 80, 4, 96 * 80}, C{DType::F16, 200, 96, 8, 5000}, C{DType::BF16, 160, 128, 6, 7777}}) {
    SCOPED_TRACE(dtype_name(c.dt));
    Pair p = merged_lora(c.rows, c.cols, c.r, c.dt, 100 + c.r);
    LowRankOptions o;
    o.frame_elements = c.per;
    LowRankFactors f = find_lowrank_factors(reinterpret_cast<const uint8_t*>(p.ft.data()),
                                            reinterpret_cast<const uint8_t*>(p.base.data()), c.rows, c.cols, c.dt, o);
    ASSERT_GT(f.t.rank, 0u) << f.why;
    EXPECT_EQ(f.t.rank, c.r) << f.why;  // the adapter's rank, found by coded size
    uint64_t miss = 0;
    const size_t lr = round_trip(p, f, c.dt, c.per, &miss);
    // The merge rounded differently: the residual is not empty, and yet the
    // output is exact (checked in round_trip).
    EXPECT_GT(miss, 0u);
    const size_t ln = lanes_size(p, c.dt, c.per);
    EXPECT_LT(lr, ln * 0.8) << "codec 12 " << lr << " B vs sub_lanes " << ln << " B";
  }
}

TEST(LowRank, ArbitraryFactorsStillDecodeExactly) {
  // Factors unrelated to the change: a poor prediction, but a correct output.
  Pair p = merged_lora(40, 48, 3, DType::BF16, 7);
  LowRankFactors f;
  f.t.method = ApproxMethod::lowrank;
  f.t.rows = 40;
  f.t.cols = 48;
  f.t.rank = 2;
  f.t.bits = {16, 16};
  f.t.u = tptest::gauss(80, 1, 0.3f);
  f.t.v = tptest::gauss(96, 2, 0.3f);
  uint64_t miss = 0;
  round_trip(p, f, DType::BF16, 500, &miss);
  EXPECT_GT(miss, 100u);
}

TEST(LowRank, FullRankChangeIsNotFactored) {
  const uint64_t rows = 128, cols = 96;
  auto w = tptest::gauss(rows * cols, 3, 0.05f);
  auto n = tptest::gauss(rows * cols, 4, 0.002f);
  std::vector<float> ft(w.size());
  for (size_t i = 0; i < w.size(); ++i) ft[i] = w[i] + n[i];
  for (DType dt : {DType::F32, DType::BF16}) {
    std::string b = to_dtype(w, dt), f = to_dtype(ft, dt);
    LowRankFactors lf = find_lowrank_factors(reinterpret_cast<const uint8_t*>(f.data()),
                                             reinterpret_cast<const uint8_t*>(b.data()), rows, cols, dt);
    EXPECT_EQ(lf.t.rank, 0u) << dtype_name(dt) << ": " << lf.why;
    EXPECT_FALSE(lf.why.empty());
  }
}

TEST(LowRank, CorruptPayloadsAreRefused) {
  Pair p = merged_lora(32, 40, 2, DType::F32, 9);
  LowRankFactors f = find_lowrank_factors(reinterpret_cast<const uint8_t*>(p.ft.data()),
                                          reinterpret_cast<const uint8_t*>(p.base.data()), 32, 40, DType::F32);
  ASSERT_GT(f.t.rank, 0u) << f.why;
  const size_t n = p.ft.size();
  const auto* base = reinterpret_cast<const uint8_t*>(p.base.data());
  auto pay = encode_lowrank_frame(f, 0, reinterpret_cast<const uint8_t*>(p.ft.data()), base, n, DType::F32, 0);
  ASSERT_TRUE(pay.ok());
  std::vector<uint8_t> out(n);
  auto dec = [&](std::string s, DType dt = DType::F32) {
    return decode_frame(frame_of(dt, n, s.size()), reinterpret_cast<const uint8_t*>(s.data()), base, out.data());
  };
  ASSERT_TRUE(dec(*pay).ok());
  EXPECT_EQ(dec(pay->substr(0, pay->size() - 1)).code(), Errc::corrupt);  // residual one byte short
  EXPECT_EQ(dec(pay->substr(0, 3)).code(), Errc::corrupt);                // no header
  std::string s = *pay;
  s[4] = 0;  // prediction of method 0 (sparse): not allowed here
  EXPECT_EQ(dec(s).code(), Errc::corrupt);
  s = *pay;
  s[0] = 5;  // prediction length below codec 11's header
  EXPECT_EQ(dec(s).code(), Errc::corrupt);
  s = *pay;
  const uint32_t big = static_cast<uint32_t>(s.size());  // past the payload's end
  std::memcpy(s.data(), &big, 4);
  EXPECT_EQ(dec(s).code(), Errc::corrupt);
  EXPECT_EQ(dec(*pay, DType::I32).code(), Errc::corrupt);  // not a float dtype
}

// Through the builder: a model holding a merged-LoRA matrix (F16) and a
// fully fine-tuned one (BF16); codec 12 is chosen for the first only, and
// apply rebuilds every file bit for bit.
TEST(LowRank, BuilderChoosesItForMergedLoraOnlyAndApplyIsExact) {
  const std::string root = tptest::temp_dir("lowrank");
  Pair lora = merged_lora(256, 192, 8, DType::F16, 21);
  auto w = tptest::gauss(128 * 160, 22, 0.05f), nz = tptest::gauss(128 * 160, 23, 0.003f);
  std::vector<float> full(w.size());
  for (size_t i = 0; i < w.size(); ++i) full[i] = w[i] + nz[i];
  tptest::write_file(root + "/base/model.safetensors",
                     tptest::make_st({{"layers.0.q_proj.weight", DType::F16, {256, 192}, lora.base},
                                      {"layers.0.mlp.weight", DType::BF16, {128, 160}, to_dtype(w, DType::BF16)}}));
  tptest::write_file(root + "/ft/model.safetensors",
                     tptest::make_st({{"layers.0.q_proj.weight", DType::F16, {256, 192}, lora.ft},
                                      {"layers.0.mlp.weight", DType::BF16, {128, 160}, to_dtype(full, DType::BF16)}}));
  BuildOptions bo;
  bo.threads = 2;
  auto rep = build_delta(root + "/base", root + "/ft", root + "/delta", bo);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  std::map<std::string, std::string> codecs;
  for (auto& t : rep->tensors_detail) codecs[t.name] = t.codecs;
  EXPECT_NE(codecs["layers.0.q_proj.weight"].find("lowrank_lanes"), std::string::npos) << codecs["layers.0.q_proj.weight"];
  EXPECT_EQ(codecs["layers.0.mlp.weight"].find("lowrank_lanes"), std::string::npos) << codecs["layers.0.mlp.weight"];
  bo.allow_lowrank = false;
  auto rep0 = build_delta(root + "/base", root + "/ft", root + "/delta0", bo);
  ASSERT_TRUE(rep0.ok()) << rep0.status().message();
  EXPECT_LT(rep->delta_bytes, rep0->delta_bytes);
  auto r = open_delta_dir(root + "/delta");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(attach_local_base(**r, root + "/base", true).ok());
  auto n = apply_delta(**r, root + "/out", {});
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(tptest::read_file(root + "/out/model.safetensors"), tptest::read_file(root + "/ft/model.safetensors"));
  EXPECT_TRUE(apply_delta(**r, "", {}).ok());  // verify
  fs::remove_all(root);
}
