// tenpak fixture stories-ft: a real fine-tune of the shared real model
// (stories260K, ../shared/data/llama2c) on TinyShakespeare
// (../shared/data/text), as the base/fine-tune pair the lossy-delta work
// measures against (docs/BENCHMARKS.md "Real fine-tunes").
//
// Contract: OUT/base is `tenpak convert llama2c` of stories260K.bin;
// OUT/finetune has the same layout (config.json, model.safetensors F32 by
// rt::write_model_dir, tokenizer.bin). Full fine-tune by default; --lora R
// trains rank-R adapters on q/k/v/o with the base frozen, merges them into
// the weights (W + B·A, scale 1) and writes the adapter as OUT/adapter.
// Training is deterministic for the same options: one torch thread, a
// seeded generator for the initial adapter and the batches, AdamW. The last
// 10% of the text (from the first newline after 90% of its bytes) is never
// trained on; the perplexity of both models on it is measured with the
// runtime's evaluate_quality and reported.
//
// The runtime's forward runs under NoGradGuard (inference only), so training
// uses TrainForward (train_forward.h), checked against rt::forward on the
// base (max |Δlogit| <= 1e-4) first: the loss trained is the model the
// runtime evaluates.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <unistd.h>

#include "cli_util.h"
#include "ml_commands.h"
#include "text_file.h"
#include "train_forward.h"
#include "tenpak/convert.h"
#include "tenpak/eval.h"
#include "tenpak/llama.h"
#include "tenpak/out_file.h"
#include "tenpak/safetensors.h"
#include "tenpak/tokenizer.h"

