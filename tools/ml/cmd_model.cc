// tenpak convert / eval / generate: the model runtime's commands
// (runtime/include/tenpak/{llama,tokenizer,eval,convert}.h; docs/RUNTIME.md).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"
#include "ml_commands.h"
#include "text_file.h"
#include "tenpak/convert.h"
#include "tenpak/eval.h"
#include "tenpak/llama.h"
#include "tenpak/quant.h"
#include "tenpak/tokenizer.h"

namespace tenpak::ml {

namespace {

// Every command loads models through this one function, so a loader that
// understands more formats (quantized checkpoints) replaces it in one line.
Result<rt::Model> load_model_for_commands(const std::string& dir) { return quant::load_model_any(dir); }

void set_threads(int threads) {
  if (threads > 0) {
    torch::set_num_threads(threads);
    torch::set_num_interop_threads(1);
  }
}

Result<rt::Tokenizer> tokenizer_for(const std::string& dir, const rt::Model& m) {
  auto tok = rt::Tokenizer::load(dir);
  if (!tok.ok()) return tok.status();
  if (tok->vocab_size() > m.cfg.vocab_size)
    return Status{Errc::invalid, dir + ": the tokenizer has " + std::to_string(tok->vocab_size()) +
                                     " tokens, the model's vocab_size is " + std::to_string(m.cfg.vocab_size)};
  return tok;
}

std::string xml_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '&') r += "&amp;";
    else if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '"') r += "&quot;";
    else r += c;
  }
  return r;
}

// One line chart per series (x: window index), stacked, as a standalone SVG.
std::string svg_chart(const std::string& title, const std::vector<std::pair<std::string, std::vector<double>>>& series) {
  const int W = 760, PH = 200, top = 40, left = 70, right = 20, gap = 50;
  const int H = top + static_cast<int>(series.size()) * (PH + gap);
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">" << xml_escape(title) << "</text>\n";
  int y0 = top;
  for (auto& [name, v] : series) {
    double lo = v.empty() ? 0 : *std::min_element(v.begin(), v.end());
    double hi = v.empty() ? 1 : *std::max_element(v.begin(), v.end());
    if (hi <= lo) hi = lo + 1e-12 + std::abs(lo) * 1e-6;
    const int pw = W - left - right;
    o << "<rect x=\"" << left << "\" y=\"" << y0 << "\" width=\"" << pw << "\" height=\"" << PH
      << "\" fill=\"none\" stroke=\"#888\"/>\n";
    o << "<text x=\"" << left << "\" y=\"" << y0 - 6 << "\">" << name << "</text>\n";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4g", hi);
    o << "<text x=\"" << left - 6 << "\" y=\"" << y0 + 10 << "\" text-anchor=\"end\">" << buf << "</text>\n";
    std::snprintf(buf, sizeof buf, "%.4g", lo);
    o << "<text x=\"" << left - 6 << "\" y=\"" << y0 + PH << "\" text-anchor=\"end\">" << buf << "</text>\n";
    o << "<text x=\"" << left + pw << "\" y=\"" << y0 + PH + 16 << "\" text-anchor=\"end\">window "
      << (v.empty() ? 0 : v.size() - 1) << "</text>\n<polyline fill=\"none\" stroke=\"#1f77b4\" points=\"";
    for (size_t i = 0; i < v.size(); ++i) {
      double x = left + (v.size() > 1 ? pw * static_cast<double>(i) / (v.size() - 1) : pw / 2.0);
      double y = y0 + PH - PH * (v[i] - lo) / (hi - lo);
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x, y);
      o << buf;
    }
    o << "\"/>\n";
    y0 += PH + gap;
  }
  o << "</svg>\n";
  return o.str();
}

Status write_text_atomic(const std::string& path, const std::string& s) {
  const std::string tmp = path + ".tenpak-tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << s;
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      return {Errc::io, path + ": write failed"};
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return {Errc::io, path + ": cannot rename from " + tmp};
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ convert

struct ConvertArgs {
  std::string bin, tokenizer, out;
  bool json = false;
};

int run_convert(const ConvertArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = rt::convert_llama2c(a.bin, a.tokenizer, a.out);
  if (!r.ok()) return cli::fail(r.status());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    nlohmann::json j;
    j["output"] = a.out;
    j["config"] = rt::config_to_json(r->cfg);
    j["tensors"] = r->tensors;
    j["parameters"] = r->parameters;
    j["shared_classifier"] = r->shared_classifier;
    j["files"] = {"config.json", "model.safetensors", "tokenizer.bin"};
    j["seconds"] = s;
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    std::fprintf(stderr, "converted %s: %s, %lld layers, dim %lld, %lld heads (%lld kv), vocab %lld, %lld parameters%s\n",
                 a.bin.c_str(), r->cfg.architecture.c_str(), (long long)r->cfg.num_layers,
                 (long long)r->cfg.hidden_size, (long long)r->cfg.num_heads, (long long)r->cfg.num_kv_heads,
                 (long long)r->cfg.vocab_size, (long long)r->parameters,
                 r->shared_classifier ? ", tied embeddings" : "");
    std::printf("%s\n", a.out.c_str());
  }
  return cli::kOk;
}

