// TrainForward: the forward of rt::forward (runtime/src/llama.cc, after
// transformers' modeling_llama.py) with autograd on, each linear's
// effective weight given by a callback. rt::forward runs under NoGradGuard
// (inference only); training code (tenpak fixture stories-ft) and tuning
// code (BitDelta's scale distillation in delta build --lossy) share this one
// restatement, and each checks it against rt::forward before it trusts it
// (check_train_forward), so what they optimise is the model the runtime
// evaluates.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "tenpak/llama.h"

namespace tenpak::ml {

// Logits [B, T, vocab] of tokens [B, T]; weight(name) is the tensor the
// model uses for `name` (any of rt::Model::w's names).
struct TrainForward {
  const rt::LlamaConfig& c;
  std::function<torch::Tensor(const std::string&)> weight;

  torch::Tensor rms(const torch::Tensor& x, const torch::Tensor& w) const {
    return w * (x * torch::rsqrt(x.pow(2).mean(-1, true) + c.rms_eps));
  }
  static torch::Tensor rotate_half(const torch::Tensor& x) {
    const int64_t h = x.size(-1) / 2;
    return torch::cat({-x.slice(-1, h), x.slice(-1, 0, h)}, -1);
  }
  torch::Tensor operator()(const torch::Tensor& tokens) const {
    const int64_t B = tokens.size(0), T = tokens.size(1), H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
    auto idx = torch::arange(0, hd, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(hd);
    auto inv_freq = 1.0 / torch::pow(torch::scalar_tensor(c.rope_theta, torch::kFloat32), idx);
    auto freqs = torch::outer(torch::arange(0, T, torch::kInt64).to(torch::kFloat32), inv_freq);
    auto emb = torch::cat({freqs, freqs}, -1);
    auto cos = emb.cos(), sin = emb.sin();
    auto mask = torch::arange(0, T, torch::kInt64).unsqueeze(0) > torch::arange(0, T, torch::kInt64).unsqueeze(1);
    auto h = torch::embedding(weight("model.embed_tokens.weight"), tokens);
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      auto x = rms(h, weight(p + "input_layernorm.weight"));
      auto q = torch::linear(x, weight(p + "self_attn.q_proj.weight")).view({B, T, H, hd}).transpose(1, 2);
      auto k = torch::linear(x, weight(p + "self_attn.k_proj.weight")).view({B, T, KV, hd}).transpose(1, 2);
      auto v = torch::linear(x, weight(p + "self_attn.v_proj.weight")).view({B, T, KV, hd}).transpose(1, 2);
      q = q * cos + rotate_half(q) * sin;
      k = k * cos + rotate_half(k) * sin;
      if (H != KV) {
        k = k.repeat_interleave(H / KV, 1);
        v = v.repeat_interleave(H / KV, 1);
      }
      auto s = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(hd));
      s = s.masked_fill(mask, -std::numeric_limits<float>::infinity());
      auto a = torch::matmul(torch::softmax(s, -1), v).transpose(1, 2).reshape({B, T, H * hd});
      h = h + torch::linear(a, weight(p + "self_attn.o_proj.weight"));
      auto y = rms(h, weight(p + "post_attention_layernorm.weight"));
      h = h + torch::linear(torch::silu(torch::linear(y, weight(p + "mlp.gate_proj.weight"))) *
                                torch::linear(y, weight(p + "mlp.up_proj.weight")),
                            weight(p + "mlp.down_proj.weight"));
    }
    auto x = rms(h, weight("model.norm.weight"));
    return torch::linear(x, c.tie_embeddings ? weight("model.embed_tokens.weight") : weight("lm_head.weight"));
  }
};

// max |logit| difference between `fwd` and rt::forward(m) on `probe` [1, T];
// callers refuse to go on above 1e-4.
inline double train_forward_difference(const TrainForward& fwd, const rt::Model& m, const torch::Tensor& probe) {
  torch::NoGradGuard ng;
  return (fwd(probe) - rt::forward(m, probe)).abs().max().item<double>();
}

}  // namespace tenpak::ml
