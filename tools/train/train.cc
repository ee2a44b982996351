// tenpak-train: makes a base/fine-tune pair by REAL training, for TenPak's
// fixtures. A small Llama-like decoder (token embedding, N blocks of
// RMSNorm / causal self-attention with RoPE / SwiGLU MLP, final RMSNorm, LM
// head) is pre-trained with AdamW on tokens from a seeded synthetic source
// (a random sparse Markov chain), then fine-tuned with AdamW (weight decay,
// linear warmup, cosine decay) on a *different* synthetic distribution.
//
// Outputs (each a model directory: config.json, tokenizer.json,
// model.safetensors), every file written to a temp name then renamed:
//   --dtype both (default): OUT/bf16/{base,finetune} and OUT/fp32/{base,finetune}
//   --dtype bf16|fp32:      OUT/{base,finetune}
// The BF16 pair is what mixed-precision practice gives: the base is the FP32
// pre-trained model rounded to BF16; the fine-tune loads that BF16 base into
// FP32 master weights, trains, and is rounded to BF16 on save. The FP32 pair
// fine-tunes the FP32 base directly. Both fine-tunes see the same data.
//
// Deterministic for a given seed on one machine: torch runs on --threads 1 by
// default (more threads may change float summation order, so bits). The
// token data is bit-exact everywhere (own RNG); the weights may differ in low
// bits across CPUs, whose BLAS kernels (AVX2, AVX-512) sum in other orders.
//
// libtorch is linked into this executable only (see CMakeLists.txt).
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tenpak/out_file.h"
#include "tenpak/status.h"
#include "../rng.h"

namespace fs = std::filesystem;
using tenpak::Errc;
using tenpak::Status;

namespace {

struct Options {
  std::string out;
  std::string dtype = "both";
  int64_t steps = 200, finetune_steps = 60;
  int64_t layers = 4, dim = 128, heads = 0, vocab = 512, seq = 64, batch = 8;
  // 2e-5 is a usual full fine-tune rate for LLMs; with it a good share of
  // BF16 weights stays bit-identical (updates under half a BF16 ulp vanish),
  // as in real BF16 fine-tunes, while the loss on the new data still falls.
  double lr = 3e-3, finetune_lr = 2e-5, weight_decay = 0.1, finetune_weight_decay = 0.01;
  uint64_t seed = 1;
  int threads = 1;
  double size_mb = 0;  // 0: use --dim/--layers
  bool tie = false, json = false;
  int64_t inter() const { return (dim * 8 / 3 + 31) / 32 * 32; }  // SwiGLU width, multiple of 32
  int64_t head_dim() const { return dim / heads; }
};

// ---------------------------------------------------------------- data source

using tenpak::tools::Rng;

// A sparse first-order Markov chain: each token has kSucc successors with
// Zipf-like probabilities, plus a little uniform noise. The fine-tune source
// redraws the successors of half the tokens and adds a copy rule (repeat the
// token `copy_lag` positions back), which only attention can learn: a real
// shift that the base model has not seen.
class Source {
 public:
  static constexpr int kSucc = 8;
  Source(int64_t vocab, uint64_t seed, bool finetune) : vocab_(vocab), finetune_(finetune) {
    Rng r(seed * 0x2545F4914F6CDD1Dull + 11);
    Rng r2(seed * 0x2545F4914F6CDD1Dull + 977);
    succ_.resize(vocab * kSucc);
    for (int64_t s = 0; s < vocab; ++s) {
      bool redraw = finetune && (r2.next() & 1);
      for (int k = 0; k < kSucc; ++k) {
        uint64_t a = r.below(vocab), b = r2.below(vocab);  // draw both: base tables stay identical
        succ_[s * kSucc + k] = static_cast<int32_t>(redraw ? b : a);
      }
    }
    double z = 0;
    for (int k = 0; k < kSucc; ++k) z += cdf_[k] = 1.0 / std::pow(k + 1, 1.2);
    double c = 0;
    for (int k = 0; k < kSucc; ++k) cdf_[k] = (c += cdf_[k] / z);
  }