// --------------------------------------------------------------------- eval

struct EvalArgs {
  std::string model, text, reference, svg;
  int64_t ctx = 512, chunks = 0, batch = 4, prompt_tokens = 128, decode_tokens = 64, runs = 10;
  int threads = 0;
  bool json = false, no_speed = false;
};

int run_eval(const EvalArgs& a) {
  set_threads(a.threads);
  auto t0 = std::chrono::steady_clock::now();
  auto model = load_model_for_commands(a.model);
  if (!model.ok()) return cli::fail(model.status());
  std::optional<rt::Model> ref;
  if (!a.reference.empty()) {
    auto r = load_model_for_commands(a.reference);
    if (!r.ok()) return cli::fail(r.status());
    ref = std::move(*r);
  }
  auto tok = tokenizer_for(a.model, *model);
  if (!tok.ok()) return cli::fail(tok.status());
  auto text = read_text_file(a.text);
  if (!text.ok()) return cli::fail(text.status());
  auto ids = tok->encode(*text, /*bos=*/true);

  rt::EvalOptions eo;
  eo.ctx = a.ctx;
  eo.chunks = a.chunks;
  eo.batch = a.batch;
  cli::ProgressBar bar("eval");
  eo.progress = [&](int64_t d, int64_t n) { bar.update(d, n); };
  auto q = rt::evaluate_quality(*model, ids, eo, ref ? &*ref : nullptr);
  bar.finish();
  if (!q.ok()) return cli::fail({q.status().code(), a.text + ": " + q.status().message()});
  if (!a.svg.empty()) {
    std::vector<std::pair<std::string, std::vector<double>>> series{{"mean NLL per window (nats/token)", q->window_nll}};
    if (q->has_reference) series.push_back({"mean KL(reference || model) per window (nats)", q->window_kl});
    Status st = write_text_atomic(a.svg, svg_chart("tenpak eval " + a.model + " on " + a.text + " (ctx " +
                                                       std::to_string(q->ctx) + ")", series));
    if (!st.ok()) return cli::fail(st);
  }
  rt::SpeedResult sp;
  if (!a.no_speed) {
    rt::SpeedOptions so;
    so.prompt_tokens = a.prompt_tokens;
    so.decode_tokens = a.decode_tokens;
    so.runs = a.runs;
    sp = rt::measure_speed(*model, ids, so);  // the prompt: the text's first tokens
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["text"] = a.text;
    j["text_tokens"] = ids.size();
    j["ctx"] = q->ctx;
    j["windows"] = q->windows;
    j["scored_tokens"] = q->scored_tokens;
    j["nll"] = q->nll;
    j["perplexity"] = q->perplexity;
    j["perplexity_stderr"] = q->ppl_stderr;
    if (q->has_reference) {
      j["reference"] = a.reference;
      j["reference_perplexity"] = q->ref_perplexity;
      j["perplexity_ratio"] = q->perplexity / q->ref_perplexity;
      j["kl_mean"] = q->kl_mean;
      j["kl_p99"] = q->kl_p99;
      j["kl_max"] = q->kl_max;
      j["top1_agreement"] = q->top1_agreement;
    }
    if (!a.no_speed) {
      j["speed"] = {{"threads", sp.threads},
                    {"prompt_tokens", sp.prompt_tokens},
                    {"runs", sp.runs},
                    {"forward_ms_p50", sp.forward_ms_p50},
                    {"forward_ms_p95", sp.forward_ms_p95},
                    {"decode_tokens", sp.decode_tokens},
                    {"decode_tokens_per_s", sp.decode_tokens_per_s}};
    }
    j["seconds"] = s;
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    std::printf("text          %s: %zu tokens, %lld windows of %lld, %lld tokens scored\n", a.text.c_str(), ids.size(),
                (long long)q->windows, (long long)q->ctx, (long long)q->scored_tokens);
    std::printf("perplexity    %.4f +/- %.4f\n", q->perplexity, q->ppl_stderr);
    if (q->has_reference) {
      std::printf("reference     %.4f (ratio %.4f)\n", q->ref_perplexity, q->perplexity / q->ref_perplexity);
      std::printf("KL divergence mean %.6f, p99 %.6f, max %.6f nats\n", q->kl_mean, q->kl_p99, q->kl_max);
      std::printf("top-1 agree   %.2f%%\n", 100 * q->top1_agreement);
    }
    if (!a.no_speed) {
      std::printf("forward       %lld tokens: p50 %.2f ms, p95 %.2f ms (%lld runs, %lld threads)\n",
                  (long long)sp.prompt_tokens, sp.forward_ms_p50, sp.forward_ms_p95, (long long)sp.runs,
                  (long long)sp.threads);
      std::printf("decode        %.1f tokens/s (%lld tokens, KV cache)\n", sp.decode_tokens_per_s,
                  (long long)sp.decode_tokens);
    }
  }
  return cli::kOk;
}

// ----------------------------------------------------------------- generate

struct GenArgs {
  std::string model, prompt;
  rt::SampleOptions so;
  int threads = 0;
  bool json = false;
};

