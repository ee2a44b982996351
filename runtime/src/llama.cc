#include "tenpak/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

#include "tenpak/model.h"
#include "tenpak/out_file.h"
#include "tenpak/safetensors.h"

namespace fs = std::filesystem;

namespace tenpak::rt {

namespace {

std::string show(const nlohmann::json& v) { return v.dump(); }

Status field_error(Errc code, const std::string& file, const std::string& field, const nlohmann::json& v,
                   const std::string& why) {
  return {code, file + ": field '" + field + "' = " + show(v) + ": " + why};
}

// A positive integer field; `def` < 0 means required.
Status get_int(const nlohmann::json& j, const std::string& file, const char* key, int64_t def, int64_t& out) {
  if (!j.contains(key) || j[key].is_null()) {
    if (def < 0) return {Errc::invalid, file + ": field '" + key + "' is missing"};
    out = def;
    return Status::Ok();
  }
  const auto& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    return field_error(Errc::invalid, file, key, v, "expected a positive integer");
  out = v.get<int64_t>();
  return Status::Ok();
}

Status get_double(const nlohmann::json& j, const std::string& file, const char* key, double def, double& out) {
  if (!j.contains(key) || j[key].is_null()) {
    out = def;
    return Status::Ok();
  }
  const auto& v = j[key];
  if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
    return field_error(Errc::invalid, file, key, v, "expected a positive number");
  out = v.get<double>();
  return Status::Ok();
}

Status get_bool(const nlohmann::json& j, const std::string& file, const char* key, bool def, bool& out) {
  if (!j.contains(key) || j[key].is_null()) {
    out = def;
    return Status::Ok();
  }
  if (!j[key].is_boolean()) return field_error(Errc::invalid, file, key, j[key], "expected true or false");
  out = j[key].get<bool>();
  return Status::Ok();
}

}  // namespace

Result<LlamaConfig> parse_config(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) return Status{Errc::invalid, file + ": not a JSON object"};
  LlamaConfig c;
  static const std::map<std::string, std::string> kByModelType = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  if (j.contains("architectures") && !j["architectures"].is_null()) {
    const auto& a = j["architectures"];
    if (!a.is_array() || a.size() != 1 || !a[0].is_string())
      return field_error(Errc::unsupported, file, "architectures", a, "expected one architecture name");
    c.architecture = a[0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string() &&
             kByModelType.count(j["model_type"].get<std::string>())) {
    c.architecture = kByModelType.at(j["model_type"].get<std::string>());
  } else {
    return Status{Errc::invalid, file + ": neither 'architectures' nor a known 'model_type' names the model"};
  }
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "MistralForCausalLM" &&
      c.architecture != "Qwen2ForCausalLM")
    return field_error(Errc::unsupported, file, "architectures", j.value("architectures", nlohmann::json()),
                       "supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");

