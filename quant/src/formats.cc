#include <cmath>
#include <stdexcept>

#include "tenpak/quant_formats.h"

namespace tenpak::quant {
namespace {

void check_bits(int bits) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw std::invalid_argument("GPTQ packing: bits must be 2, 3, 4 or 8, got " + std::to_string(bits));
}

// 32 codes -> `bits` words: one little-endian bit string, code j at bit j*bits.
void pack32(const uint32_t* v, int bits, uint32_t* out) {
  for (int w = 0; w < bits; ++w) out[w] = 0;
  const uint32_t mask = (1u << bits) - 1;
  for (int j = 0; j < 32; ++j) {
    const int pos = j * bits, w = pos / 32, s = pos % 32;
    const uint64_t x = static_cast<uint64_t>(v[j] & mask) << s;
    out[w] |= static_cast<uint32_t>(x);
    if (s + bits > 32) out[w + 1] |= static_cast<uint32_t>(x >> 32);
  }
}

void unpack32(const uint32_t* words, int bits, uint32_t* v) {
  const uint32_t mask = (1u << bits) - 1;
  for (int j = 0; j < 32; ++j) {
    const int pos = j * bits, w = pos / 32, s = pos % 32;
    uint64_t x = words[w];
    if (s + bits > 32) x |= static_cast<uint64_t>(words[w + 1]) << 32;
    v[j] = static_cast<uint32_t>(x >> s) & mask;
  }
}

torch::Tensor as_int32_contig(const torch::Tensor& t) { return t.to(torch::kInt32).contiguous(); }

}  // namespace

torch::Tensor gptq_pack_rows(const torch::Tensor& q, int bits) {
  check_bits(bits);
  auto c = as_int32_contig(q);
  const int64_t K = c.size(0), N = c.size(1);
  if (K % 32 != 0) throw std::invalid_argument("GPTQ packing: rows must be a multiple of 32");
  auto out = torch::zeros({K / 32 * bits, N}, torch::kInt32);
  const auto* src = reinterpret_cast<const uint32_t*>(c.data_ptr<int32_t>());
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  uint32_t v[32], w[8];
  for (int64_t t = 0; t < K / 32; ++t)
    for (int64_t n = 0; n < N; ++n) {
      for (int j = 0; j < 32; ++j) v[j] = src[(t * 32 + j) * N + n];
      pack32(v, bits, w);
      for (int b = 0; b < bits; ++b) dst[(t * bits + b) * N + n] = w[b];
    }
  return out;
}

torch::Tensor gptq_unpack_rows(const torch::Tensor& packed, int bits) {
  check_bits(bits);
  auto c = as_int32_contig(packed);
  const int64_t R = c.size(0), N = c.size(1);
  if (R % bits != 0) throw std::invalid_argument("GPTQ unpacking: packed rows not a multiple of bits");
  const int64_t T = R / bits;
  auto out = torch::empty({T * 32, N}, torch::kInt32);
  const auto* src = reinterpret_cast<const uint32_t*>(c.data_ptr<int32_t>());
  auto* dst = out.data_ptr<int32_t>();
  uint32_t v[32], w[8];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      for (int b = 0; b < bits; ++b) w[b] = src[(t * bits + b) * N + n];
      unpack32(w, bits, v);
      for (int j = 0; j < 32; ++j) dst[(t * 32 + j) * N + n] = static_cast<int32_t>(v[j]);
    }
  return out;
}

torch::Tensor gptq_pack_cols(const torch::Tensor& z, int bits) {
  return gptq_pack_rows(z.t(), bits).t().contiguous();
}

torch::Tensor gptq_unpack_cols(const torch::Tensor& packed, int bits) {
  return gptq_unpack_rows(packed.t(), bits).t().contiguous();
}

GptqTensors gptq_pack(const torch::Tensor& codes, const torch::Tensor& zeros, const torch::Tensor& scales,
                      const torch::Tensor& g_idx, int bits) {
  GptqTensors t;
  t.qweight = gptq_pack_rows(codes.t(), bits);
  t.qzeros = gptq_pack_cols(zeros.to(torch::kInt32) - 1, bits);
  t.scales = scales.to(torch::kHalf).contiguous();
  t.g_idx = g_idx.to(torch::kInt32).contiguous();
  return t;
}

torch::Tensor gptq_dequantize(const GptqTensors& t, int bits) {
  auto q = gptq_unpack_rows(t.qweight, bits);               // [in, out]
  auto z = gptq_unpack_cols(t.qzeros, bits) + 1;            // [G, out]
  auto s = t.scales.to(torch::kFloat);                      // [G, out]
  auto g = t.g_idx.to(torch::kLong);                        // [in]
  auto zi = z.index_select(0, g).to(torch::kFloat);         // [in, out]
  auto si = s.index_select(0, g);
  return (si * (q.to(torch::kFloat) - zi)).t().contiguous();
}

