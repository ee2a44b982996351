// tenpak-ml fixture llama-gen: a generated Llama-shaped model of about N
// parameters, for quantization benchmarks at a size stories260K cannot give
// (docs/BENCHMARKS.md, bench/quant_bench.sh MODEL=gen).
//
// Contract: OUT is a Hugging Face model directory (config.json with
// LlamaForCausalLM, model.safetensors F32 by rt::write_model_dir, untied
// lm_head) plus the llama2.c tokenizer given with --tokenizer (its vocabulary
// size is the model's), so `tenpak eval/quantize` run on it. Same options
// and seed -> the same bytes (one seeded generator, drawn in a fixed order,
// one thread). Written to a temporary sibling and renamed when complete.
//
// Shape: hidden 1024 (256 below 20M), intermediate 2.75 x hidden rounded up
// to 128 (every linear packs in GPTQ and AWQ at groups 32..128), head_dim 64,
// no grouped-query attention, layers chosen to get closest to --params.
//
// What makes it "realistic" for quantization (not a language model: its
// weights are random; compare quantizers on it by KL and top-1 against its
// own float output, never by perplexity):
//  - weights N(0, 0.02) with per-row scale lognormal(0, 0.3) and 0.5% of
//    weights drawn 6x wider (heavy-tailed rows, as trained weights have);
//  - `--outliers K` (default 6) hidden channels that carry large activations
//    in every layer's normalised input, as LLM.int8 (Dettmers et al. 2022)
//    describes for models above ~6.7B and smaller ones in part: those
//    embedding columns x20 and the layers' RMSNorm weights at those channels
//    x4, so |x| there exceeds LLM.int8's threshold 6 while the rest stays
//    near 1; 8 SwiGLU channels per layer with up_proj rows x5 (outliers at
//    down_proj's input);
//  - RMSNorm weights 1 + N(0, 0.1); lm_head N(0, 0.08) so next-token
//    distributions are far from uniform (logit std about 2.5).
// The report (--json) gives the parameter count and the measured max |x| at
// the outlier and other channels of layer 0's q_proj input on random tokens.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "ml_commands.h"
#include "tenpak/llama.h"
#include "tenpak/tokenizer.h"

namespace tenpak::ml {
namespace {

namespace fs = std::filesystem;

struct GenOptions {
  std::string out, tokenizer, params = "100M";
  uint64_t seed = 1;
  int outliers = 6;
  bool json = false;
};

Result<int64_t> parse_count(const std::string& s) {
  if (s.empty()) return Status{Errc::invalid, "--params: empty"};
  double mul = 1;
  std::string num = s;
  const char last = static_cast<char>(std::toupper(static_cast<unsigned char>(s.back())));
  if (last == 'K' || last == 'M' || last == 'G') {
    mul = last == 'K' ? 1e3 : last == 'M' ? 1e6 : 1e9;
    num = s.substr(0, s.size() - 1);
  }
  char* end = nullptr;
  const double v = std::strtod(num.c_str(), &end);
  if (!end || *end || !(v > 0) || v * mul > 20e9)
    return Status{Errc::invalid, "--params '" + s + "': expected a count such as 100M, 2.5M or 500K"};
  return static_cast<int64_t>(v * mul);
}

torch::Tensor heavy_linear(int64_t out, int64_t in) {
  auto w = torch::randn({out, in}) * 0.02;
  w *= torch::exp(torch::randn({out, 1}) * 0.3);
  auto wide = torch::rand({out, in}) < 0.005;
  return torch::where(wide, w * 6.0, w).contiguous();
}

int run_llama_gen(const GenOptions& o) {
  auto n = parse_count(o.params);
  if (!n.ok()) return cli::fail(n.status());
  auto tok = rt::Tokenizer::load(o.tokenizer);
  if (!tok.ok()) return cli::fail(tok.status());
  std::error_code ec;
  if (fs::exists(o.out, ec)) return cli::fail({Errc::exists, o.out + ": output exists (refusing to overwrite)"});

  rt::LlamaConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = tok->vocab_size();
  c.hidden_size = *n >= 20'000'000 ? 1024 : 256;
  c.intermediate_size = (static_cast<int64_t>(c.hidden_size * 2.75) + 127) / 128 * 128;
  c.head_dim = 64;
  c.num_heads = c.hidden_size / c.head_dim;
  c.num_kv_heads = c.num_heads;
  c.max_position = 2048;
  c.rms_eps = 1e-5;
  c.tie_embeddings = false;
  c.torch_dtype = "float32";
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const int64_t per_layer = 4 * D * D + 3 * D * F + 2 * D, fixed = 2 * c.vocab_size * D + D;
  c.num_layers = std::max<int64_t>(1, std::llround(static_cast<double>(*n - fixed) / per_layer));
  if (o.outliers < 0 || o.outliers > D / 8)
    return cli::fail({Errc::invalid, "--outliers " + std::to_string(o.outliers) + ": 0 .. " + std::to_string(D / 8)});

  torch::NoGradGuard ng;
  torch::set_num_threads(1);
  torch::manual_seed(o.seed);
  rt::Model m;
  m.cfg = c;
  auto outl = torch::randperm(D).slice(0, 0, o.outliers);
  auto norm_w = [&]() {
    auto w = 1 + torch::randn({D}) * 0.1;
    w.index_put_({outl}, w.index({outl}) * 4.0);
    return w;
  };
  auto emb = torch::randn({c.vocab_size, D}) * 0.02;
  emb.index_put_({torch::indexing::Slice(), outl}, emb.index({torch::indexing::Slice(), outl}) * 20.0);
  m.w["model.embed_tokens.weight"] = emb.contiguous();
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.w[p + "input_layernorm.weight"] = norm_w();
    m.w[p + "self_attn.q_proj.weight"] = heavy_linear(D, D);
    m.w[p + "self_attn.k_proj.weight"] = heavy_linear(D, D);
    m.w[p + "self_attn.v_proj.weight"] = heavy_linear(D, D);
    m.w[p + "self_attn.o_proj.weight"] = heavy_linear(D, D);
    m.w[p + "post_attention_layernorm.weight"] = norm_w();
    m.w[p + "mlp.gate_proj.weight"] = heavy_linear(F, D);
    auto up = heavy_linear(F, D);
    auto hot = torch::randperm(F).slice(0, 0, 8);
    up.index_put_({hot}, up.index({hot}) * 5.0);
    m.w[p + "mlp.up_proj.weight"] = up;
    m.w[p + "mlp.down_proj.weight"] = heavy_linear(D, F);
  }
  m.w["model.norm.weight"] = 1 + torch::randn({D}) * 0.1;
  m.w["lm_head.weight"] = (torch::randn({c.vocab_size, D}) * 0.08).contiguous();
  if (auto st = rt::check_model(m); !st.ok()) return cli::fail(st);
  int64_t params = 0;
  for (auto& [k, t] : m.w) params += t.numel();