int run_generate(const GenArgs& a) {
  set_threads(a.threads);
  auto model = load_model_for_commands(a.model);
  if (!model.ok()) return cli::fail(model.status());
  auto tok = tokenizer_for(a.model, *model);
  if (!tok.ok()) return cli::fail(tok.status());
  auto ids = tok->encode(a.prompt, /*bos=*/true);
  int64_t prev = ids.back();
  if (!a.json) {
    std::printf("%s", a.prompt.c_str());
    std::fflush(stdout);
  }
  auto t0 = std::chrono::steady_clock::now();
  std::string completion;
  auto out = rt::generate(*model, ids, a.so, [&](int64_t id) {
    std::string piece = tok->piece_text(prev, id);
    completion += piece;
    if (!a.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    prev = id;
  });
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["prompt"] = a.prompt;
    j["prompt_ids"] = ids;
    j["ids"] = out;
    j["completion"] = completion;
    j["tokens"] = out.size();
    j["seconds"] = s;
    j["temperature"] = a.so.temperature;
    j["top_p"] = a.so.top_p;
    j["seed"] = a.so.seed;
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    std::printf("\n");
    std::fprintf(stderr, "%zu tokens in %.2f s (%.1f tokens/s)\n", out.size(), s, s > 0 ? out.size() / s : 0.0);
  }
  return cli::kOk;
}

}  // namespace

void add_model_commands(CLI::App& app, int& rc) {
  auto* conv = app.add_subcommand("convert", "convert a model to a Hugging Face model directory");
  conv->require_subcommand(1);
  auto ca = std::make_shared<ConvertArgs>();
  auto* l2c = conv->add_subcommand("llama2c", "llama2.c checkpoint (legacy format) -> config.json, model.safetensors, tokenizer.bin");
  l2c->add_option("MODEL", ca->bin, "llama2.c checkpoint (.bin)")->required()->check(CLI::ExistingFile);
  l2c->add_option("--tokenizer", ca->tokenizer, "llama2.c tokenizer file (tokenizer.bin / tok512.bin)")
      ->required()->check(CLI::ExistingFile);
  l2c->add_option("-o,--output", ca->out, "output directory (must not exist)")->required();
  l2c->add_flag("--json", ca->json, "print a JSON report");
  l2c->callback([ca, &rc] { rc = run_convert(*ca); });

  auto ea = std::make_shared<EvalArgs>();
  auto* ev = app.add_subcommand("eval", "perplexity, KL divergence against a reference, and speed of a model on a text");
  ev->add_option("MODEL_DIR", ea->model, "model directory (config.json, *.safetensors, tokenizer.bin)")->required();
  ev->add_option("--text", ea->text, "text file to score")->required();
  ev->add_option("--ctx", ea->ctx, "window length in tokens (at most the model's max_position_embeddings)")
      ->capture_default_str()->check(CLI::Range(4, 1 << 20));
  ev->add_option("--chunks", ea->chunks, "windows to score (0: every full window)")->capture_default_str()->check(CLI::NonNegativeNumber);
  ev->add_option("--reference", ea->reference, "reference model directory: KL divergence and top-1 agreement against it");
  ev->add_option("--batch", ea->batch, "windows per forward call (speed only)")->capture_default_str()->check(CLI::Range(1, 1024));
  ev->add_option("--threads", ea->threads, "torch threads (0: libtorch's default)")->capture_default_str()->check(CLI::Range(0, 1024));
  ev->add_option("--prompt-tokens", ea->prompt_tokens, "prompt length for the forward latency")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  ev->add_option("--decode-tokens", ea->decode_tokens, "tokens decoded for the throughput")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  ev->add_option("--runs", ea->runs, "timed forwards for the latency percentiles")->capture_default_str()->check(CLI::Range(1, 100000));
  ev->add_flag("--no-speed", ea->no_speed, "skip the latency and throughput measurement");
  ev->add_option("--svg", ea->svg, "write a plot of the per-window NLL (and KL) to this SVG file");
  ev->add_flag("--json", ea->json, "print a JSON report");
  ev->callback([ea, &rc] { rc = run_eval(*ea); });

  auto ga = std::make_shared<GenArgs>();
  auto* gen = app.add_subcommand("generate", "continue a prompt with a model (greedy or sampled)");
  gen->add_option("MODEL_DIR", ga->model, "model directory")->required();
  gen->add_option("PROMPT", ga->prompt, "text to continue")->required();
  gen->add_option("--max-tokens", ga->so.max_tokens, "tokens to generate at most")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  gen->add_option("--temperature", ga->so.temperature, "0: greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  gen->add_option("--top-p", ga->so.top_p, "nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  gen->add_option("--seed", ga->so.seed, "sampling seed (same seed: same text)")->capture_default_str();
  gen->add_option("--threads", ga->threads, "torch threads (0: libtorch's default)")->capture_default_str()->check(CLI::Range(0, 1024));
  gen->add_flag("--json", ga->json, "print a JSON report instead of streaming the text");
  gen->callback([ga, &rc] { rc = run_generate(*ga); });
}

}  // namespace tenpak::ml