torch::Tensor awq_pack(const torch::Tensor& q) {
  auto c = as_int32_contig(q);
  const int64_t R = c.size(0), C = c.size(1);
  if (C % 8 != 0) throw std::invalid_argument("AWQ packing: columns must be a multiple of 8");
  auto out = torch::zeros({R, C / 8}, torch::kInt32);
  const auto* src = c.data_ptr<int32_t>();
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t w = 0; w < C / 8; ++w) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) word |= (static_cast<uint32_t>(src[r * C + w * 8 + kAwqOrder[i]]) & 0xF) << (4 * i);
      dst[r * (C / 8) + w] = word;
    }
  return out;
}

torch::Tensor awq_unpack(const torch::Tensor& packed) {
  auto c = as_int32_contig(packed);
  const int64_t R = c.size(0), W = c.size(1);
  auto out = torch::empty({R, W * 8}, torch::kInt32);
  const auto* src = reinterpret_cast<const uint32_t*>(c.data_ptr<int32_t>());
  auto* dst = out.data_ptr<int32_t>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t w = 0; w < W; ++w) {
      const uint32_t word = src[r * W + w];
      for (int i = 0; i < 8; ++i) dst[r * W * 8 + w * 8 + kAwqOrder[i]] = static_cast<int32_t>((word >> (4 * i)) & 0xF);
    }
  return out;
}

AwqTensors awq_pack_linear(const torch::Tensor& codes, const torch::Tensor& zeros, const torch::Tensor& scales) {
  AwqTensors t;
  t.qweight = awq_pack(codes.t());
  t.qzeros = awq_pack(zeros);
  t.scales = scales.to(torch::kHalf).contiguous();
  return t;
}

torch::Tensor awq_dequantize(const AwqTensors& t, int64_t group_size) {
  auto q = awq_unpack(t.qweight).to(torch::kFloat);  // [in, out]
  auto z = awq_unpack(t.qzeros).to(torch::kFloat);   // [G, out]
  auto s = t.scales.to(torch::kFloat);
  const int64_t in = q.size(0);
  auto g = torch::arange(in, torch::kLong).div(group_size, "floor");
  return (s.index_select(0, g) * (q - z.index_select(0, g))).t().contiguous();
}

const std::array<float, 16>& nf4_code() {
  static const std::array<float, 16> c = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
      -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
      0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
      0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
  return c;
}

const std::array<float, 16>& fp4_code() {
  static const std::array<float, 16> c = [] {
    const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
    std::array<float, 16> a{};
    for (int i = 0; i < 16; ++i) a[i] = raw[i] / 12.0f;
    return a;
  }();
  return c;
}

torch::Tensor bnb_dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
  // exponent i = 0..6, 2^i fraction values (midpoints of linspace(0.1, 1,
  // 2^i + 1)) times 10^(i-6), both signs; then 0 and 1; sorted.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    auto b = torch::linspace(0.1, 1.0, (1 << i) + 1, torch::kFloat);
    auto means = (b.slice(0, 0, -1) + b.slice(0, 1)) / 2.0;
    auto pos = means * std::pow(10.0, -6 + i);
    auto neg = means * -std::pow(10.0, -6 + i);
    for (int64_t k = 0; k < pos.numel(); ++k) data.push_back(pos[k].item<float>());
    for (int64_t k = 0; k < neg.numel(); ++k) data.push_back(neg[k].item<float>());
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return torch::tensor(data, torch::kFloat);
}

torch::Tensor pack_nibbles(const torch::Tensor& codes) {
  auto c = codes.to(torch::kUInt8).reshape({-1}).contiguous();
  const int64_t n = c.numel();
  auto out = torch::zeros({(n + 1) / 2, 1}, torch::kUInt8);
  const auto* s = c.data_ptr<uint8_t>();
  auto* d = out.data_ptr<uint8_t>();
  for (int64_t k = 0; k < n; ++k) {
    if (k % 2 == 0) d[k / 2] |= static_cast<uint8_t>((s[k] & 0xF) << 4);
    else d[k / 2] |= static_cast<uint8_t>(s[k] & 0xF);
  }
  return out;
}

torch::Tensor unpack_nibbles(const torch::Tensor& packed, int64_t n) {
  auto c = packed.to(torch::kUInt8).reshape({-1}).contiguous();
  if (c.numel() < (n + 1) / 2) throw std::invalid_argument("unpack_nibbles: too few bytes");
  auto out = torch::empty({n}, torch::kUInt8);
  const auto* s = c.data_ptr<uint8_t>();
  auto* d = out.data_ptr<uint8_t>();
  for (int64_t k = 0; k < n; ++k) d[k] = (k % 2 == 0) ? (s[k / 2] >> 4) : (s[k / 2] & 0xF);
  return out;
}

