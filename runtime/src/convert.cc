#include "tenpak/convert.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tenpak/model.h"
#include "tenpak/tokenizer.h"

namespace fs = std::filesystem;

namespace tenpak::rt {

torch::Tensor permute_rotary(const torch::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return w.view({n_heads, rows / n_heads / 2, 2, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
}

Result<Model> read_llama2c(const std::string& path) {
  auto map = Mapping::open(path);
  if (!map.ok()) return map.status();
  const uint8_t* p = (*map)->data();
  const uint64_t size = (*map)->size();
  if (size < 28) return Status{Errc::corrupt, path + ": " + std::to_string(size) + " bytes, shorter than a llama2.c header"};
  uint32_t magic;
  std::memcpy(&magic, p, 4);
  if (magic == 0x616b3432)
    return Status{Errc::unsupported, path + ": a versioned llama2.c export (magic \"ak42\"); only the legacy format "
                                            "(export.py --version 0) is supported"};
  int32_t h[7];
  std::memcpy(h, p, 28);
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i)
    if ((i == 5 ? std::abs(static_cast<int64_t>(h[i])) : h[i]) <= 0 || std::abs(static_cast<int64_t>(h[i])) > (1 << 24))
      return Status{Errc::corrupt, path + ": header field " + names[i] + " = " + std::to_string(h[i]) +
                                       " is not a llama2.c model"};
  const int64_t dim = h[0], hidden = h[1], L = h[2], H = h[3], KV = h[4], seq = h[6];
  const bool shared = h[5] > 0;
  const int64_t V = std::abs(static_cast<int64_t>(h[5]));
  if (dim % H != 0 || H % KV != 0 || (dim / H) % 2 != 0)
    return Status{Errc::corrupt, path + ": dim " + std::to_string(dim) + ", n_heads " + std::to_string(H) +
                                     ", n_kv_heads " + std::to_string(KV) + " do not form whole, even heads"};
  const int64_t hs = dim / H, kv_dim = hs * KV;
  const int64_t floats = V * dim + L * dim + L * dim * dim + 2 * L * kv_dim * dim + L * dim * dim + L * dim +
                         3 * L * hidden * dim + dim + seq * hs + (shared ? 0 : V * dim);
  if (static_cast<uint64_t>(floats) * 4 + 28 != size)
    return Status{Errc::corrupt, path + ": " + std::to_string(size) + " bytes, but its header (dim " +
                                     std::to_string(dim) + ", layers " + std::to_string(L) + ", vocab " +
                                     std::to_string(h[5]) + ") implies " + std::to_string(floats * 4 + 28)};
  const float* f = reinterpret_cast<const float*>(p + 28);
  int64_t off = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    auto t = torch::empty(shape, torch::kFloat32);
    std::memcpy(t.data_ptr<float>(), f + off, n * sizeof(float));
    off += n;
    return t;
  };
  Model m;
  LlamaConfig& c = m.cfg;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = V;
  c.hidden_size = dim;
  c.intermediate_size = hidden;
  c.num_layers = L;
  c.num_heads = H;
  c.num_kv_heads = KV;
  c.head_dim = hs;
  c.max_position = seq;
  c.rms_eps = 1e-5;         // run.c rmsnorm
  c.rope_theta = 10000.0;   // run.c: 1 / 10000^(head_dim / head_size)
  c.tie_embeddings = shared;
  c.qkv_bias = false;
  c.torch_dtype = "float32";
  auto emb = take({V, dim});
  auto rms_att = take({L, dim});
  auto wq = take({L, dim, dim});
  auto wk = take({L, kv_dim, dim});
  auto wv = take({L, kv_dim, dim});
  auto wo = take({L, dim, dim});
  auto rms_ffn = take({L, dim});
  auto w1 = take({L, hidden, dim});
  auto w2 = take({L, dim, hidden});
  auto w3 = take({L, hidden, dim});
  auto rms_final = take({dim});
  off += seq * hs;  // freq_cis_real and freq_cis_imag: recomputed from rope_theta
  m.w["model.embed_tokens.weight"] = emb;
  for (int64_t l = 0; l < L; ++l) {
    std::string pre = "model.layers." + std::to_string(l) + ".";
    m.w[pre + "input_layernorm.weight"] = rms_att[l].contiguous();
    m.w[pre + "self_attn.q_proj.weight"] = permute_rotary(wq[l], H);
    m.w[pre + "self_attn.k_proj.weight"] = permute_rotary(wk[l], KV);
    m.w[pre + "self_attn.v_proj.weight"] = wv[l].contiguous();
    m.w[pre + "self_attn.o_proj.weight"] = wo[l].contiguous();
    m.w[pre + "post_attention_layernorm.weight"] = rms_ffn[l].contiguous();
    m.w[pre + "mlp.gate_proj.weight"] = w1[l].contiguous();
    m.w[pre + "mlp.down_proj.weight"] = w2[l].contiguous();
    m.w[pre + "mlp.up_proj.weight"] = w3[l].contiguous();
  }
  m.w["model.norm.weight"] = rms_final;
  if (!shared) m.w["lm_head.weight"] = take({V, dim});
  Status st = check_model(m);
  if (!st.ok()) return Status{st.code(), path + ": " + st.message()};
  return m;
}

Result<ConvertReport> convert_llama2c(const std::string& bin, const std::string& tokenizer, const std::string& out_dir) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(out_dir, ec)))
    return Status{Errc::exists, out_dir + ": already exists (refusing to overwrite)"};
  auto model = read_llama2c(bin);
  if (!model.ok()) return model.status();
  std::ifstream tf(tokenizer, std::ios::binary);
  if (!tf) return Status{Errc::invalid, tokenizer + ": cannot open"};
  std::stringstream ss;
  ss << tf.rdbuf();
  const std::string tok_bytes = ss.str();
  auto tok = Tokenizer::from_llama2c(tok_bytes, tokenizer, model->cfg.vocab_size);
  if (!tok.ok()) return tok.status();

  fs::path out = fs::absolute(out_dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tenpak-tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    return Status{Errc::io, tmp.string() + ": cannot create directory: " + (ec ? ec.message() : "exists")};
  auto cleanup = [&](Status st) -> Status {
    std::error_code e2;
    fs::remove_all(tmp, e2);
    return st;
  };
  Status st = write_model_dir(*model, tmp.string());
  if (!st.ok()) return cleanup(st);
  {
    const std::string path = (tmp / "tokenizer.bin").string();
    std::ofstream o(path, std::ios::binary);
    o.write(tok_bytes.data(), static_cast<std::streamsize>(tok_bytes.size()));
    o.flush();
    if (!o) return cleanup({Errc::io, path + ": write failed"});
  }
  if (fs::exists(fs::symlink_status(out, ec))) return cleanup({Errc::exists, out.string() + ": already exists (refusing to overwrite)"});
  fs::rename(tmp, out, ec);
  if (ec) return cleanup({Errc::io, out.string() + ": cannot rename from " + tmp.string() + ": " + ec.message()});
  ConvertReport r;
  r.cfg = model->cfg;
  r.shared_classifier = model->cfg.tie_embeddings;
  for (auto& [n, t] : model->w) {
    ++r.tensors;
    r.parameters += t.numel();
  }
  return r;
}

}  // namespace tenpak::rt