  TP_RETURN_IF_ERROR(get_int(j, file, "vocab_size", -1, c.vocab_size));
  TP_RETURN_IF_ERROR(get_int(j, file, "hidden_size", -1, c.hidden_size));
  TP_RETURN_IF_ERROR(get_int(j, file, "intermediate_size", -1, c.intermediate_size));
  TP_RETURN_IF_ERROR(get_int(j, file, "num_hidden_layers", -1, c.num_layers));
  TP_RETURN_IF_ERROR(get_int(j, file, "num_attention_heads", -1, c.num_heads));
  TP_RETURN_IF_ERROR(get_int(j, file, "num_key_value_heads", c.num_heads, c.num_kv_heads));
  if (c.hidden_size % c.num_heads != 0 && !j.contains("head_dim"))
    return field_error(Errc::invalid, file, "num_attention_heads", j["num_attention_heads"],
                       "does not divide hidden_size " + std::to_string(c.hidden_size));
  TP_RETURN_IF_ERROR(get_int(j, file, "head_dim", c.hidden_size / std::max<int64_t>(c.num_heads, 1), c.head_dim));
  if (c.head_dim % 2 != 0)
    return field_error(Errc::invalid, file, "head_dim", c.head_dim, "rotary embeddings need an even head_dim");
  if (c.num_heads % c.num_kv_heads != 0)
    return field_error(Errc::invalid, file, "num_key_value_heads", c.num_kv_heads,
                       "must divide num_attention_heads " + std::to_string(c.num_heads));
  TP_RETURN_IF_ERROR(get_int(j, file, "max_position_embeddings", 2048, c.max_position));
  TP_RETURN_IF_ERROR(get_double(j, file, "rms_norm_eps", 1e-6, c.rms_eps));
  TP_RETURN_IF_ERROR(get_double(j, file, "rope_theta", 10000.0, c.rope_theta));
  TP_RETURN_IF_ERROR(get_bool(j, file, "tie_word_embeddings", false, c.tie_embeddings));
  c.qkv_bias = c.architecture == "Qwen2ForCausalLM";

  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    return field_error(Errc::unsupported, file, "hidden_act", j["hidden_act"], "only silu (SwiGLU) is supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    return field_error(Errc::unsupported, file, "rope_scaling", j["rope_scaling"], "RoPE scaling is not supported");
  for (const char* k : {"attention_bias", "mlp_bias"}) {
    bool b = false;
    TP_RETURN_IF_ERROR(get_bool(j, file, k, false, b));
    if (b) return field_error(Errc::unsupported, file, k, true, "biases on these projections are not supported");
  }
  // Mistral: sliding_window; Qwen2: only when use_sliding_window is true.
  bool use_window = c.architecture == "MistralForCausalLM";
  if (c.architecture == "Qwen2ForCausalLM") TP_RETURN_IF_ERROR(get_bool(j, file, "use_sliding_window", false, use_window));
  if (use_window) TP_RETURN_IF_ERROR(get_int(j, file, "sliding_window", 0, c.sliding_window));
  if (c.sliding_window >= c.max_position) c.sliding_window = 0;

  if (j.contains("torch_dtype") && !j["torch_dtype"].is_null()) {
    if (!j["torch_dtype"].is_string())
      return field_error(Errc::invalid, file, "torch_dtype", j["torch_dtype"], "expected a string");
    c.torch_dtype = j["torch_dtype"].get<std::string>();
    if (c.torch_dtype != "float32" && c.torch_dtype != "float16" && c.torch_dtype != "bfloat16")
      return field_error(Errc::unsupported, file, "torch_dtype", j["torch_dtype"],
                         "supported: float32, float16, bfloat16");
  }
  return c;
}

Result<LlamaConfig> read_config(const std::string& path) {
  std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  std::ifstream f(file, std::ios::binary);
  if (!f) return Status{Errc::invalid, file + ": cannot open (no config.json in the model directory?)"};
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded()) return Status{Errc::corrupt, file + ": not valid JSON"};
  return parse_config(j, file);
}