namespace {

// bitsandbytes' blockwise absmax scaling (backends/default/ops.py): full
// blocks, then one partial block; x / absmax clamped to [-1, 1].
void blockwise_scale(const torch::Tensor& flat, int64_t blocksize, torch::Tensor& absmax, torch::Tensor& scaled) {
  const int64_t n = flat.numel(), rem = n % blocksize, full = n - rem, blocks = full / blocksize;
  std::vector<torch::Tensor> am, sc;
  if (blocks > 0) {
    auto a = flat.slice(0, 0, full).reshape({blocks, blocksize});
    auto m = std::get<0>(a.abs().max(1));
    am.push_back(m);
    sc.push_back(torch::clamp(a * (1.0 / m.clamp_min(1e-38)).view({-1, 1}), -1, 1).reshape({-1}));
  }
  if (rem) {
    auto tail = flat.slice(0, full);
    auto m = tail.abs().max().clamp_min(1e-38);
    am.push_back(m.unsqueeze(0));
    sc.push_back(torch::clamp(tail / m, -1, 1));
  }
  absmax = torch::cat(am);
  scaled = torch::cat(sc);
}

// Nearest code of a sorted code book: bucketize on the midpoints.
torch::Tensor nearest_sorted(const torch::Tensor& x, const torch::Tensor& sorted_code) {
  auto bounds = (sorted_code.slice(0, 0, -1) + sorted_code.slice(0, 1)) / 2;
  return torch::bucketize(x, bounds, /*out_int32=*/false, /*right=*/false);
}

torch::Tensor code_tensor(const std::array<float, 16>& c) {
  return torch::from_blob(const_cast<float*>(c.data()), {16}, torch::kFloat).clone();
}

torch::Tensor cast_like_dtype(torch::Tensor x, const std::string& dtype) {
  if (dtype == "float16") return x.to(torch::kHalf).to(torch::kFloat);
  if (dtype == "bfloat16") return x.to(torch::kBFloat16).to(torch::kFloat);
  return x;
}

}  // namespace

Bnb4 bnb4_quantize(const torch::Tensor& w, const std::string& quant_type, int64_t blocksize, bool double_quant,
                   const std::string& dtype) {
  if (quant_type != "nf4" && quant_type != "fp4") throw std::invalid_argument("bnb4: quant_type nf4 or fp4");
  Bnb4 b;
  b.quant_type = quant_type;
  b.blocksize = blocksize;
  b.dtype = dtype;
  for (auto s : w.sizes()) b.shape.push_back(s);
  b.quant_map = code_tensor(quant_type == "nf4" ? nf4_code() : fp4_code());
  auto flat = w.to(torch::kFloat).reshape({-1}).contiguous();
  torch::Tensor absmax, scaled;
  blockwise_scale(flat, blocksize, absmax, scaled);
  auto order = torch::argsort(b.quant_map);
  auto q = nearest_sorted(scaled, b.quant_map.index_select(0, order));
  q = order.index_select(0, q);  // sorted position -> code (identity for NF4)
  b.weight = pack_nibbles(q);
  if (double_quant) {
    b.nested = true;
    auto offset = absmax.mean();
    b.nested_offset = offset.item<float>();
    torch::Tensor a2, s2;
    blockwise_scale(absmax - offset, b.nested_blocksize, a2, s2);
    b.nested_quant_map = bnb_dynamic_map();
    b.absmax = nearest_sorted(s2, b.nested_quant_map).to(torch::kUInt8);
    b.nested_absmax = a2;
  } else {
    b.absmax = absmax;
  }
  return b;
}

torch::Tensor bnb4_absmax(const Bnb4& b) {
  if (!b.nested) return b.absmax.to(torch::kFloat);
  const int64_t n = b.absmax.numel();
  auto v = b.nested_quant_map.index_select(0, b.absmax.to(torch::kLong).reshape({-1}));
  auto blk = torch::arange(n, torch::kLong).div(b.nested_blocksize, "floor");
  return v * b.nested_absmax.index_select(0, blk) + b.nested_offset;
}

torch::Tensor bnb4_dequantize(const Bnb4& b) {
  int64_t n = 1;
  for (auto s : b.shape) n *= s;
  auto q = unpack_nibbles(b.weight, n).to(torch::kLong);
  auto v = b.quant_map.index_select(0, q);
  auto absmax = bnb4_absmax(b);
  auto blk = torch::arange(n, torch::kLong).div(b.blocksize, "floor");
  auto out = (v * absmax.index_select(0, blk)).reshape(b.shape);
  return cast_like_dtype(out, b.dtype).contiguous();
}