  // B sequences of T+1 tokens, drawn from `r`.
  torch::Tensor batch(Rng& r, int64_t B, int64_t T) const {
    auto t = torch::empty({B, T + 1}, torch::kLong);
    auto a = t.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      int64_t cur = static_cast<int64_t>(r.below(vocab_));
      a[b][0] = cur;
      for (int64_t i = 1; i <= T; ++i) {
        double u = r.uniform();
        if (finetune_ && i >= kCopyLag && u < 0.25) {
          cur = a[b][i - kCopyLag];
        } else if (u > 0.97) {
          cur = static_cast<int64_t>(r.below(vocab_));
        } else {
          double v = r.uniform();
          int k = 0;
          while (k < kSucc - 1 && v > cdf_[k]) ++k;
          cur = succ_[cur * kSucc + k];
        }
        a[b][i] = cur;
      }
    }
    return t;
  }

 private:
  static constexpr int64_t kCopyLag = 6;
  int64_t vocab_;
  bool finetune_;
  std::vector<int32_t> succ_;
  double cdf_[kSucc];
};

// ---------------------------------------------------------------- model

// Parameters in state_dict order with Hugging Face Llama names.
struct Model {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  torch::Tensor& get(size_t i) { return params[i]; }
};

Model init_model(const Options& o) {
  torch::manual_seed(o.seed);
  Model m;
  auto add = [&](const std::string& n, torch::Tensor t) {
    m.names.push_back(n);
    m.params.push_back(t.set_requires_grad(true));
  };
  const double std = 0.02, out_std = 0.02 / std::sqrt(2.0 * o.layers);  // GPT-2 style residual scaling
  add("model.embed_tokens.weight", torch::randn({o.vocab, o.dim}) * std);
  for (int64_t l = 0; l < o.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", torch::ones({o.dim}));
    add(p + "self_attn.q_proj.weight", torch::randn({o.dim, o.dim}) * std);
    add(p + "self_attn.k_proj.weight", torch::randn({o.dim, o.dim}) * std);
    add(p + "self_attn.v_proj.weight", torch::randn({o.dim, o.dim}) * std);
    add(p + "self_attn.o_proj.weight", torch::randn({o.dim, o.dim}) * out_std);
    add(p + "post_attention_layernorm.weight", torch::ones({o.dim}));
    add(p + "mlp.gate_proj.weight", torch::randn({o.inter(), o.dim}) * std);
    add(p + "mlp.up_proj.weight", torch::randn({o.inter(), o.dim}) * std);
    add(p + "mlp.down_proj.weight", torch::randn({o.dim, o.inter()}) * out_std);
  }
  add("model.norm.weight", torch::ones({o.dim}));
  if (!o.tie) add("lm_head.weight", torch::randn({o.vocab, o.dim}) * std);
  return m;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5) * w;
}

// Rotary position embedding, Hugging Face "rotate_half" convention.
struct Rope {
  torch::Tensor cos, sin;  // [T, head_dim]
  Rope(int64_t T, int64_t hd) {
    auto inv = torch::pow(10000.0, -torch::arange(0, hd, 2, torch::kFloat) / static_cast<double>(hd));
    auto f = torch::outer(torch::arange(T, torch::kFloat), inv);
    auto e = torch::cat({f, f}, -1);
    cos = e.cos();
    sin = e.sin();
  }
  torch::Tensor apply(const torch::Tensor& x) const {  // x: [B, H, T, hd]
    int64_t h = x.size(-1) / 2;
    auto rot = torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
    int64_t T = x.size(2);
    return x * cos.narrow(0, 0, T) + rot * sin.narrow(0, 0, T);
  }
};