nlohmann::json config_to_json(const LlamaConfig& c) {
  static const std::map<std::string, std::string> kType = {
      {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"}};
  nlohmann::json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = kType.count(c.architecture) ? kType.at(c.architecture) : "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  if (c.head_dim * c.num_heads != c.hidden_size) j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position;
  j["rms_norm_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["torch_dtype"] = c.torch_dtype;
  if (c.architecture == "MistralForCausalLM") j["sliding_window"] = c.sliding_window ? nlohmann::json(c.sliding_window) : nlohmann::json();
  if (c.architecture == "Qwen2ForCausalLM") {
    j["use_sliding_window"] = c.sliding_window != 0;
    if (c.sliding_window) j["sliding_window"] = c.sliding_window;
  }
  return j;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors(const LlamaConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> v;
  const int64_t D = c.hidden_size, I = c.intermediate_size, q = c.num_heads * c.head_dim,
                kv = c.num_kv_heads * c.head_dim;
  v.push_back({"model.embed_tokens.weight", {c.vocab_size, D}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    v.push_back({p + "input_layernorm.weight", {D}});
    v.push_back({p + "self_attn.q_proj.weight", {q, D}});
    if (c.qkv_bias) v.push_back({p + "self_attn.q_proj.bias", {q}});
    v.push_back({p + "self_attn.k_proj.weight", {kv, D}});
    if (c.qkv_bias) v.push_back({p + "self_attn.k_proj.bias", {kv}});
    v.push_back({p + "self_attn.v_proj.weight", {kv, D}});
    if (c.qkv_bias) v.push_back({p + "self_attn.v_proj.bias", {kv}});
    v.push_back({p + "self_attn.o_proj.weight", {D, q}});
    v.push_back({p + "post_attention_layernorm.weight", {D}});
    v.push_back({p + "mlp.gate_proj.weight", {I, D}});
    v.push_back({p + "mlp.up_proj.weight", {I, D}});
    v.push_back({p + "mlp.down_proj.weight", {D, I}});
  }
  v.push_back({"model.norm.weight", {D}});
  if (!c.tie_embeddings) v.push_back({"lm_head.weight", {c.vocab_size, D}});
  return v;
}

std::vector<std::string> linear_names(const LlamaConfig&, int layer) {
  std::string p = "model.layers." + std::to_string(layer) + ".";
  return {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight",
          p + "self_attn.o_proj.weight", p + "mlp.gate_proj.weight",    p + "mlp.up_proj.weight",
          p + "mlp.down_proj.weight"};
}

namespace {

std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
std::string shape_str(const std::vector<int64_t>& s) { return shape_str(c10::IntArrayRef(s)); }

}  // namespace

Status check_model(const Model& m) {
  std::set<std::string> expected;
  for (auto& [name, shape] : expected_tensors(m.cfg)) {
    expected.insert(name);
    auto it = m.w.find(name);
    if (it == m.w.end()) return {Errc::invalid, "tensor '" + name + "' is missing (config.json requires it)"};
    const auto& t = it->second;
    if (t.sizes() != c10::IntArrayRef(shape))
      return {Errc::invalid, "tensor '" + name + "' has shape " + shape_str(t.sizes()) + " but config.json implies " +
                                 shape_str(shape)};
    if (t.scalar_type() != torch::kFloat32 || !t.is_contiguous() || !t.device().is_cpu())
      return {Errc::invalid, "tensor '" + name + "' is not a contiguous float32 CPU tensor"};
    if (!torch::isfinite(t).all().item<bool>()) {
      auto bad = (~torch::isfinite(t)).nonzero();
      int64_t n = bad.size(0);
      auto first = t.view(-1)[(~torch::isfinite(t)).view(-1).nonzero()[0][0]].item<float>();
      std::ostringstream os;
      os << "tensor '" << name << "' has " << n << " non-finite value" << (n > 1 ? "s" : "") << " (first: " << first
         << ")";
      return {Errc::corrupt, os.str()};
    }
  }
  for (auto& [name, t] : m.w) {
    if (expected.count(name)) continue;
    if (name == "lm_head.weight" && m.cfg.tie_embeddings) {
      if (t.sizes() != c10::IntArrayRef({m.cfg.vocab_size, m.cfg.hidden_size}))
        return {Errc::invalid, "tensor 'lm_head.weight' has shape " + shape_str(t.sizes()) +
                                   " but config.json implies " +
                                   shape_str(std::vector<int64_t>{m.cfg.vocab_size, m.cfg.hidden_size})};
      continue;
    }
    return {Errc::invalid, "tensor '" + name + "' is not part of a " + m.cfg.architecture + " with this config.json"};
  }
  return Status::Ok();
}

namespace {

// Reads every tensor of one safetensors file into `out` as float32.
// `wanted` (may be empty = all) restricts to the tensors an index assigns
// to this shard.
Status load_shard(const std::string& path, const std::set<std::string>* wanted, std::map<std::string, torch::Tensor>& out) {
  auto hdr = read_safetensors_header(path);
  if (!hdr.ok()) return hdr.status();
  auto map = Mapping::open(path);
  if (!map.ok()) return map.status();
  for (const auto& ti : hdr->tensors) {
    if (wanted && !wanted->count(ti.name)) continue;
    // Pre-4.31 Llama checkpoints store the RoPE frequencies; they follow from config.json.
    if (ti.name.size() >= 20 && ti.name.ends_with("rotary_emb.inv_freq")) continue;
    torch::ScalarType st;
    switch (ti.dtype) {
      case DType::F32: st = torch::kFloat32; break;
      case DType::F16: st = torch::kFloat16; break;
      case DType::BF16: st = torch::kBFloat16; break;
      default:
        return {Errc::unsupported, path + ": tensor '" + ti.name + "' has dtype " + dtype_name(ti.dtype) +
                                       " (supported: F32, F16, BF16)"};
    }
    if (out.count(ti.name)) return {Errc::corrupt, path + ": tensor '" + ti.name + "' appears in more than one shard"};
    std::vector<int64_t> shape(ti.shape.begin(), ti.shape.end());
    auto raw = torch::empty(shape, torch::TensorOptions().dtype(st));
    if (ti.nbytes()) std::memcpy(raw.data_ptr(), (*map)->data() + ti.begin, ti.nbytes());
    out[ti.name] = st == torch::kFloat32 ? raw : raw.to(torch::kFloat32).contiguous();
  }
  return Status::Ok();
}

}  // namespace

Result<Model> load_model_dir(const std::string& dir) {
  if (!fs::is_directory(dir)) return Status{Errc::invalid, dir + ": not a model directory"};
  Model m;
  auto cfg = read_config(dir);
  if (!cfg.ok()) return cfg.status();
  m.cfg = *cfg;
  const std::string index = (fs::path(dir) / "model.safetensors.index.json").string();
  if (fs::exists(index)) {
    std::ifstream f(index, std::ios::binary);
    nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return Status{Errc::corrupt, index + ": not a safetensors index (no 'weight_map' object)"};
    std::map<std::string, std::set<std::string>> shards;
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) return Status{Errc::corrupt, index + ": weight_map['" + name + "'] is not a file name"};
      std::string s = shard.get<std::string>();
      if (s.empty() || s.find('/') != std::string::npos || s == "..")
        return Status{Errc::corrupt, index + ": weight_map['" + name + "'] = \"" + s + "\" is not a file name"};
      shards[s].insert(name);
    }
    for (auto& [s, names] : shards) {
      std::string p = (fs::path(dir) / s).string();
      if (!fs::exists(p))
        return Status{Errc::invalid, index + ": shard '" + s + "' (holding " + *names.begin() + ", ...) is missing"};
    }
    for (auto& [s, names] : shards) {
      TP_RETURN_IF_ERROR(load_shard((fs::path(dir) / s).string(), &names, m.w));
      for (auto& n : names)
        if (!m.w.count(n) && !n.ends_with("rotary_emb.inv_freq"))
          return Status{Errc::corrupt, index + ": tensor '" + n + "' is not in its shard '" + s + "'"};
    }
  } else {
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) return Status{Errc::invalid, dir + ": no *.safetensors file (and no model.safetensors.index.json)"};
    for (auto& p : files) TP_RETURN_IF_ERROR(load_shard(p, nullptr, m.w));
  }
  Status st = check_model(m);
  if (!st.ok()) return Status{st.code(), dir + ": " + st.message()};
  return m;
}

// ------------------------------------------------------------------ forward

namespace {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  auto var = x.pow(2).mean(-1, /*keepdim=*/true);
  return w * (x * torch::rsqrt(var + eps));
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, h), x.slice(-1, 0, h)}, -1);
}

