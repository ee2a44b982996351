#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tenpak/frame_codec.h"
#include "test_util.h"

using namespace tenpak;

namespace {

std::vector<uint8_t> random_elems(DType dt, size_t count, uint64_t seed) {
  std::vector<uint8_t> out(count * dtype_size(dt));
  auto v = tptest::gauss(count, seed);
  if (can_convert_dtype(DType::F32, dt)) {
    convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, count, dt, out.data());
  } else {
    std::mt19937_64 g(seed);
    for (auto& b : out) b = static_cast<uint8_t>(g() % 7);  // skewed bytes
  }
  return out;
}

// A fine-tune of `base`: most elements nudged by a few units in the last place.
std::vector<uint8_t> perturb(const std::vector<uint8_t>& base, DType dt, uint64_t seed) {
  std::vector<uint8_t> out = base;
  std::mt19937_64 g(seed);
  size_t w = dtype_size(dt);
  for (size_t i = 0; i < out.size(); i += w)
    if (g() % 3) out[i] = static_cast<uint8_t>(out[i] + static_cast<int>(g() % 5) - 2);
  return out;
}

Frame frame_for(const EncodedFrame& e, DType dt, size_t n, bool base) {
  Frame f;
  f.codec = e.codec;
  f.dtype = dt;
  f.base_dtype = dt;
  f.out_len = static_cast<uint32_t>(n);
  f.data_len = static_cast<uint32_t>(e.payload.size());
  if (base) { f.base_file = 0; f.base_len = static_cast<uint32_t>(n); }
  return f;
}

}  // namespace

class CodecRoundTrip : public ::testing::TestWithParam<std::tuple<Codec, DType>> {};

TEST_P(CodecRoundTrip, Lossless) {
  auto [codec, dt] = GetParam();
  if (codec == Codec::sub_split && dtype_size(dt) != 2) GTEST_SKIP() << "sub_split is for 16-bit types";
  for (size_t count : {1u, 7u, 4096u, 100000u}) {
    auto base = random_elems(dt, count, 1);
    auto ft = perturb(base, dt, 2);
    bool needs_base = codec_needs_base(codec);
    if (codec == Codec::copy_base) ft = base;
    auto e = encode_frame_with(codec, ft.data(), ft.size(), dt, needs_base ? base.data() : nullptr, 3);
    Frame f = frame_for(e, dt, ft.size(), needs_base);
    std::vector<uint8_t> out(ft.size());
    Status st = decode_frame(f, reinterpret_cast<const uint8_t*>(e.payload.data()), needs_base ? base.data() : nullptr, out.data());
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(out, ft) << codec_name(codec) << " " << dtype_name(dt) << " n=" << count;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, CodecRoundTrip,
    ::testing::Combine(::testing::Values(Codec::store, Codec::zstd, Codec::copy_base, Codec::xor_planes, Codec::sub_planes,
                                         Codec::planes, Codec::sub_split, Codec::sub_ctx),
                       ::testing::Values(DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2,
                                         DType::I64, DType::I32, DType::I16, DType::I8, DType::U8, DType::BOOL)));

TEST(Codec, ChooserIsLosslessAndPicksDeltas) {
  for (DType dt : {DType::BF16, DType::F32, DType::F16, DType::I64}) {
    auto base = random_elems(dt, 50000, 3);
    auto ft = perturb(base, dt, 4);
    auto e = encode_frame(ft.data(), ft.size(), dt, base.data(), {});
    EXPECT_LT(e.payload.size(), ft.size() / 2) << dtype_name(dt);
    Frame f = frame_for(e, dt, ft.size(), true);
    std::vector<uint8_t> out(ft.size());
    ASSERT_TRUE(decode_frame(f, reinterpret_cast<const uint8_t*>(e.payload.data()), base.data(), out.data()).ok());
    EXPECT_EQ(out, ft);
  }
  auto base = random_elems(DType::BF16, 1000, 5);
  auto e = encode_frame(base.data(), base.size(), DType::BF16, base.data(), {});
  EXPECT_EQ(e.codec, Codec::copy_base);
  EXPECT_TRUE(e.payload.empty());
  std::vector<uint8_t> zeros(1 << 20, 0);
  e = encode_frame(zeros.data(), zeros.size(), DType::F32, nullptr, {});
  EXPECT_LT(e.payload.size(), 1000u);
}

TEST(Codec, CorruptPayloadIsAnError) {
  auto base = random_elems(DType::BF16, 20000, 6);
  auto ft = perturb(base, DType::BF16, 7);
  for (Codec c : {Codec::zstd, Codec::xor_planes, Codec::sub_planes, Codec::sub_split, Codec::sub_ctx}) {
    auto e = encode_frame_with(c, ft.data(), ft.size(), DType::BF16, base.data(), 3);
    Frame f = frame_for(e, DType::BF16, ft.size(), true);
    std::vector<uint8_t> out(ft.size());
    std::string bad = e.payload.substr(0, e.payload.size() / 2);
    f.data_len = static_cast<uint32_t>(bad.size());
    EXPECT_FALSE(decode_frame(f, reinterpret_cast<const uint8_t*>(bad.data()), base.data(), out.data()).ok())
        << codec_name(c);
  }
}

TEST(Codec, DtypeConversion) {
  auto v = tptest::gauss(1000, 8);
  std::vector<uint8_t> bf(2000), f16(2000), back(4000);
  ASSERT_TRUE(convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, 1000, DType::BF16, bf.data()));
  ASSERT_TRUE(convert_dtype(bf.data(), DType::BF16, 1000, DType::F32, back.data()));
  const float* b = reinterpret_cast<const float*>(back.data());
  for (size_t i = 0; i < 1000; ++i) EXPECT_NEAR(b[i], v[i], std::abs(v[i]) / 128 + 1e-30);
  ASSERT_TRUE(convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, 1000, DType::F16, f16.data()));
  EXPECT_FALSE(can_convert_dtype(DType::I32, DType::F32));
  // Round to nearest even: 1 + 2^-8 (halfway between two BF16 values) rounds down to 1.0.
  float h = 1.0f + 1.0f / 256;
  uint8_t out[2];
  convert_dtype(reinterpret_cast<const uint8_t*>(&h), DType::F32, 1, DType::BF16, out);
  EXPECT_EQ(out[1], 0x3f);
  EXPECT_EQ(out[0], 0x80);
}