// Mean next-token cross-entropy over tokens[:, 1:].
torch::Tensor forward_loss(Model& m, const Options& o, const Rope& rope, const torch::Tensor& tokens) {
  auto in = tokens.narrow(1, 0, tokens.size(1) - 1), tgt = tokens.narrow(1, 1, tokens.size(1) - 1);
  const int64_t B = in.size(0), T = in.size(1), H = o.heads, hd = o.head_dim();
  size_t i = 0;
  auto& embed = m.get(i++);
  auto x = torch::embedding(embed, in);
  auto mask = torch::ones({T, T}, torch::kBool).triu(1);
  for (int64_t l = 0; l < o.layers; ++l) {
    auto& ln1 = m.get(i++); auto& wq = m.get(i++); auto& wk = m.get(i++); auto& wv = m.get(i++);
    auto& wo = m.get(i++); auto& ln2 = m.get(i++); auto& wg = m.get(i++); auto& wu = m.get(i++);
    auto& wd = m.get(i++);
    auto h = rms_norm(x, ln1);
    auto heads = [&](const torch::Tensor& w) { return torch::linear(h, w).view({B, T, H, hd}).transpose(1, 2); };
    auto q = rope.apply(heads(wq)), k = rope.apply(heads(wk)), v = heads(wv);
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    att = torch::softmax(att.masked_fill(mask, -INFINITY), -1);
    auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, o.dim});
    x = x + torch::linear(y, wo);
    h = rms_norm(x, ln2);
    x = x + torch::linear(torch::silu(torch::linear(h, wg)) * torch::linear(h, wu), wd);
  }
  auto& norm = m.get(i++);
  x = rms_norm(x, norm);
  auto logits = torch::linear(x, o.tie ? embed : m.get(i++));
  return torch::nn::functional::cross_entropy(logits.reshape({B * T, o.vocab}), tgt.reshape({B * T}));
}

struct EvalSet {
  std::vector<torch::Tensor> batches;
};

EvalSet make_eval(const Source& src, uint64_t seed, const Options& o) {
  Rng r(seed);
  EvalSet e;
  for (int i = 0; i < 4; ++i) e.batches.push_back(src.batch(r, o.batch, o.seq));
  return e;
}

double evaluate(Model& m, const Options& o, const Rope& rope, const EvalSet& e) {
  torch::NoGradGuard ng;
  double s = 0;
  for (auto& b : e.batches) s += forward_loss(m, o, rope, b).item<double>();
  return s / e.batches.size();
}

// Progress line on a terminal only (stderr), so logs and pipes stay clean.
class Progress {
 public:
  explicit Progress(std::string label) : label_(std::move(label)), tty_(::isatty(2)) {}
  void update(int64_t step, int64_t total, double loss) {
    if (!tty_) return;
    auto now = std::chrono::steady_clock::now();
    if (step != total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::fprintf(stderr, "\r%-16s step %5lld/%-5lld loss %.4f", label_.c_str(), (long long)step, (long long)total, loss);
    if (step == total) std::fprintf(stderr, "\n");
  }

 private:
  std::string label_;
  bool tty_;
  std::chrono::steady_clock::time_point last_{};
};

// AdamW with linear warmup (10% of steps) then cosine decay to 10% of the
// peak; no weight decay on norm weights (1-D), gradient clipping at 1.0.
// Returns the mean training loss of the last 10% of steps.
double train(Model& m, const Options& o, const Rope& rope, const Source& src, Rng& data, int64_t steps, double peak_lr,
             double wd, const std::string& label) {
  if (steps == 0) return NAN;
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : m.params) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  auto opts = torch::optim::AdamWOptions(peak_lr).betas({0.9, 0.95}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(wd)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(0.0)));
  torch::optim::AdamW opt(groups, torch::optim::AdamWOptions(peak_lr));
  const int64_t warm = std::max<int64_t>(1, steps / 10);
  Progress bar(label);
  double tail = 0;
  int64_t tail_n = 0;
  for (int64_t s = 0; s < steps; ++s) {
    double lr = s < warm ? peak_lr * (s + 1) / warm
                         : peak_lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * (s - warm) / std::max<int64_t>(1, steps - warm))));
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    auto batch = src.batch(data, o.batch, o.seq);
    opt.zero_grad();
    auto loss = forward_loss(m, o, rope, batch);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(m.params, 1.0);
    opt.step();
    double l = loss.item<double>();
    if (s >= steps - std::max<int64_t>(1, steps / 10)) { tail += l; ++tail_n; }
    bar.update(s + 1, steps, l);
  }
  return tail / tail_n;
}

// A detached copy of the weights, rounded through `dt` and back to FP32
// (what loading a checkpoint saved in `dt` gives a trainer).
Model round_trip(const Model& m, torch::ScalarType dt) {
  Model c;
  c.names = m.names;
  for (auto& p : m.params) c.params.push_back(p.detach().to(dt).to(torch::kFloat).clone().set_requires_grad(true));
  return c;
}

// ---------------------------------------------------------------- output

