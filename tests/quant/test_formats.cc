// Pack/unpack of every quantized format against small examples worked out
// by hand from the published rules (docs/QUANT_FORMATS.md). Each expected
// word below was computed on paper from the rule, not by the code under test.
#include <gtest/gtest.h>

#include "tenpak/quant_formats.h"

using namespace tenpak::quant;

namespace {

torch::Tensor col(std::vector<int32_t> v) {
  return torch::tensor(v, torch::kInt32).reshape({static_cast<int64_t>(v.size()), 1});
}
uint32_t u(const torch::Tensor& t, int64_t r, int64_t c) { return static_cast<uint32_t>(t[r][c].item<int32_t>()); }

}  // namespace

// 4-bit: code j of a run at bits 4j; codes 0..15 twice -> nibbles in ascending order.
TEST(GptqPack, FourBitRowsLowNibbleFirst) {
  std::vector<int32_t> v;
  for (int k = 0; k < 32; ++k) v.push_back(k % 16);
  auto p = gptq_pack_rows(col(v), 4);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(u(p, 0, 0), 0x76543210u);
  EXPECT_EQ(u(p, 1, 0), 0xFEDCBA98u);
  EXPECT_EQ(u(p, 2, 0), 0x76543210u);
  EXPECT_EQ(u(p, 3, 0), 0xFEDCBA98u);
  EXPECT_TRUE(torch::equal(gptq_unpack_rows(p, 4), col(v)));
}

TEST(GptqPack, TwoAndEightBit) {
  std::vector<int32_t> v2(32, 0), v8(32, 0);
  v2[0] = 1, v2[1] = 2, v2[15] = 3, v2[16] = 1, v2[31] = 2;
  auto p2 = gptq_pack_rows(col(v2), 2);
  ASSERT_EQ(p2.size(0), 2);
  EXPECT_EQ(u(p2, 0, 0), 0x1u | (0x2u << 2) | (0x3u << 30));
  EXPECT_EQ(u(p2, 1, 0), 0x1u | (0x2u << 30));
  v8[0] = 0xAB, v8[3] = 0x12, v8[4] = 0xFF;
  auto p8 = gptq_pack_rows(col(v8), 8);
  ASSERT_EQ(p8.size(0), 8);
  EXPECT_EQ(u(p8, 0, 0), 0x120000ABu);
  EXPECT_EQ(u(p8, 1, 0), 0x000000FFu);
  EXPECT_TRUE(torch::equal(gptq_unpack_rows(p2, 2), col(v2)));
  EXPECT_TRUE(torch::equal(gptq_unpack_rows(p8, 8), col(v8)));
}

// 3-bit: codes 10 and 21 straddle words. q10 = 0b101: bits 0b01 at 30-31 of
// word 0, bit 1 at bit 0 of word 1. q21 = 0b110: its low bit (0) at bit 31 of
// word 1, 0b11 at bits 0-1 of word 2. q31 = 7 at bits 29-31 of word 2.
TEST(GptqPack, ThreeBitStraddlingCodes) {
  std::vector<int32_t> v(32, 0);
  v[10] = 5, v[21] = 6, v[31] = 7;
  auto p = gptq_pack_rows(col(v), 3);
  ASSERT_EQ(p.size(0), 3);
  EXPECT_EQ(u(p, 0, 0), 0x40000000u);
  EXPECT_EQ(u(p, 1, 0), 0x00000001u);
  EXPECT_EQ(u(p, 2, 0), 0xE0000003u);
  EXPECT_TRUE(torch::equal(gptq_unpack_rows(p, 3), col(v)));
  // Codes inside a word: q1 = 3 at bits 3-5 of word 0, q11 = 1 at bit 1 of word 1, q22 = 2 at bits 2-4 of word 2.
  std::vector<int32_t> w(32, 0);
  w[1] = 3, w[11] = 1, w[22] = 2;
  auto q = gptq_pack_rows(col(w), 3);
  EXPECT_EQ(u(q, 0, 0), 3u << 3);
  EXPECT_EQ(u(q, 1, 0), 1u << 1);
  EXPECT_EQ(u(q, 2, 0), 2u << 2);
  // Every code value at every position survives the round trip.
  auto all = torch::randint(0, 8, {96, 5}, torch::kInt32);
  EXPECT_TRUE(torch::equal(gptq_unpack_rows(gptq_pack_rows(all, 3), 3), all));
}

