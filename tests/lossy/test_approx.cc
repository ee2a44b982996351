// Codec 11 (approx): the decoder rebuilds exactly round(float32(base) + d)
// with d as docs/FORMAT.md defines it, for every sub-method and output
// dtype; malformed payloads are refused as corrupt, never misread.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "tenpak/approx_codec.h"
#include "tenpak/frame_codec.h"

using namespace tenpak;

namespace {

std::vector<float> randf(size_t n, double s, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-s, s);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(u(g));
  return v;
}

std::vector<uint8_t> as_dtype(const std::vector<float>& v, DType dt) {
  std::vector<uint8_t> out(v.size() * dtype_size(dt));
  convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, v.size(), dt, out.data());
  return out;
}

std::vector<float> to_f32(const std::vector<uint8_t>& b, DType dt) {
  std::vector<float> v(b.size() / dtype_size(dt));
  convert_dtype(b.data(), dt, v.size(), DType::F32, reinterpret_cast<uint8_t*>(v.data()));
  return v;
}

Result<std::vector<uint8_t>> decode(const std::string& pay, const std::vector<uint8_t>& base, DType dt) {
  std::vector<uint8_t> out(base.size());
  Status st = decode_approx(reinterpret_cast<const uint8_t*>(pay.data()), pay.size(), base.data(), base.size(), dt, out.data());
  if (!st.ok()) return st;
  return out;
}

// The reference: out = round_dt(f32(base) + d) with d given in float32.
std::vector<uint8_t> expect(const std::vector<uint8_t>& base, DType dt, const std::vector<float>& d) {
  auto b = to_f32(base, dt);
  std::vector<float> s(b.size());
  for (size_t i = 0; i < b.size(); ++i) s[i] = b[i] + d[i];
  return as_dtype(s, dt);
}

class ApproxDtype : public ::testing::TestWithParam<DType> {};

TEST_P(ApproxDtype, SparseAddsValuesAtPositionsOnly) {
  const DType dt = GetParam();
  ApproxTensor t;
  t.method = ApproxMethod::sparse;
  t.rows = 30;
  t.cols = 50;
  auto base = as_dtype(randf(1500, 0.1, 1), dt);
  std::vector<float> dfull(1500, 0.0f);
  std::mt19937_64 g(2);
  for (uint64_t e = 0; e < 1500; ++e)
    if (g() % 10 == 0 || e == 1499) {
      t.pos.push_back(e);
      t.val.push_back(static_cast<float>((g() % 2001) / 1e5 - 0.01));
      dfull[e] = t.val.back();
    }
  // Two frames cutting the tensor mid-row, zstd and raw bodies.
  for (int level : {0, 3}) {
    for (auto [first, count] : {std::pair<uint64_t, uint64_t>{0, 777}, {777, 723}}) {
      auto pay = encode_approx_frame(t, first, count, level);
      ASSERT_TRUE(pay.ok()) << pay.status().message();
      const size_t w = dtype_size(dt);
      std::vector<uint8_t> b(base.begin() + first * w, base.begin() + (first + count) * w);
      auto out = decode(*pay, b, dt);
      ASSERT_TRUE(out.ok()) << out.status().message();
      std::vector<float> d(dfull.begin() + first, dfull.begin() + first + count);
      EXPECT_EQ(*out, expect(b, dt, d)) << dtype_name(dt) << " level " << level;
    }
  }
}

TEST_P(ApproxDtype, SignIsPlusOrMinusTheScale) {
  const DType dt = GetParam();
  ApproxTensor t;
  t.method = ApproxMethod::sign;
  t.rows = 7;
  t.cols = 13;  // 91 elements: padding bits
  t.scale = 0.0071f;
  std::vector<float> d(91);
  for (uint64_t e = 0; e < 91; ++e) {
    t.negative.push_back((e * 7919) % 3 == 0);
    d[e] = t.negative.back() ? -t.scale : t.scale;
  }
  auto base = as_dtype(randf(91, 0.2, 3), dt);
  auto pay = encode_approx_frame(t, 0, 91, 0);
  ASSERT_TRUE(pay.ok());
  auto out = decode(*pay, base, dt);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, expect(base, dt, d));
}

