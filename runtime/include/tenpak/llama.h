// A Llama-family model in libtorch: the Hugging Face directory layout
// (config.json + safetensors, sharded or not), its weights by Hugging Face
// name, and a float32 CPU forward pass with optional hooks and a KV cache.
//
// Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (q/k/v
// biases). Anything else is refused with the file, field and value named.
// The math follows transformers' modeling_llama.py (RMSNorm in float32,
// rotate-half RoPE, grouped-query attention with a causal mask, SwiGLU), so
// logits agree with LlamaForCausalLM on the same weights (tests/runtime).
//
// Contract for the quantization tools (quant/): the signatures below are
// stable; additions only.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::rt {

struct LlamaConfig {
  std::string architecture;  // "LlamaForCausalLM", "MistralForCausalLM" or "Qwen2ForCausalLM"
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0,
          num_kv_heads = 0, head_dim = 0, max_position = 0;
  double rms_eps = 1e-6, rope_theta = 10000.0;
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2: q_proj, k_proj, v_proj carry a bias
  std::string torch_dtype = "float32";
  // Mistral/Qwen2 sliding-window attention: a query sees the last
  // sliding_window positions (itself included); 0 = the whole prefix.
  int64_t sliding_window = 0;
};

// Reads a parsed config.json. Errors (Errc::unsupported for an architecture,
// activation, rope scaling or sliding window we do not run; Errc::invalid for
// a missing or inconsistent field) name `file_for_errors`, the field and the
// value found.
Result<LlamaConfig> parse_config(const nlohmann::json& j, const std::string& file_for_errors);
// Reads and parses DIR/config.json (or the file itself when given a file).
Result<LlamaConfig> read_config(const std::string& path);
// The config.json that `tenpak convert` writes: transformers' LlamaConfig
// keys (docs/RUNTIME.md lists them), readable by parse_config again.
nlohmann::json config_to_json(const LlamaConfig&);

// Weights by Hugging Face name ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight",
// "model.layers.3.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"...), float32, contiguous, CPU.
// With tied embeddings "lm_head.weight" may be absent: the head is then the embedding.
struct Model {
  LlamaConfig cfg;
  std::map<std::string, torch::Tensor> w;
};

// Loads a model directory: config.json, then model.safetensors.index.json's
// shards (every shard it names must exist) or every *.safetensors file.
// F32, F16 and BF16 tensors are converted to float32. Runs check_model.
// Errors: Errc::invalid (missing file or tensor, shape against config.json),
// Errc::unsupported (architecture, dtype), Errc::corrupt (bad safetensors,
// NaN/Inf: the tensor is named).
Result<Model> load_model_dir(const std::string& dir);
// Every tensor the config requires is present with its shape, no unknown
// tensor, every value finite. Names the first offending tensor.
Status check_model(const Model&);

// Every tensor a model of this config holds, with its shape, in the order
// convert writes them. "lm_head.weight" is left out with tied embeddings.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors(const LlamaConfig&);

// The seven linear weights of a layer, full HF names, in execution order (q,k,v,o,gate,up,down).
std::vector<std::string> linear_names(const LlamaConfig&, int layer);

struct ForwardHooks {
  // input x [B,T,in] of each linear, before it is applied (name = full weight name)
  std::function<void(const std::string& weight_name, const torch::Tensor& x)> on_linear_input;
};

// Full-sequence forward, positions 0..T-1, no cache.
torch::Tensor forward(const Model&, const torch::Tensor& tokens /*[B,T] int64*/,
                      const ForwardHooks* hooks = nullptr);   // logits [B,T,V] float32
torch::Tensor embed(const Model&, const torch::Tensor& tokens);                        // [B,T,D]
torch::Tensor block_forward(const Model&, int layer, const torch::Tensor& h /*[B,T,D]*/,
                            const ForwardHooks* hooks = nullptr);                      // [B,T,D]
// Final RMSNorm and the LM head: hidden states [B,T,D] -> logits [B,T,V].
torch::Tensor head(const Model&, const torch::Tensor& h);

// Keys and values of the positions seen so far, per layer ([B, kv_heads,
// len, head_dim]), for decoding one token at a time.
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t len = 0;  // positions already cached
};
// Forward of `tokens` [B,T] at positions cache.len .. cache.len+T-1,
// attending to the cached positions and to each other causally; appends
// their keys and values to `cache`. Same logits as forward() on the whole
// sequence (within float rounding).
torch::Tensor forward_cached(const Model&, const torch::Tensor& tokens, KVCache& cache,
                             const ForwardHooks* hooks = nullptr);

// Writes `m` as a model directory: config.json (config_to_json) and
// model.safetensors (F32, expected_tensors order, {"format": "pt"}).
// `dir` must exist; files are written under temporary names and renamed.
Status write_model_dir(const Model& m, const std::string& dir);

}  // namespace tenpak::rt