// qzeros: packed along the output dimension, zero - 1 stored.
TEST(GptqPack, ZerosAlongOutputMinusOne) {
  auto zeros = torch::empty({1, 32}, torch::kInt32);
  for (int o = 0; o < 32; ++o) zeros[0][o] = (o % 15) + 1;  // 1..15: stored 0..14
  auto codes = torch::zeros({32, 32}, torch::kInt32);
  auto scales = torch::ones({1, 32});
  auto g_idx = torch::zeros({32}, torch::kInt32);
  auto t = gptq_pack(codes, zeros, scales, g_idx, 4);
  ASSERT_EQ(t.qzeros.sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(u(t.qzeros, 0, 0), 0x76543210u);  // outputs 0..7 store zeros 1..8 minus one
  EXPECT_EQ(u(t.qzeros, 0, 1), 0xEDCBA98u);   // outputs 8..15: 9..15 then 1 -> 8..14, 0
  EXPECT_EQ(t.scales.scalar_type(), torch::kHalf);
  // qweight is [in/32*bits, out]: codes[out, in] transposed then packed along in.
  EXPECT_EQ(t.qweight.sizes(), (std::vector<int64_t>{4, 32}));
}

// W[o, i] = scale[g_idx[i], o] * (q - (stored zero + 1)).
TEST(GptqPack, DequantizeByHand) {
  auto codes = torch::zeros({32, 64}, torch::kInt32);
  codes[0][0] = 10;   // group 0: scale 0.5, zero 8 -> 1.0
  codes[0][40] = 3;   // group 1: scale 0.25, zero 4 -> -0.25
  codes[5][63] = 15;  // group 1, row 5: scale 2, zero 1 -> 28
  auto zeros = torch::full({2, 32}, 8, torch::kInt32);
  zeros[1] = 4;
  zeros[1][5] = 1;
  auto scales = torch::full({2, 32}, 0.5f);
  scales[1] = 0.25f;
  scales[1][5] = 2.0f;
  auto g_idx = torch::arange(64, torch::kInt32).div(32, "floor").to(torch::kInt32);
  auto w = gptq_dequantize(gptq_pack(codes, zeros, scales, g_idx, 4), 4);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(w[0][0].item<float>(), 1.0f);
  EXPECT_EQ(w[0][40].item<float>(), -0.25f);
  EXPECT_EQ(w[5][63].item<float>(), 28.0f);
  EXPECT_EQ(w[0][1].item<float>(), -4.0f);  // code 0, zero 8, scale 0.5
  // act-order: g_idx decides the group, not the position.
  auto g2 = g_idx.flip(0).contiguous();
  auto w2 = gptq_dequantize(gptq_pack(codes, zeros, scales, g2, 4), 4);
  EXPECT_EQ(w2[0][0].item<float>(), 0.25f * (10 - 4));
}

// AWQ: word c of a row holds columns 8c + [0,2,4,6,1,3,5,7] at nibbles 0..7.
TEST(AwqPack, InterleavedOrder) {
  auto q = torch::arange(8, torch::kInt32).reshape({1, 8});
  auto p = awq_pack(q);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(u(p, 0, 0), 0x75316420u);
  auto q2 = torch::zeros({1, 16}, torch::kInt32);
  q2[0][9] = 0xA;   // column 8+1: order position 4 -> bits 16-19 of word 1
  q2[0][14] = 0x3;  // column 8+6: order position 3 -> bits 12-15 of word 1
  auto p2 = awq_pack(q2);
  EXPECT_EQ(u(p2, 0, 0), 0u);
  EXPECT_EQ(u(p2, 0, 1), 0x000A3000u);
  EXPECT_TRUE(torch::equal(awq_unpack(p2), q2));
}

// AWQ layout is [in, out]; zeros stored as they are (no -1).
TEST(AwqPack, LinearLayoutAndDequantize) {
  const int64_t out = 8, in = 4;
  auto codes = torch::zeros({out, in}, torch::kInt32);
  codes[2][1] = 9;  // out 2, in 1
  auto zeros = torch::full({2, out}, 8, torch::kInt32);  // group 2
  zeros[0][2] = 3;
  auto scales = torch::full({2, out}, 0.5f);
  auto t = awq_pack_linear(codes, zeros, scales);
  ASSERT_EQ(t.qweight.sizes(), (std::vector<int64_t>{in, out / 8}));
  // Row in=1 holds out columns 0..7: out 2 is order position 1 -> bits 4-7.
  EXPECT_EQ(u(t.qweight, 1, 0), 0x90u);
  // zeros row 0: out 2 (=3) at bits 4-7, the rest 8.
  EXPECT_EQ(u(t.qzeros, 0, 0), 0x88888838u);
  auto w = awq_dequantize(t, 2);
  EXPECT_EQ(w[2][1].item<float>(), 0.5f * (9 - 3));
  EXPECT_EQ(w[2][2].item<float>(), 0.5f * (0 - 8));
}

// bitsandbytes 4-bit: code 2k in the high nibble of byte k.
TEST(Bnb4, NibbleOrderHighFirst) {
  auto p = pack_nibbles(torch::tensor({1, 2, 3}, torch::kUInt8));
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(p[0][0].item<uint8_t>(), 0x12);
  EXPECT_EQ(p[1][0].item<uint8_t>(), 0x30);
  EXPECT_TRUE(torch::equal(unpack_nibbles(p, 3), torch::tensor({1, 2, 3}, torch::kUInt8)));
}

TEST(Bnb4, CodeBooks) {
  EXPECT_EQ(nf4_code()[0], -1.0f);
  EXPECT_EQ(nf4_code()[7], 0.0f);
  EXPECT_EQ(nf4_code()[15], 1.0f);
  EXPECT_FLOAT_EQ(nf4_code()[12], 0.44070982933044434f);
  // FP4 in bit-pattern order, divided by 12: 0b011 = 12 -> 1, 0b101 = 6 -> 0.5, bit 3 the sign.
  EXPECT_EQ(fp4_code()[3], 1.0f);
  EXPECT_EQ(fp4_code()[5], 0.5f);
  EXPECT_EQ(fp4_code()[11], -1.0f);
  EXPECT_FLOAT_EQ(fp4_code()[1], 0.0625f / 12);
  auto d = bnb_dynamic_map();
  ASSERT_EQ(d.numel(), 256);
  EXPECT_TRUE(torch::equal(d, std::get<0>(d.sort())));
  EXPECT_EQ(d[255].item<float>(), 1.0f);
  EXPECT_EQ((d == 0).sum().item<int64_t>(), 1);
  EXPECT_EQ((d > 0).sum().item<int64_t>(), 128);  // 127 fractions and 1.0
  // The smallest magnitudes: 10^-6 * midpoint of linspace(0.1, 1, 2) = 0.55e-6.
  EXPECT_NEAR(d[128].item<float>(), 0.55e-6, 1e-12);
}

// One block of 64: absmax 2 (at index 0); x/2 rounded to the nearest NF4 value.
TEST(Bnb4, Nf4QuantizeByHand) {
  auto w = torch::zeros({1, 64});
  w[0][0] = 2.0f;    // 1.0 -> code 15
  w[0][1] = -2.0f;   // -1 -> 0
  w[0][2] = 1.0f;    // 0.5: midpoint of 0.4407 and 0.5626 is 0.5017 -> code 12
  w[0][3] = 0.16f;   // 0.08 -> code 8 (0.0796)
  w[0][4] = -0.3f;   // -0.15: between -0.1848 (5) and -0.0911 (6), midpoint -0.1379 -> 5
  auto b = bnb4_quantize(w, "nf4", 64, false, "float32");
  auto codes = unpack_nibbles(b.weight, 64);
  EXPECT_EQ(codes[0].item<uint8_t>(), 15);
  EXPECT_EQ(codes[1].item<uint8_t>(), 0);
  EXPECT_EQ(codes[2].item<uint8_t>(), 12);
  EXPECT_EQ(codes[3].item<uint8_t>(), 8);
  EXPECT_EQ(codes[4].item<uint8_t>(), 5);
  EXPECT_EQ(codes[5].item<uint8_t>(), 7);  // 0
  EXPECT_EQ(b.weight[0][0].item<uint8_t>(), 0xF0);
  EXPECT_EQ(b.absmax.numel(), 1);
  EXPECT_EQ(b.absmax[0].item<float>(), 2.0f);
  auto d = bnb4_dequantize(b);
  EXPECT_FLOAT_EQ(d[0][2].item<float>(), 2.0f * 0.44070982933044434f);
  EXPECT_FLOAT_EQ(d[0][4].item<float>(), 2.0f * -0.18477343022823334f);
}

TEST(Bnb4, Fp4QuantizeByHand) {
  auto w = torch::zeros({1, 64});
  w[0][0] = 12.0f;   // absmax: 1.0 -> code 0b0011
  w[0][1] = -6.0f;   // -0.5 -> 0b1101
  w[0][2] = 3.0f;    // 0.25 -> 0b0111 (3/12)
  w[0][3] = 2.6f;    // 0.2167: between 2/12 (0b0110) and 3/12, midpoint 0.2083 -> 0b0111
  auto b = bnb4_quantize(w, "fp4", 64, false, "float32");
  auto codes = unpack_nibbles(b.weight, 64);
  EXPECT_EQ(codes[0].item<uint8_t>(), 3);
  EXPECT_EQ(codes[1].item<uint8_t>(), 13);
  EXPECT_EQ(codes[2].item<uint8_t>(), 7);
  EXPECT_EQ(codes[3].item<uint8_t>(), 7);
  EXPECT_EQ(b.weight[0][0].item<uint8_t>(), 0x3D);
  auto d = bnb4_dequantize(b);
  EXPECT_EQ(d[0][4].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d[0][1].item<float>(), -6.0f);
}

// A partial last block has its own absmax (bitsandbytes' rule).
TEST(Bnb4, PartialLastBlock) {
  auto w = torch::ones({1, 70});
  w[0][65] = 4.0f;
  auto b = bnb4_quantize(w, "nf4", 64, false, "float32");
  ASSERT_EQ(b.absmax.numel(), 2);
  EXPECT_EQ(b.absmax[1].item<float>(), 4.0f);
  EXPECT_EQ(b.weight.size(0), 35);
}

// Double quantization: absmax - mean(absmax) in blocks of 256 through the
// dynamic map; the loader adds the offset back.
TEST(Bnb4, DoubleQuantizationOfAbsmax) {
  torch::manual_seed(1);
  auto w = torch::randn({64, 640});  // 640 blocks of 64 -> 3 nested blocks (256, 256, 128)
  auto plain = bnb4_quantize(w, "nf4", 64, false, "float32");
  auto dq = bnb4_quantize(w, "nf4", 64, true, "float32");
  ASSERT_TRUE(dq.nested);
  EXPECT_EQ(dq.absmax.scalar_type(), torch::kUInt8);
  EXPECT_EQ(dq.absmax.numel(), 640);
  EXPECT_EQ(dq.nested_absmax.numel(), 3);
  EXPECT_FLOAT_EQ(dq.nested_offset, plain.absmax.mean().item<float>());
  // Each nested block's scale is the largest |absmax - offset| in it.
  auto centered = plain.absmax - dq.nested_offset;
  EXPECT_FLOAT_EQ(dq.nested_absmax[2].item<float>(), centered.slice(0, 512).abs().max().item<float>());
  // Decoded absmax: map[code] * nested_absmax[block] + offset, close to the true one.
  auto dec = bnb4_absmax(dq);
  auto by_hand = dq.nested_quant_map[dq.absmax[300].item<uint8_t>()].item<float>() * dq.nested_absmax[1].item<float>() +
                 dq.nested_offset;
  EXPECT_FLOAT_EQ(dec[300].item<float>(), by_hand);
  EXPECT_LT((dec - plain.absmax).abs().max().item<float>(), 0.02f * plain.absmax.max().item<float>());
  // The JSON the loader reads.
  auto j = bnb4_quant_state_json(dq);
  EXPECT_EQ(j["quant_type"], "nf4");
  EXPECT_EQ(j["blocksize"], 64);
  EXPECT_EQ(j["shape"], nlohmann::json::array({64, 640}));
  EXPECT_EQ(j["nested_blocksize"], 256);
  EXPECT_EQ(j["nested_dtype"], "float32");
  EXPECT_FLOAT_EQ(j["nested_offset"].get<float>(), dq.nested_offset);
  EXPECT_FALSE(bnb4_quant_state_json(plain).contains("nested_offset"));
}

TEST(Bnb4, FromTensorsRoundTripAndErrors) {
  torch::manual_seed(2);
  auto w = torch::randn({32, 64});
  auto b = bnb4_quantize(w, "nf4", 64, true, "float16");
  auto js = bnb4_quant_state_json(b).dump();
  auto qs = torch::empty({static_cast<int64_t>(js.size())}, torch::kUInt8);
  std::memcpy(qs.data_ptr<uint8_t>(), js.data(), js.size());
  std::map<std::string, torch::Tensor> t = {{"", b.weight},
                                            {"absmax", b.absmax},
                                            {"quant_map", b.quant_map},
                                            {"nested_absmax", b.nested_absmax},
                                            {"nested_quant_map", b.nested_quant_map},
                                            {"quant_state.bitsandbytes__nf4", qs}};
  auto r = bnb4_from_tensors(t, "layer");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(torch::equal(bnb4_dequantize(*r), bnb4_dequantize(b)));
  // dtype float16: the loader's result is rounded to fp16.
  auto d = bnb4_dequantize(b);
  EXPECT_TRUE(torch::equal(d, d.to(torch::kHalf).to(torch::kFloat)));
  t.erase("nested_absmax");
  auto bad = bnb4_from_tensors(t, "layer");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nested_absmax"), std::string::npos);
}

// LLM.int8 weights: round(W * 127 / rowmax), SCB = rowmax.
TEST(Bnb8, RowwiseByHand) {
  auto w = torch::tensor({127.0f, -63.5f, 0.0f, 1.0f, 0.5f, -0.25f, 0.0f, 0.0f, 0.0f}).reshape({3, 3});
  auto b = bnb8_quantize(w);
  EXPECT_EQ(b.weight.scalar_type(), torch::kInt8);
  EXPECT_EQ(b.weight[0][0].item<int8_t>(), 127);
  EXPECT_EQ(b.weight[0][1].item<int8_t>(), -64);  // -63.5 rounds half to even
  EXPECT_EQ(b.weight[1][1].item<int8_t>(), 64);   // 0.5 * 127 = 63.5 -> 64
  EXPECT_EQ(b.weight[1][2].item<int8_t>(), -32);  // -31.75
  EXPECT_EQ(b.SCB[0].item<float>(), 127.0f);
  EXPECT_EQ(b.SCB[1].item<float>(), 1.0f);
  EXPECT_EQ(b.SCB[2].item<float>(), 0.0f);
  auto d = bnb8_dequantize(b);
  EXPECT_NEAR(d[0][0].item<float>(), 127.0f, 1e-4);
  EXPECT_NEAR(d[1][2].item<float>(), -32.0f / 127, 1e-7);
  EXPECT_EQ(d[2][0].item<float>(), 0.0f);
}