TEST_P(ApproxDtype, LowRankSumsComponentsInOrderWithoutFma) {
  const DType dt = GetParam();
  ApproxTensor t;
  t.method = ApproxMethod::lowrank;
  t.rows = 40;
  t.cols = 24;
  t.rank = 5;
  t.bits = {0, 16, 8, 3, 2};
  t.u = randf(40 * 5, 0.3, 4);
  t.v = randf(5 * 24, 0.3, 5);
  auto base = as_dtype(randf(960, 0.1, 6), dt);
  // The factors as stored: float32, float16, and b-bit codes with one scale
  // per stored vector (U's column over the frame's rows, V's row).
  auto stored = [&](const std::vector<float>& x, unsigned b) {
    std::vector<float> r(x.size());
    if (b == 0) return x;
    if (b == 16) return to_f32(as_dtype(x, DType::F16), DType::F16);
    float mx = 0;
    for (float v : x) mx = std::max(mx, std::fabs(v));
    const float z = static_cast<float>((1u << b) - 1) / 2.0f, s = mx / z;
    for (size_t i = 0; i < x.size(); ++i) {
      double q = std::nearbyint(static_cast<double>(x[i]) / s + z);
      q = std::clamp(q, 0.0, static_cast<double>((1u << b) - 1));
      r[i] = approx_dequant(s, static_cast<uint32_t>(q), b);
    }
    return r;
  };
  for (auto [first, count] : {std::pair<uint64_t, uint64_t>{0, 960}, {100, 500}, {601, 359}}) {
    const uint64_t r0 = first / t.cols, r1 = (first + count + t.cols - 1) / t.cols;
    std::vector<std::vector<float>> U(5), V(5);
    for (int j = 0; j < 5; ++j) {
      std::vector<float> col, row(t.v.begin() + j * 24, t.v.begin() + (j + 1) * 24);
      for (uint64_t r = r0; r < r1; ++r) col.push_back(t.u[r * 5 + j]);
      U[j] = stored(col, t.bits[j]);
      V[j] = stored(row, t.bits[j]);
    }
    std::vector<float> d(count);
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t e = first + i, r = e / t.cols - r0, c = e % t.cols;
      volatile float acc = 0.0f;  // volatile: no contraction into an FMA here either
      for (int j = 0; j < 5; ++j) {
        volatile float p = U[j][r] * V[j][c];
        acc = acc + p;
      }
      d[i] = acc;
    }
    auto pay = encode_approx_frame(t, first, count, 3);
    ASSERT_TRUE(pay.ok()) << pay.status().message();
    const size_t w = dtype_size(dt);
    std::vector<uint8_t> b(base.begin() + first * w, base.begin() + (first + count) * w);
    auto out = decode(*pay, b, dt);
    ASSERT_TRUE(out.ok()) << out.status().message();
    EXPECT_EQ(*out, expect(b, dt, d)) << "frame " << first << "+" << count;
  }
}