// cos and sin [T, head_dim] for positions pos0 .. pos0+T-1, computed as
// transformers' LlamaRotaryEmbedding does (float32 inverse frequencies
// theta^(-2i/d), each repeated for both halves).
std::pair<torch::Tensor, torch::Tensor> rope_tables(const LlamaConfig& c, int64_t pos0, int64_t T) {
  auto idx = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(c.head_dim);
  auto inv_freq = 1.0 / torch::pow(torch::scalar_tensor(c.rope_theta, torch::kFloat32), idx);
  auto pos = torch::arange(pos0, pos0 + T, torch::kInt64).to(torch::kFloat32);
  auto freqs = torch::outer(pos, inv_freq);
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

const torch::Tensor* find(const Model& m, const std::string& name) {
  auto it = m.w.find(name);
  return it == m.w.end() ? nullptr : &it->second;
}

torch::Tensor lin(const Model& m, const std::string& name, const torch::Tensor& x, const ForwardHooks* hooks,
                  const std::string& bias = {}) {
  if (hooks && hooks->on_linear_input) hooks->on_linear_input(name, x);
  const torch::Tensor* b = bias.empty() ? nullptr : find(m, bias);
  return torch::linear(x, m.w.at(name), b ? *b : torch::Tensor());
}

// One decoder layer on h [B,T,D] at positions pos0.. ; with a cache, keys
// and values of earlier positions come from it and this call's are appended.
torch::Tensor block_impl(const Model& m, int layer, const torch::Tensor& h, int64_t pos0, const torch::Tensor& cos,
                         const torch::Tensor& sin, KVCache* cache, const ForwardHooks* hooks) {
  const auto& c = m.cfg;
  const int64_t B = h.size(0), T = h.size(1), H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  auto x = rms_norm(h, m.w.at(p + "input_layernorm.weight"), c.rms_eps);
  auto q = lin(m, p + "self_attn.q_proj.weight", x, hooks, c.qkv_bias ? p + "self_attn.q_proj.bias" : "");
  auto k = lin(m, p + "self_attn.k_proj.weight", x, hooks, c.qkv_bias ? p + "self_attn.k_proj.bias" : "");
  auto v = lin(m, p + "self_attn.v_proj.weight", x, hooks, c.qkv_bias ? p + "self_attn.v_proj.bias" : "");
  q = q.view({B, T, H, hd}).transpose(1, 2);
  k = k.view({B, T, KV, hd}).transpose(1, 2);
  v = v.view({B, T, KV, hd}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (cache) {
    if (static_cast<int64_t>(cache->k.size()) <= layer) {
      cache->k.resize(c.num_layers);
      cache->v.resize(c.num_layers);
    }
    if (cache->k[layer].defined()) {
      k = torch::cat({cache->k[layer], k}, 2);
      v = torch::cat({cache->v[layer], v}, 2);
    }
    cache->k[layer] = k;
    cache->v[layer] = v;
  }
  const int64_t S = k.size(2);  // key positions 0 .. S-1 (pos0 + T == S)
  if (H != KV) {
    k = k.repeat_interleave(H / KV, 1);
    v = v.repeat_interleave(H / KV, 1);
  }
  auto scores = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(hd));
  // Query at absolute position pos0+i sees keys j <= pos0+i (and, with a
  // sliding window w, j > pos0+i-w).
  auto qi = torch::arange(pos0, pos0 + T, torch::kInt64).unsqueeze(1);
  auto kj = torch::arange(0, S, torch::kInt64).unsqueeze(0);
  auto masked = kj > qi;
  if (c.sliding_window > 0) masked = masked | (kj <= qi - c.sliding_window);
  scores = scores.masked_fill(masked, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1);
  auto a = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, H * hd});
  auto h2 = h + lin(m, p + "self_attn.o_proj.weight", a, hooks);
  auto y = rms_norm(h2, m.w.at(p + "post_attention_layernorm.weight"), c.rms_eps);
  auto g = lin(m, p + "mlp.gate_proj.weight", y, hooks);
  auto u = lin(m, p + "mlp.up_proj.weight", y, hooks);
  return h2 + lin(m, p + "mlp.down_proj.weight", torch::silu(g) * u, hooks);
}

}  // namespace

