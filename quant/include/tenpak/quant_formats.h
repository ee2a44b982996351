// The on-disk layouts of quantized linear layers, exactly as their loaders
// read them: GPTQ (AutoGPTQ / transformers+optimum / vLLM `gptq`), AWQ GEMM
// (AutoAWQ / transformers / vLLM `awq`) and bitsandbytes 4-bit and 8-bit as
// transformers serialises them. Pure tensor code (CPU, no model): packing,
// unpacking and dequantization. docs/QUANT_FORMATS.md states every rule
// bit by bit with its source; the tests check them against examples worked
// out by hand.
//
// Dequantization contract: every dequantize_* returns float32 [out, in]
// (nn.Linear's weight layout) computed in float32 from the stored values,
// the same arithmetic the quantizers in quantizers.h use for their own
// result, so "reloaded and dequantized" equals "what the quantizer chose"
// bit for bit. (GPU kernels multiply in fp16: their product may differ from
// ours by one fp16 rounding, 2^-11 relative, far below the quantization step.)
#pragma once
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::quant {

// ---- GPTQ ---------------------------------------------------------------
// Codes are unsigned integers 0 .. 2^bits-1, bits in {2, 3, 4, 8}. Both
// packings treat each run of 32 consecutive codes along the packed
// dimension as one little-endian bit string of 32*bits bits (code j at bits
// j*bits .. j*bits+bits-1) stored in `bits` consecutive int32 words (word w
// holds bits 32w .. 32w+31). For 2/4/8 bits no code crosses a word; for 3
// bits codes 10 and 21 of every run do (AutoGPTQ's QuantLinear.pack).

// q: int32 [K, N] codes -> qweight int32 [K/32*bits, N] (packed along dim 0,
// the input dimension). K % 32 == 0.
torch::Tensor gptq_pack_rows(const torch::Tensor& q, int bits);
// qweight int32 [K/32*bits, N] -> codes int32 [K, N].
torch::Tensor gptq_unpack_rows(const torch::Tensor& packed, int bits);
// z: int32 [G, N] codes -> int32 [G, N/32*bits] (packed along dim 1, the
// output dimension). N % 32 == 0.
torch::Tensor gptq_pack_cols(const torch::Tensor& z, int bits);
torch::Tensor gptq_unpack_cols(const torch::Tensor& packed, int bits);

// One GPTQ linear as stored ("gptq" checkpoint format, not GPTQModel's v2):
// qweight int32 [in/32*bits, out]; qzeros int32 [G, out/32*bits] holding
// zero-1 ("zero minus one": the loader adds 1, so stored zeros lie in
// 1 .. 2^bits-1); scales fp16 [G, out]; g_idx int32 [in] (group of each
// input channel; i / group_size unless act-order); G = ceil(in / group_size).
struct GptqTensors {
  torch::Tensor qweight, qzeros, scales, g_idx;
};
// codes int32 [out, in]; zeros int32 [G, out] (true zero points, 1..2^bits-1);
// scales float [G, out] (already representable in fp16); g_idx int32 [in].
GptqTensors gptq_pack(const torch::Tensor& codes, const torch::Tensor& zeros, const torch::Tensor& scales,
                      const torch::Tensor& g_idx, int bits);
// W[o, i] = scale[g_idx[i], o] * (q[i, o] - (stored_zero[g_idx[i], o] + 1)).
torch::Tensor gptq_dequantize(const GptqTensors& t, int bits);

// ---- AWQ GEMM -----------------------------------------------------------
// 4-bit only. Packed along the output dimension, 8 codes per int32 word in
// AWQ's interleaved order: word c of a row holds the code of column
// 8c + kAwqOrder[i] at bits 4i .. 4i+3.
constexpr std::array<int, 8> kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7};
// q: int32 [R, C] codes 0..15, C % 8 == 0 -> int32 [R, C/8].
torch::Tensor awq_pack(const torch::Tensor& q);
torch::Tensor awq_unpack(const torch::Tensor& packed);