// Sub-methods 3 and 4: d = scale × (code − zero2/2), the scale of the element's
// row and column group (or one per frame), for 1-, 2- (with a zero level)
// and 3-bit grids, frames cut mid-row, raw and zstd bodies; 4 codes the same
// codes with the range coder, and a stream one byte short or long is refused.
TEST_P(ApproxDtype, GroupedIsScaleTimesCodeMinusZero) {
 for (ApproxMethod method : {ApproxMethod::grouped, ApproxMethod::grouped_rc}) {
  const DType dt = GetParam();
  struct Case {
    uint8_t bits, zero2;
    uint32_t group;
  };
  for (Case c : {Case{1, 1, 0}, Case{2, 2, 7}, Case{3, 7, 20}, Case{2, 3, 1}, Case{8, 0, 0}}) {
    ApproxTensor t;
    t.method = method;
    t.rows = 13;
    t.cols = 20;
    t.qbits = c.bits;
    t.zero2 = c.zero2;
    t.group = c.group;
    std::mt19937_64 g(c.bits * 31 + c.group);
    const uint64_t n = t.rows * t.cols;
    for (uint64_t e = 0; e < n; ++e) t.codes.push_back(static_cast<uint8_t>(g() % (1u << c.bits)));
    const uint64_t ns = c.group ? t.rows * ((t.cols + c.group - 1) / c.group) : 1;
    for (uint64_t i = 0; i < ns; ++i) {
      // float16 values (the payload's scales), one of them negative.
      float f = static_cast<float>((g() % 1000 + 1) * 1e-5) * (i == 1 ? -1.0f : 1.0f);
      auto h = as_dtype({f}, DType::F16);
      t.scales.push_back(to_f32(h, DType::F16)[0]);
    }
    auto base = as_dtype(randf(n, 0.1, 40 + c.bits), dt);
    const uint64_t G = c.group ? (t.cols + c.group - 1) / c.group : 0;
    for (int level : {0, 19}) {
      for (auto [first, count] : {std::pair<uint64_t, uint64_t>{0, 47}, {47, 133}, {180, 80}}) {
        auto pay = encode_approx_frame(t, first, count, level);
        ASSERT_TRUE(pay.ok()) << pay.status().message();
        EXPECT_EQ(static_cast<uint8_t>((*pay)[0]), static_cast<uint8_t>(method));
        const size_t w = dtype_size(dt);
        std::vector<uint8_t> b(base.begin() + first * w, base.begin() + (first + count) * w);
        auto out = decode(*pay, b, dt);
        ASSERT_TRUE(out.ok()) << out.status().message();
        std::vector<float> d(count);
        for (uint64_t i = 0; i < count; ++i) {
          const uint64_t e = first + i, row = e / t.cols, col = e % t.cols;
          const float s = c.group ? t.scales[row * G + col / c.group] : t.scales[0];
          d[i] = s * (static_cast<float>(t.codes[e]) - static_cast<float>(c.zero2) / 2.0f);
        }
        EXPECT_EQ(*out, expect(b, dt, d)) << dtype_name(dt) << " bits " << int(c.bits) << " group " << c.group;
        if (method == ApproxMethod::grouped_rc && level == 0) {
          for (int delta : {-1, 1}) {
            std::string bad = delta < 0 ? pay->substr(0, pay->size() - 1) : *pay + '\0';
            const uint32_t raw = static_cast<uint32_t>(bad.size() - 6);
            std::memcpy(&bad[2], &raw, 4);
            EXPECT_FALSE(decode(bad, b, dt).ok()) << "stream " << delta << " byte";
          }
        }
      }
    }
  }
 }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ApproxDtype, ::testing::Values(DType::F32, DType::F16, DType::BF16));

TEST(Approx, FullRankFloat32FactorsRebuildAMergedLoraAlmostExactly) {
  // W + B·A in float32 against base + U·V from the same factors: equal up to
  // the summation order, i.e. within a few ulps.
  ApproxTensor t;
  t.method = ApproxMethod::lowrank;
  t.rows = 16;
  t.cols = 16;
  t.rank = 4;
  t.bits.assign(4, 0);
  t.u = randf(64, 0.1, 7);
  t.v = randf(64, 0.1, 8);
  auto basef = randf(256, 0.5, 9);
  auto base = as_dtype(basef, DType::F32);
  auto pay = encode_approx_frame(t, 0, 256, 0);
  ASSERT_TRUE(pay.ok());
  auto out = decode(*pay, base, DType::F32);
  ASSERT_TRUE(out.ok());
  auto o = to_f32(*out, DType::F32);
  for (int i = 0; i < 256; ++i) {
    double ref = basef[i];
    for (int j = 0; j < 4; ++j) ref += static_cast<double>(t.u[(i / 16) * 4 + j]) * t.v[j * 16 + i % 16];
    EXPECT_NEAR(o[i], ref, 1e-6);
  }
}

TEST(Approx, MalformedPayloadsAreCorrupt) {
  ApproxTensor t;
  t.method = ApproxMethod::lowrank;
  t.rows = 4;
  t.cols = 8;
  t.rank = 2;
  t.bits = {4, 0};
  t.u = randf(8, 1, 10);
  t.v = randf(16, 1, 11);
  auto base = as_dtype(randf(32, 1, 12), DType::F32);
  auto good = encode_approx_frame(t, 0, 32, 0);
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(decode(*good, base, DType::F32).ok());
  auto corrupt = [&](std::string p, const char* what) {
    auto r = decode(p, base, DType::F32);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Errc::corrupt) << what;
  };
  corrupt(good->substr(0, good->size() - 1), "truncated");
  corrupt(*good + "x", "trailing byte");
  std::string p = *good;
  p[0] = 4;
  corrupt(p, "unknown method");
  p = *good;
  p[1] = 2;
  corrupt(p, "unknown flag");
  p = *good;
  p[6 + 12] = 1;  // bits of component 0
  corrupt(p, "1-bit factors");
  p = *good;
  p[6 + 4] = 8;  // skip = cols
  corrupt(p, "skip >= cols");
  p = *good;
  p[1] = 1;  // claims zstd but is raw
  corrupt(p, "not zstd");
  corrupt("", "empty");
  // Output dtypes other than F32/F16/BF16.
  std::vector<uint8_t> out(32 * 8), b64(32 * 8);
  EXPECT_EQ(decode_approx(reinterpret_cast<const uint8_t*>(good->data()), good->size(), b64.data(), b64.size(),
                          DType::F64, out.data()).code(), Errc::corrupt);
  // A sparse position past the frame, and positions that are not increasing are impossible by construction (gaps).
  ApproxTensor s;
  s.method = ApproxMethod::sparse;
  s.rows = 1;
  s.cols = 64;
  s.pos = {63};
  s.val = {1.0f};
  auto sp = encode_approx_frame(s, 0, 64, 0);
  ASSERT_TRUE(sp.ok());
  corrupt(*sp, "position 63 in a frame of 32");
}