namespace tenpak::ml {

namespace {

namespace fs = std::filesystem;

struct FtOptions {
  std::string out, data_dir;
  int lora = 0;       // 0: full fine-tune
  int steps = 300;
  uint64_t seed = 1;
  double lr = 0;      // 0: 1e-3 full, 5e-3 LoRA
  bool hub_lr = false;  // --hub-lr: kHubLr (a full fine-tune as released fine-tunes are made)
  int batch = 16, ctx = 128;
  int eval_ctx = 256;
  int64_t eval_chunks = 0;  // 0: the whole held-out part
  bool json = false;
};

// The adapter in PEFT's layout: adapter_model.safetensors with
// "base_model.model.<module>.lora_A.weight" [r, in] and ".lora_B.weight"
// [out, r] (peft's LoraModel state-dict names), F32, and an
// adapter_config.json (r, lora_alpha = r so the scale is 1, target_modules).
Status write_adapter(const std::string& dir, const std::vector<std::string>& names,
                     const std::map<std::string, std::pair<torch::Tensor, torch::Tensor>>& ab, int rank) {
  std::vector<torch::Tensor> data;  // holds the contiguous copies the file is written from
  std::vector<SafetensorsTensor> tensors;
  for (const auto& n : names) {
    const std::string mod = n.substr(0, n.size() - std::string(".weight").size());
    const auto& [a, b] = ab.at(n);
    for (const auto& [suffix, t] : {std::pair<std::string, torch::Tensor>{".lora_A.weight", a.contiguous()},
                              std::pair<std::string, torch::Tensor>{".lora_B.weight", b.contiguous()}}) {
      data.push_back(t);
      tensors.push_back({"base_model.model." + mod + suffix, DType::F32,
                         std::vector<uint64_t>(t.sizes().begin(), t.sizes().end()), t.data_ptr()});
    }
  }
  TP_RETURN_IF_ERROR(write_safetensors_file((fs::path(dir) / "adapter_model.safetensors").string(), tensors));
  nlohmann::json cfg = {{"peft_type", "LORA"},
                        {"task_type", "CAUSAL_LM"},
                        {"r", rank},
                        {"lora_alpha", rank},
                        {"lora_dropout", 0.0},
                        {"bias", "none"},
                        {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj"}}};
  std::string s = cfg.dump(2) + "\n";
  return write_file_atomic((fs::path(dir) / "adapter_config.json").string(), {{s.data(), s.size()}});
}

int run_stories_ft(FtOptions o) {
  using cli::fail;
  const auto t0 = std::chrono::steady_clock::now();
  if (o.data_dir.empty()) {
    const char* env = std::getenv("TENPAK_SHARED");
    o.data_dir = env && *env ? (fs::path(env) / "data").string() : "../shared/data";
  }
  const std::string bin = (fs::path(o.data_dir) / "llama2c/stories260K.bin").string();
  const std::string tokf = (fs::path(o.data_dir) / "llama2c/tok512.bin").string();
  const std::string textf = (fs::path(o.data_dir) / "text/tinyshakespeare.txt").string();
  for (const auto& f : {bin, tokf, textf})
    if (!fs::is_regular_file(f))
      return fail({Errc::invalid, f + ": not found; stories-ft needs the shared data (--data-dir, or TENPAK_SHARED "
                                      "pointing at the folder that holds data/)"});
  if (fs::exists(o.out)) return fail({Errc::exists, o.out + ": already exists; choose a new output directory"});
  // A released full fine-tune trains at a small fraction of its base's
  // pretraining learning rate: Alpaca 2e-5 (tatsu-lab/stanford_alpaca
  // README) on LLaMA-7B, pretrained at 3e-4 (Touvron et al. 2023, table 2).
  // The same ratio on stories260K's pretraining 1e-3 (karpathy/llama2.c
  // doc/stories260K.md) is 6.67e-5; the default 1e-3 equals the
  // pretraining rate: a domain change, larger than any hub fine-tune.
  constexpr double kHubLr = 1e-3 * 2e-5 / 3e-4;
  if (o.hub_lr && o.lr > 0) return fail({Errc::invalid, "--hub-lr and --lr: give one"});
  if (o.hub_lr) o.lr = kHubLr;
  if (o.lr <= 0) o.lr = o.lora ? 5e-3 : 1e-3;
  torch::set_num_threads(1);
  torch::set_num_interop_threads(1);

  fs::path out(o.out);
  const fs::path stage = out.parent_path() / ("." + out.filename().string() + ".tenpak-tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(stage, ec);
  if (ec) return fail({Errc::io, stage.string() + ": cannot create: " + ec.message()});
  auto cleanup_fail = [&](const Status& st) {
    std::error_code e2;
    fs::remove_all(stage, e2);
    return fail(st);
  };

  auto conv = rt::convert_llama2c(bin, tokf, (stage / "base").string());
  if (!conv.ok()) return cleanup_fail(conv.status());
  auto base = rt::load_model_dir((stage / "base").string());
  if (!base.ok()) return cleanup_fail(base.status());
  auto tok = rt::Tokenizer::load((stage / "base").string());
  if (!tok.ok()) return cleanup_fail(tok.status());
  auto text = read_text_file(textf);
  if (!text.ok()) return cleanup_fail(text.status());

  const size_t cut = held_out_cut(*text);
  const auto train_ids = tok->encode(text->substr(0, cut), true);
  const auto held_ids = tok->encode(text->substr(cut), true);
  if (static_cast<int64_t>(train_ids.size()) <= o.ctx + 1)
    return cleanup_fail({Errc::invalid, textf + ": too short to train on"});
  auto train_t = torch::tensor(train_ids, torch::kInt64);

  const auto& cfg = base->cfg;
  rt::Model ft;
  ft.cfg = cfg;
  std::map<std::string, torch::Tensor> params;  // trained tensors (full: weights; LoRA: A and B)
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> lora;
  std::vector<std::string> lora_names;
  torch::manual_seed(o.seed);
  std::vector<torch::Tensor> decay, no_decay;
  if (o.lora > 0) {
    for (int l = 0; l < cfg.num_layers; ++l)
      for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"})
        lora_names.push_back("model.layers." + std::to_string(l) + ".self_attn." + m + ".weight");
    for (const auto& n : lora_names) {
      const auto& w = base->w.at(n);
      // As peft's LoRA: A from a Kaiming-uniform-like init, B zero, so
      // training starts at the base model exactly.
      const double bound = 1.0 / std::sqrt(static_cast<double>(w.size(1)));
      auto a = (torch::rand({o.lora, w.size(1)}, torch::kFloat32) * 2 - 1) * bound;
      auto b = torch::zeros({w.size(0), o.lora}, torch::kFloat32);
      a.set_requires_grad(true);
      b.set_requires_grad(true);
      lora[n] = {a, b};
      no_decay.push_back(a);
      no_decay.push_back(b);
    }
  } else {
    for (auto& [n, w] : base->w) {
      auto p = w.clone();
      p.set_requires_grad(true);
      params[n] = p;
      (p.dim() >= 2 ? decay : no_decay).push_back(p);
    }
  }
  auto weight = [&](const std::string& n) -> torch::Tensor {
    if (o.lora > 0) {
      auto it = lora.find(n);
      const auto& w = base->w.at(n);
      return it == lora.end() ? w : w + torch::matmul(it->second.second, it->second.first);
    }
    return params.at(n);
  };
  TrainForward fwd{cfg, weight};

  // The training forward is the runtime's model (see the file comment).
  {
    auto probe = train_t.slice(0, 0, o.ctx).unsqueeze(0);
    const double diff = train_forward_difference(fwd, *base, probe);
    if (!(diff <= 1e-4))
      return cleanup_fail({Errc::mismatch, "the training forward differs from rt::forward by " + std::to_string(diff) +
                                               " (max |logit|); the runtime's model changed"});
  }

  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                                     torch::optim::AdamWOptions(o.lr).weight_decay(0.01)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(o.lr).weight_decay(0.0)));
  torch::optim::AdamW opt(std::move(groups), torch::optim::AdamWOptions(o.lr));

  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(train_ids.size()) - o.ctx - 2);
  std::vector<double> losses;
  cli::ProgressBar bar("fine-tune");
  for (int step = 0; step < o.steps; ++step) {
    std::vector<torch::Tensor> rows;
    for (int b = 0; b < o.batch; ++b) rows.push_back(train_t.slice(0, start(rng)).slice(0, 0, o.ctx + 1));
    auto batch = torch::stack(rows);
    auto x = batch.slice(1, 0, o.ctx), y = batch.slice(1, 1, o.ctx + 1);
    // Cosine decay from lr to lr/10 after a 10-step warm-up.
    const double warm = std::min(1.0, (step + 1) / 10.0);
    const double cosf = 0.55 + 0.45 * std::cos(M_PI * step / std::max(1, o.steps));
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(o.lr * warm * cosf);
    auto logits = fwd(x);
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, cfg.vocab_size}), y.reshape({-1}));
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item<double>());
    bar.update(step + 1, o.steps);
  }
  bar.finish();

  {
    torch::NoGradGuard ng;
    for (auto& [n, w] : base->w) ft.w[n] = weight(n).detach().clone().contiguous();
  }
  fs::create_directories(stage / "finetune", ec);
  if (ec) return cleanup_fail({Errc::io, (stage / "finetune").string() + ": cannot create: " + ec.message()});
  Status st = rt::write_model_dir(ft, (stage / "finetune").string());
  if (st.ok()) {
    fs::copy_file(stage / "base" / "tokenizer.bin", stage / "finetune" / "tokenizer.bin", ec);
    if (ec) st = {Errc::io, (stage / "finetune/tokenizer.bin").string() + ": cannot copy: " + ec.message()};
  }
  if (st.ok() && o.lora > 0) {
    fs::create_directories(stage / "adapter", ec);
    std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> ab;
    for (auto& [n, p] : lora) ab[n] = {p.first.detach(), p.second.detach()};
    st = write_adapter((stage / "adapter").string(), lora_names, ab, o.lora);
  }
  if (!st.ok()) return cleanup_fail(st);

  rt::EvalOptions eo;
  eo.ctx = o.eval_ctx;
  eo.chunks = o.eval_chunks;
  auto qb = rt::evaluate_quality(*base, held_ids, eo);
  if (!qb.ok()) return cleanup_fail(qb.status());
  auto qf = rt::evaluate_quality(ft, held_ids, eo, &*base);
  if (!qf.ok()) return cleanup_fail(qf.status());

  fs::rename(stage, out, ec);
  if (ec) return cleanup_fail({Errc::io, o.out + ": cannot rename from " + stage.string() + ": " + ec.message()});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto size_of = [](const fs::path& p) {
    std::error_code e;
    auto s = fs::file_size(p, e);
    return e ? int64_t{-1} : static_cast<int64_t>(s);
  };
  nlohmann::json j = {
      {"out", o.out},
      {"method", o.lora > 0 ? "lora" : "full"},
      {"lora_rank", o.lora},
      {"steps", o.steps},
      {"lr", o.lr},
      {"batch", o.batch},
      {"ctx", o.ctx},
      {"seed", o.seed},
      {"train_tokens", train_ids.size()},
      {"heldout_tokens", held_ids.size()},
      {"heldout_first_byte", cut},
      {"train_loss_first", losses.empty() ? 0.0 : losses.front()},
      {"train_loss_last10_mean", 0.0},
      {"eval_ctx", qb->ctx},
      {"eval_windows", qb->windows},
      {"eval_scored_tokens", qb->scored_tokens},
      {"base_heldout_ppl", qb->perplexity},
      {"base_heldout_nll", qb->nll},
      {"finetune_heldout_ppl", qf->perplexity},
      {"finetune_heldout_nll", qf->nll},
      {"kl_finetune_vs_base", qf->kl_mean},
      {"finetune_bytes", size_of(out / "finetune/model.safetensors")},
      {"adapter_bytes", o.lora > 0 ? size_of(out / "adapter/adapter_model.safetensors") : int64_t{0}},
      {"seconds", secs}};
  if (!losses.empty()) {
    double s = 0;
    const size_t n = std::min<size_t>(10, losses.size());
    for (size_t i = losses.size() - n; i < losses.size(); ++i) s += losses[i];
    j["train_loss_last10_mean"] = s / n;
  }
  if (o.json) {
    std::printf("%s\n", cli::json_text(j, 2).c_str());
  } else {
    std::printf("wrote %s/base and %s/finetune%s (%s fine-tune, %d steps of %dx%d tokens, lr %g, %.1f s)\n",
                o.out.c_str(), o.out.c_str(), o.lora > 0 ? (" and " + o.out + "/adapter").c_str() : "",
                o.lora > 0 ? ("LoRA rank " + std::to_string(o.lora)).c_str() : "full", o.steps, o.batch, o.ctx, o.lr,
                secs);
    std::printf("train loss %.3f -> %.3f (mean of the last 10 steps)\n", j["train_loss_first"].get<double>(),
                j["train_loss_last10_mean"].get<double>());
    std::printf("held-out TinyShakespeare (last 10%%, %lld tokens scored, ctx %lld): perplexity base %.3f, "
                "fine-tune %.3f\n",
                static_cast<long long>(qb->scored_tokens), static_cast<long long>(qb->ctx), qb->perplexity,
                qf->perplexity);
  }
  return cli::kOk;
}

}  // namespace