  // Measured on 4 x 128 random tokens: layer 0's normalised input.
  auto toks = torch::randint(3, c.vocab_size, {4, 128}, torch::kLong);
  torch::Tensor x0;
  rt::ForwardHooks hooks;
  hooks.on_linear_input = [&](const std::string& name, const torch::Tensor& x) {
    if (name == "model.layers.0.self_attn.q_proj.weight") x0 = x.reshape({-1, D}).abs().amax(0);
  };
  rt::block_forward(m, 0, rt::embed(m, toks), &hooks);
  auto mask = torch::ones({D}, torch::kBool);
  mask.index_put_({outl}, false);
  const double out_max = o.outliers ? x0.index({outl}).min().item<double>() : 0.0;
  const double rest_max = x0.masked_select(mask).max().item<double>();

  const fs::path target = fs::absolute(o.out);
  const fs::path stage = target.parent_path() / ("." + target.filename().string() + ".tenpak-tmp-" + std::to_string(::getpid()));
  fs::remove_all(stage, ec);
  fs::create_directories(stage, ec);
  if (ec) return cli::fail({Errc::io, stage.string() + ": cannot create: " + ec.message()});
  auto cleanup = [&](const Status& s) {
    std::error_code e2;
    fs::remove_all(stage, e2);
    return cli::fail(s);
  };
  if (auto st = rt::write_model_dir(m, stage.string()); !st.ok()) return cleanup(st);
  const fs::path tok_src = fs::is_directory(o.tokenizer) ? fs::path(o.tokenizer) / "tokenizer.bin" : fs::path(o.tokenizer);
  fs::copy_file(tok_src, stage / "tokenizer.bin", ec);
  if (ec) return cleanup({Errc::io, tok_src.string() + ": cannot copy: " + ec.message()});
  fs::rename(stage, target, ec);
  if (ec) return cleanup({Errc::io, o.out + ": cannot rename from " + stage.string() + ": " + ec.message()});

  std::vector<int64_t> ch(outl.data_ptr<int64_t>(), outl.data_ptr<int64_t>() + outl.numel());
  std::sort(ch.begin(), ch.end());
  if (o.json) {
    nlohmann::json j;
    j["output"] = o.out;
    j["parameters"] = params;
    j["config"] = rt::config_to_json(c);
    j["seed"] = o.seed;
    j["outlier_channels"] = ch;
    j["layer0_input_min_of_outlier_max_abs"] = out_max;
    j["layer0_input_max_abs_elsewhere"] = rest_max;
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    std::fprintf(stderr,
                 "llama-gen: %lld parameters (%lld layers, hidden %lld, intermediate %lld, vocab %lld); layer 0 input "
                 "max |x|: outlier channels >= %.1f, others <= %.1f\n",
                 (long long)params, (long long)c.num_layers, (long long)D, (long long)F, (long long)c.vocab_size,
                 out_max, rest_max);
    std::printf("%s\n", o.out.c_str());
  }
  return cli::kOk;
}

}  // namespace

void add_fixture_gen_commands(CLI::App& app, int& rc) {
  static GenOptions o;
  CLI::App* fx = nullptr;
  try {
    fx = app.get_subcommand("fixture");
  } catch (const CLI::OptionNotFound&) {
    fx = app.add_subcommand("fixture", "generated and real model fixtures (libtorch)");
    fx->require_subcommand(1);
  }
  auto* c = fx->add_subcommand("llama-gen",
                               "a generated Llama-shaped model of about --params parameters with outlier activation "
                               "channels (HF directory, random weights), for quantization benchmarks");
  c->add_option("OUT", o.out, "Directory to create")->required();
  c->add_option("--params", o.params, "Approximate parameter count (default 100M)");
  c->add_option("--tokenizer", o.tokenizer, "llama2.c tokenizer.bin (or a directory holding one)")->required();
  c->add_option("--seed", o.seed, "Seed (same seed and options: same bytes)");
  c->add_option("--outliers", o.outliers, "Hidden channels with large activations (default 6)");
  c->add_flag("--json", o.json, "Print a JSON report");
  c->callback([&rc] { rc = run_llama_gen(o); });
}

}  // namespace tenpak::ml