TEST(Approx, MalformedGroupedPayloadsAreCorruptAndBadTensorsRefused) {
  ApproxTensor t;
  t.method = ApproxMethod::grouped;
  t.rows = 2;
  t.cols = 12;
  t.qbits = 3;
  t.zero2 = 7;
  t.group = 0;
  t.scales = {0.25f};
  for (int e = 0; e < 24; ++e) t.codes.push_back(static_cast<uint8_t>(e % 8));
  auto base = as_dtype(randf(22, 1, 14), DType::F32);
  auto good = encode_approx_frame(t, 1, 22, 0);  // 66 code bits: 6 padding bits
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(decode(*good, base, DType::F32).ok());
  auto corrupt = [&](std::string p, const char* what) {
    auto r = decode(p, base, DType::F32);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Errc::corrupt) << what;
  };
  // Body: cols u32 @6, skip u32 @10, bits @14, zero2 @15, group u32 @16, scale f16 @20, codes @22.
  corrupt(good->substr(0, good->size() - 1), "truncated");
  corrupt(*good + "x", "trailing byte");
  std::string p = *good;
  p[14] = 0;
  corrupt(p, "0 bits");
  p = *good;
  p[14] = 9;
  corrupt(p, "9 bits");
  p = *good;
  p[15] = 15;
  corrupt(p, "zero above the grid");
  p = *good;
  p[16] = 13;
  corrupt(p, "group wider than a row");
  p = *good;
  p[10] = 12;
  corrupt(p, "skip = cols");
  p = *good;
  p[20] = 0x00;
  p[21] = 0x7c;  // float16 +inf
  corrupt(p, "infinite scale");
  p = *good;
  p.back() = static_cast<char>(p.back() | 0x80);
  corrupt(p, "padding bit set");
  // What the encoder refuses: a scale that is not a float16 value, a code over its bits.
  ApproxTensor u = t;
  u.scales = {0.1f};
  EXPECT_FALSE(encode_approx_frame(u, 0, 24, 0).ok());
  u = t;
  u.codes[3] = 8;
  EXPECT_FALSE(encode_approx_frame(u, 0, 24, 0).ok());
  u = t;
  u.group = 5;  // needs 2 x 3 scales
  EXPECT_FALSE(encode_approx_frame(u, 0, 24, 0).ok());
}

TEST(Approx, FrameCodecDispatchesCodec11AndNeedsABase) {
  EXPECT_STREQ(codec_name(Codec::approx), "approx");
  EXPECT_TRUE(codec_needs_base(Codec::approx));
  ApproxTensor t;
  t.method = ApproxMethod::sign;
  t.rows = 1;
  t.cols = 16;
  t.scale = 0.5f;
  t.negative.assign(16, 0);
  auto pay = encode_approx_frame(t, 0, 16, 0);
  ASSERT_TRUE(pay.ok());
  Frame f;
  f.codec = Codec::approx;
  f.out_len = 32;
  f.data_len = static_cast<uint32_t>(pay->size());
  f.dtype = DType::F16;
  f.base_dtype = DType::F32;  // base converted to F16 first
  f.base_file = 0;
  f.base_len = 64;
  auto basef = randf(16, 1, 13);
  std::vector<uint8_t> out(32);
  ASSERT_TRUE(decode_frame(f, reinterpret_cast<const uint8_t*>(pay->data()),
                           reinterpret_cast<const uint8_t*>(basef.data()), out.data()).ok());
  auto b16 = as_dtype(basef, DType::F16);
  EXPECT_EQ(out, expect(b16, DType::F16, std::vector<float>(16, 0.5f)));
  EXPECT_EQ(decode_frame(f, reinterpret_cast<const uint8_t*>(pay->data()), nullptr, out.data()).code(), Errc::corrupt);
}

}  // namespace