Status write_file(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    for (auto& [p, n] : parts) f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return {Errc::io, path + ": cannot write (" + std::strerror(errno) + ")"};
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return {Errc::io, path + ": cannot rename from " + tmp + ": " + ec.message()};
  return Status::Ok();
}

Status write_text(const std::string& path, const std::string& s) { return write_file(path, {{s.data(), s.size()}}); }

nlohmann::ordered_json config_json(const Options& o, torch::ScalarType dt) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", o.dim},
          {"intermediate_size", o.inter()},
          {"num_hidden_layers", o.layers},
          {"num_attention_heads", o.heads},
          {"num_key_value_heads", o.heads},
          {"hidden_act", "silu"},
          {"max_position_embeddings", o.seq},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", o.tie},
          {"vocab_size", o.vocab},
          {"torch_dtype", dt == torch::kBFloat16 ? "bfloat16" : "float32"},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

// A tiny Hugging Face tokenizers-style WordLevel tokenizer over the synthetic
// vocabulary ("<unk>", "<s>", "</s>", then "t3".."t{V-1}").
std::string tokenizer_json(const Options& o) {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  const char* special[] = {"<unk>", "<s>", "</s>"};
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < o.vocab; ++i) {
    std::string t = i < 3 ? special[i] : "t" + std::to_string(i);
    vocab[t] = i;
    if (i < 3)
      added.push_back({{"id", i}, {"content", t}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", true}});
  }
  nlohmann::ordered_json j = {{"version", "1.0"},
                              {"truncation", nullptr},
                              {"padding", nullptr},
                              {"added_tokens", added},
                              {"normalizer", nullptr},
                              {"pre_tokenizer", {{"type", "WhitespaceSplit"}}},
                              {"post_processor", nullptr},
                              {"decoder", nullptr},
                              {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}}}};
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

// The weights of `m` in `dt`, contiguous, in state_dict order.
std::vector<torch::Tensor> cast_all(const Model& m, torch::ScalarType dt) {
  std::vector<torch::Tensor> v;
  for (auto& p : m.params) v.push_back(p.detach().to(dt).contiguous());
  return v;
}