void add_fixture_ft_commands(CLI::App& app, int& rc) {
  static FtOptions o;
  auto* fx = app.add_subcommand("fixture", "real base/fine-tune pairs (libtorch)");
  fx->require_subcommand(1);
  auto* c = fx->add_subcommand(
      "stories-ft",
      "fine-tune stories260K (../shared/data/llama2c) on TinyShakespeare: OUT/base, OUT/finetune (and OUT/adapter "
      "with --lora); reports held-out perplexity of both");
  c->add_option("OUT", o.out, "Directory to create")->required();
  c->add_option("--lora", o.lora, "LoRA rank on q/k/v/o, merged into the weights (0: full fine-tune)")
      ->check(CLI::Range(0, 64));
  c->add_option("--steps", o.steps, "AdamW steps")->check(CLI::Range(0, 1000000));
  c->add_option("--seed", o.seed, "Seed of the adapter init and of the batches");
  c->add_option("--lr", o.lr, "Peak learning rate (default 1e-3 full, 5e-3 LoRA: stories260K's own pretraining rate)");
  c->add_flag("--hub-lr", o.hub_lr,
              "Peak learning rate 6.67e-5: stories260K's pretraining 1e-3 times Alpaca's fine-tune / LLaMA's pretraining "
              "rate (2e-5 / 3e-4), as released full fine-tunes are trained (docs/BENCHMARKS.md)");
  c->add_option("--batch", o.batch, "Sequences per step")->check(CLI::Range(1, 1024));
  c->add_option("--ctx", o.ctx, "Tokens per training sequence")->check(CLI::Range(8, 512));
  c->add_option("--eval-ctx", o.eval_ctx, "Window of the held-out perplexity")->check(CLI::Range(8, 512));
  c->add_option("--eval-chunks", o.eval_chunks, "Held-out windows to score (0: all)")->check(CLI::Range(0, 1000000));
  c->add_option("--data-dir", o.data_dir, "Shared data folder (default: $TENPAK_SHARED/data, else ../shared/data)");
  c->add_flag("--json", o.json, "Print a JSON report");
  c->callback([&rc] { rc = run_stories_ft(o); });
}

}  // namespace tenpak::ml