torch::Tensor embed(const Model& m, const torch::Tensor& tokens) {
  return torch::embedding(m.w.at("model.embed_tokens.weight"), tokens);
}

torch::Tensor block_forward(const Model& m, int layer, const torch::Tensor& h, const ForwardHooks* hooks) {
  torch::NoGradGuard ng;
  auto [cos, sin] = rope_tables(m.cfg, 0, h.size(1));
  return block_impl(m, layer, h, 0, cos, sin, nullptr, hooks);
}

torch::Tensor head(const Model& m, const torch::Tensor& h) {
  auto x = rms_norm(h, m.w.at("model.norm.weight"), m.cfg.rms_eps);
  const torch::Tensor* w = find(m, "lm_head.weight");
  return torch::linear(x, w ? *w : m.w.at("model.embed_tokens.weight"));
}

torch::Tensor forward(const Model& m, const torch::Tensor& tokens, const ForwardHooks* hooks) {
  torch::NoGradGuard ng;
  auto h = embed(m, tokens);
  auto [cos, sin] = rope_tables(m.cfg, 0, tokens.size(1));
  for (int l = 0; l < m.cfg.num_layers; ++l) h = block_impl(m, l, h, 0, cos, sin, nullptr, hooks);
  return head(m, h);
}

torch::Tensor forward_cached(const Model& m, const torch::Tensor& tokens, KVCache& cache, const ForwardHooks* hooks) {
  torch::NoGradGuard ng;
  auto h = embed(m, tokens);
  const int64_t pos0 = cache.len, T = tokens.size(1);
  auto [cos, sin] = rope_tables(m.cfg, pos0, T);
  for (int l = 0; l < m.cfg.num_layers; ++l) h = block_impl(m, l, h, pos0, cos, sin, &cache, hooks);
  cache.len += T;
  return head(m, h);
}

// ------------------------------------------------------------------ writing


Status write_model_dir(const Model& m, const std::string& dir) {
  TP_RETURN_IF_ERROR(check_model(m));
  std::vector<torch::Tensor> data;  // holds the contiguous copies the file is written from
  std::vector<SafetensorsTensor> tensors;
  for (auto& [name, shape] : expected_tensors(m.cfg)) {
    const torch::Tensor& t = data.emplace_back(m.w.at(name).contiguous());
    tensors.push_back({name, DType::F32, std::vector<uint64_t>(shape.begin(), shape.end()), t.data_ptr()});
  }
  LlamaConfig c = m.cfg;
  c.torch_dtype = "float32";
  std::string cfg = config_to_json(c).dump(2) + "\n";
  TP_RETURN_IF_ERROR(write_file_atomic((fs::path(dir) / "config.json").string(), {{cfg.data(), cfg.size()}}));
  return write_safetensors_file((fs::path(dir) / "model.safetensors").string(), tensors);
}

}  // namespace tenpak::rt