Status write_model(const std::string& dir, const Options& o, const Model& m, const std::vector<torch::Tensor>& w,
                   torch::ScalarType dt) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return {Errc::io, dir + ": cannot create directory: " + ec.message()};
  TP_RETURN_IF_ERROR(write_text(
      dir + "/config.json",
      config_json(o, dt).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n"));
  TP_RETURN_IF_ERROR(write_text(dir + "/tokenizer.json", tokenizer_json(o)));
  std::vector<tenpak::SafetensorsTensor> tensors;
  for (size_t i = 0; i < w.size(); ++i)
    tensors.push_back({m.names[i], dt == torch::kBFloat16 ? tenpak::DType::BF16 : tenpak::DType::F32,
                       std::vector<uint64_t>(w[i].sizes().begin(), w[i].sizes().end()), w[i].data_ptr()});
  return tenpak::write_safetensors_file(dir + "/model.safetensors", tensors);
}

// Fraction of elements whose bit pattern is the same in `a` and `b`.
struct Identical {
  uint64_t same = 0, total = 0, tensors_same = 0, tensors = 0;
};
Identical compare(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  Identical r;
  for (size_t i = 0; i < a.size(); ++i) {
    const size_t es = a[i].element_size(), n = a[i].numel();
    auto* pa = static_cast<const uint8_t*>(a[i].data_ptr());
    auto* pb = static_cast<const uint8_t*>(b[i].data_ptr());
    uint64_t same = 0;
    for (size_t j = 0; j < n; ++j) same += std::memcmp(pa + j * es, pb + j * es, es) == 0;
    r.same += same;
    r.total += n;
    r.tensors_same += same == n;
    r.tensors += 1;
  }
  return r;
}

// Picks dim and layers for about `mb` MiB of BF16 weights: the widest of a
// few usual widths that still gets max(2, dim/64) layers, then as many
// layers as fit.
void size_model(Options& o) {
  const double target = o.size_mb * (1 << 20) / 2;  // parameters
  auto per_layer = [](const Options& x) { return 4.0 * x.dim * x.dim + 3.0 * x.dim * x.inter() + 2.0 * x.dim; };
  auto emb = [](const Options& x) { return (x.tie ? 1.0 : 2.0) * x.vocab * x.dim; };
  Options best = o;
  best.dim = 32;
  for (int64_t d : {32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048}) {
    Options c = o;
    c.dim = d;
    if (emb(c) + per_layer(c) * std::max<int64_t>(2, d / 64) <= target) best = c;
  }
  best.layers = std::clamp<int64_t>(static_cast<int64_t>((target - emb(best)) / per_layer(best)), 1, 128);
  o.dim = best.dim;
  o.layers = best.layers;
}

int run(Options o) {
  if (o.size_mb > 0) size_model(o);
  if (o.heads == 0) o.heads = std::max<int64_t>(1, o.dim / 32);
  auto usage = [](const std::string& m) {
    std::fprintf(stderr, "tenpak-train: error: %s\n", m.c_str());
    return 2;
  };
  if (o.dim % o.heads || o.head_dim() % 2) return usage("--dim must be a multiple of --heads with an even head size");
  if (o.vocab < 16) return usage("--vocab must be at least 16");
  torch::set_num_threads(o.threads);
  auto t0 = std::chrono::steady_clock::now();

  const Source base_src(o.vocab, o.seed, false), ft_src(o.vocab, o.seed, true);
  const EvalSet base_eval = make_eval(base_src, o.seed * 1000003 + 1, o), ft_eval = make_eval(ft_src, o.seed * 1000003 + 2, o);
  const Rope rope(o.seq, o.head_dim());
  Model base = init_model(o);
  nlohmann::ordered_json summary;
  uint64_t nparams = 0;
  for (auto& p : base.params) nparams += p.numel();
  summary["config"] = {{"dim", o.dim}, {"layers", o.layers}, {"heads", o.heads}, {"intermediate", o.inter()},
                       {"vocab", o.vocab}, {"seq", o.seq}, {"batch", o.batch}, {"steps", o.steps},
                       {"finetune_steps", o.finetune_steps}, {"lr", o.lr}, {"finetune_lr", o.finetune_lr},
                       {"weight_decay", o.weight_decay}, {"finetune_weight_decay", o.finetune_weight_decay},
                       {"tie", o.tie}, {"seed", o.seed}, {"threads", o.threads}};
  summary["parameters"] = nparams;

  double init_loss = evaluate(base, o, rope, base_eval);
  Rng pre_data(o.seed * 7 + 3);
  train(base, o, rope, base_src, pre_data, o.steps, o.lr, o.weight_decay, "pre-train");
  summary["base"] = {{"loss_init", init_loss}, {"loss_final", evaluate(base, o, rope, base_eval)},
                     {"finetune_distribution_loss", evaluate(base, o, rope, ft_eval)}};

  std::vector<std::pair<std::string, torch::ScalarType>> dts;
  if (o.dtype != "fp32") dts.emplace_back("bf16", torch::kBFloat16);
  if (o.dtype != "bf16") dts.emplace_back("fp32", torch::kFloat);
  for (auto& [dname, dt] : dts) {
    const std::string dir = o.dtype == "both" ? o.out + "/" + dname : o.out;
    // The fine-tuner starts from the base as saved (rounded to dt).
    Model ft = round_trip(base, dt);
    double before = evaluate(ft, o, rope, ft_eval);
    Rng ft_data(o.seed * 7 + 5);  // same fine-tune data for every dtype
    train(ft, o, rope, ft_src, ft_data, o.finetune_steps, o.finetune_lr, o.finetune_weight_decay, "fine-tune " + dname);
    auto wb = cast_all(base, dt), wf = cast_all(ft, dt);
    Model saved = round_trip(ft, dt);  // evaluate what is written, not the master weights
    double after = evaluate(saved, o, rope, ft_eval);
    Identical id = compare(wb, wf);
    Status st = write_model(dir + "/base", o, base, wb, dt);
    if (st.ok()) st = write_model(dir + "/finetune", o, ft, wf, dt);
    if (!st.ok()) {
      std::fprintf(stderr, "tenpak-train: error: %s\n", st.message().c_str());
      return 1;
    }
    summary["finetune"][dname] = {{"dir", dir},
                                  {"loss_before", before},
                                  {"loss_after", after},
                                  {"base_distribution_loss_after", evaluate(saved, o, rope, base_eval)},
                                  {"weights", id.total},
                                  {"weights_identical", id.same},
                                  {"weights_identical_fraction", static_cast<double>(id.same) / id.total},
                                  {"tensors", id.tensors},
                                  {"tensors_identical", id.tensors_same},
                                  {"safetensors_bytes", fs::file_size(dir + "/finetune/model.safetensors")}};
  }
  summary["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (o.json) {
    // The summary holds the output path, which need not be UTF-8: such bytes
    // are written as U+FFFD (as cli::json_text, which this tool does not
    // link), where dump's default throws after the models are written.
    std::printf("%s\n", summary.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    auto& b = summary["base"];
    std::printf("model: dim %lld, %lld layers, %lld heads, vocab %lld, %llu parameters\n", (long long)o.dim,
                (long long)o.layers, (long long)o.heads, (long long)o.vocab, (unsigned long long)nparams);
    std::printf("pre-train: %lld steps, loss %.4f -> %.4f\n", (long long)o.steps, b["loss_init"].get<double>(),
                b["loss_final"].get<double>());
    for (auto& [dname, f] : summary["finetune"].items())
      std::printf("fine-tune %s: %lld steps, loss on the new distribution %.4f -> %.4f, %.2f%% of weights "
                  "bit-identical to the base; wrote %s/{base,finetune}\n",
                  dname.c_str(), (long long)o.finetune_steps, f["loss_before"].get<double>(), f["loss_after"].get<double>(),
                  100 * f["weights_identical_fraction"].get<double>(), f["dir"].get<std::string>().c_str());
    std::printf("%.1f s\n", summary["seconds"].get<double>());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "tenpak-train: pre-trains a small Llama-like transformer on synthetic tokens, then fine-tunes it with AdamW on "
      "a different synthetic distribution; writes base and fine-tune model directories (config.json, "
      "tokenizer.json, model.safetensors). --dtype both: OUT/bf16/{base,finetune} and OUT/fp32/{base,finetune}; "
      "bf16 or fp32: OUT/{base,finetune}.",
      "tenpak-train"};
  app.add_option("OUT", o.out, "Output directory")->required();
  app.add_option("--dtype", o.dtype, "bf16 | fp32 | both")->check(CLI::IsMember({"bf16", "fp32", "both"}))->capture_default_str();
  app.add_option("--steps", o.steps, "Pre-training steps")->check(CLI::Range(0, 1000000))->capture_default_str();
  app.add_option("--finetune-steps", o.finetune_steps, "Fine-tuning steps")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--layers", o.layers, "Transformer blocks")->check(CLI::Range(1, 128))->capture_default_str();
  app.add_option("--dim", o.dim, "Hidden size")->check(CLI::Range(8, 8192))->capture_default_str();
  app.add_option("--heads", o.heads, "Attention heads (0: dim/32)")->check(CLI::Range(0, 256))->capture_default_str();
  app.add_option("--vocab", o.vocab, "Vocabulary size")->check(CLI::Range(16, 1000000))->capture_default_str();
  app.add_option("--seq", o.seq, "Sequence length")->check(CLI::Range(8, 8192))->capture_default_str();
  app.add_option("--batch", o.batch, "Sequences per step")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--lr", o.lr, "Pre-training peak learning rate")->capture_default_str();
  app.add_option("--finetune-lr", o.finetune_lr, "Fine-tuning peak learning rate")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "Pre-training AdamW weight decay")->capture_default_str();
  app.add_option("--finetune-weight-decay", o.finetune_weight_decay, "Fine-tuning AdamW weight decay")->capture_default_str();
  app.add_option("--size-mb", o.size_mb, "Choose --dim and --layers for about this many MiB of BF16 weights")
      ->check(CLI::Range(0.01, 65536.0));
  app.add_option("--seed", o.seed, "Seed for weights and data")->capture_default_str();
  app.add_option("--threads", o.threads, "Torch threads (more than 1 may change result bits)")
      ->check(CLI::Range(1, 256))->capture_default_str();
  app.add_flag("--tie", o.tie, "Tie the LM head to the token embedding (no lm_head.weight)");
  app.add_flag("--json", o.json, "Print a JSON summary on stdout");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {  // torch reports errors as c10::Error
    std::fprintf(stderr, "tenpak-train: error: %s\n", e.what());
    return 1;
  }
}