// One AWQ GEMM linear as stored: qweight int32 [in, out/8] (layout [in, out],
// the transpose of nn.Linear's); qzeros int32 [in/group, out/8] (true zero
// points, no offset); scales fp16 [in/group, out]. in % group == 0.
struct AwqTensors {
  torch::Tensor qweight, qzeros, scales;
};
// codes int32 [out, in]; zeros int32 [G, out]; scales float [G, out].
AwqTensors awq_pack_linear(const torch::Tensor& codes, const torch::Tensor& zeros, const torch::Tensor& scales);
// W[o, i] = scale[i/group, o] * (q[i, o] - zero[i/group, o]).
torch::Tensor awq_dequantize(const AwqTensors& t, int64_t group_size);

// ---- bitsandbytes 4-bit (NF4 / FP4) ---------------------------------------
// bitsandbytes' code books (functional.get_4bit_type), indexed by the 4-bit
// code. NF4 is sorted; FP4 is in bit-pattern order (bit 3 = sign, values
// divided by 12, the largest magnitude).
const std::array<float, 16>& nf4_code();
const std::array<float, 16>& fp4_code();
// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(True, 7, 8)),
// sorted, 256 values: the code book of the double-quantized absmax.
torch::Tensor bnb_dynamic_map();

// Codes uint8 [n] (0..15) -> uint8 [(n+1)/2, 1]: code 2k in the high nibble
// of byte k, code 2k+1 in its low nibble (a zero nibble pads odd n).
torch::Tensor pack_nibbles(const torch::Tensor& codes);
torch::Tensor unpack_nibbles(const torch::Tensor& packed, int64_t n);

struct Bnb4 {
  std::string quant_type;       // "nf4" or "fp4"
  int64_t blocksize = 64;
  std::vector<int64_t> shape;   // [out, in]
  std::string dtype = "float32";  // the compute dtype the loader dequantizes to
  torch::Tensor weight;         // uint8 [(n+1)/2, 1]
  torch::Tensor quant_map;      // float32 [16]
  // Without double quantization: absmax float32 [ceil(n/blocksize)].
  // With it: absmax uint8 codes of (absmax - nested_offset) in blocks of
  // nested_blocksize, each block scaled by nested_absmax (float32) and
  // mapped through nested_quant_map (float32 [256]).
  bool nested = false;
  torch::Tensor absmax, nested_absmax, nested_quant_map;
  int64_t nested_blocksize = 256;
  float nested_offset = 0;
};
// Blockwise absmax quantization of the row-major flattened weight, as
// bitsandbytes' quantize_4bit: x / absmax(block) clamped to [-1, 1], the
// nearest code (ties to the lower, torch.bucketize on the midpoints of the
// sorted code book); double_quant as compress_statistics=True (offset =
// mean(absmax), 8-bit dynamic map, block 256).
Bnb4 bnb4_quantize(const torch::Tensor& w, const std::string& quant_type, int64_t blocksize, bool double_quant,
                   const std::string& dtype);
// code[q] * absmax[block] in float32, cast to `dtype` (and back to float32).
torch::Tensor bnb4_dequantize(const Bnb4& b);
// The per-block absmax the loader uses (after undoing double quantization).
torch::Tensor bnb4_absmax(const Bnb4& b);
// The JSON that the uint8 tensor `weight.quant_state.bitsandbytes__<type>`
// holds (QuantState.as_dict(packed=True)'s non-tensor items).
nlohmann::json bnb4_quant_state_json(const Bnb4& b);
// Rebuilds a Bnb4 from its stored tensors (by suffix after "<module>.weight":
// "" (the packed weight), "absmax", "quant_map", "nested_absmax",
// "nested_quant_map", "quant_state.bitsandbytes__nf4|fp4"). `where` names
// the module in errors.
Result<Bnb4> bnb4_from_tensors(const std::map<std::string, torch::Tensor>& t, const std::string& where);

// ---- bitsandbytes 8-bit (LLM.int8) ----------------------------------------
// weight int8 [out, in] = round(W * 127 / SCB[row]); SCB float32 [out] =
// max |W[row, :]| (int8_vectorwise_quant with threshold 0, as Int8Params
// quantizes a weight). An all-zero row stores SCB 0 and codes 0.
struct Bnb8 {
  torch::Tensor weight, SCB;
};
Bnb8 bnb8_quantize(const torch::Tensor& w);
// weight * SCB[row] * (1/127 as bitsandbytes writes it: 7.874015718698502e-3).
torch::Tensor bnb8_dequantize(const Bnb8& b);

}  // namespace tenpak::quant