nlohmann::json bnb4_quant_state_json(const Bnb4& b) {
  nlohmann::ordered_json j;
  j["quant_type"] = b.quant_type;
  j["blocksize"] = b.blocksize;
  j["dtype"] = b.dtype;
  j["shape"] = b.shape;
  if (b.nested) {
    j["nested_blocksize"] = b.nested_blocksize;
    j["nested_dtype"] = "float32";
    j["nested_offset"] = static_cast<double>(b.nested_offset);
  }
  return nlohmann::json::parse(j.dump());
}

Result<Bnb4> bnb4_from_tensors(const std::map<std::string, torch::Tensor>& t, const std::string& where) {
  auto get = [&](const std::string& k) -> torch::Tensor {
    auto it = t.find(k);
    return it == t.end() ? torch::Tensor() : it->second;
  };
  Bnb4 b;
  torch::Tensor qs;
  for (const char* ty : {"nf4", "fp4"}) {
    auto x = get(std::string("quant_state.bitsandbytes__") + ty);
    if (x.defined()) qs = x;
  }
  if (!qs.defined()) return Status{Errc::corrupt, where + ": no weight.quant_state.bitsandbytes__nf4|fp4 tensor"};
  auto bytes = qs.to(torch::kUInt8).contiguous();
  std::string js(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(js);
    b.quant_type = j.at("quant_type").get<std::string>();
    b.blocksize = j.at("blocksize").get<int64_t>();
    b.dtype = j.at("dtype").get<std::string>();
    b.shape = j.at("shape").get<std::vector<int64_t>>();
    if (j.contains("nested_offset")) {
      b.nested = true;
      b.nested_blocksize = j.at("nested_blocksize").get<int64_t>();
      b.nested_offset = j.at("nested_offset").get<float>();
    }
  } catch (const std::exception& e) {
    return Status{Errc::corrupt, where + ": weight.quant_state is not bitsandbytes' JSON: " + e.what()};
  }
  if (b.quant_type != "nf4" && b.quant_type != "fp4")
    return Status{Errc::unsupported, where + ": quant_type '" + b.quant_type + "' (nf4 or fp4 supported)"};
  b.weight = get("");
  b.absmax = get("absmax");
  b.quant_map = get("quant_map");
  if (!b.weight.defined() || !b.absmax.defined() || !b.quant_map.defined() || b.quant_map.numel() != 16)
    return Status{Errc::corrupt, where + ": weight, weight.absmax and weight.quant_map (16 values) are required"};
  b.quant_map = b.quant_map.to(torch::kFloat).reshape({-1});
  int64_t n = 1;
  for (auto s : b.shape) n *= s;
  if (b.shape.size() != 2 || b.weight.numel() != (n + 1) / 2 || b.blocksize <= 0 ||
      b.absmax.numel() != (n + b.blocksize - 1) / b.blocksize)
    return Status{Errc::corrupt, where + ": 4-bit weight, absmax and quant_state shape disagree"};
  if (b.nested) {
    b.nested_absmax = get("nested_absmax");
    b.nested_quant_map = get("nested_quant_map");
    if (!b.nested_absmax.defined() || !b.nested_quant_map.defined() || b.nested_quant_map.numel() != 256 ||
        b.nested_blocksize <= 0 ||
        b.nested_absmax.numel() != (b.absmax.numel() + b.nested_blocksize - 1) / b.nested_blocksize)
      return Status{Errc::corrupt, where + ": double-quantized absmax without matching nested_absmax / nested_quant_map"};
    b.nested_absmax = b.nested_absmax.to(torch::kFloat).reshape({-1});
    b.nested_quant_map = b.nested_quant_map.to(torch::kFloat).reshape({-1});
  }
  return b;
}

Bnb8 bnb8_quantize(const torch::Tensor& w) {
  auto a = w.to(torch::kFloat);
  auto stats = std::get<0>(a.abs().max(1));
  // bitsandbytes: A * (127.0 / row_stats), Python's scalar / tensor being reciprocal(t) * 127.
  auto q = torch::round(a * (stats.reciprocal() * 127.0).unsqueeze(1));
  q = torch::where(stats.unsqueeze(1) > 0, q, torch::zeros_like(q));
  return {q.to(torch::kInt8).contiguous(), stats.contiguous()};
}

torch::Tensor bnb8_dequantize(const Bnb8& b) {
  return (b.weight.to(torch::kFloat) * b.SCB.to(torch::kFloat).view({-1, 1}) * 7.874015718698502e-3f).contiguous();
}

}  // namespace tenpak::quant
