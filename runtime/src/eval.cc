#include "tenpak/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace tenpak::rt {

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least q of the data at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

Result<QualityResult> evaluate_quality(const Model& model, const std::vector<int64_t>& tokens, const EvalOptions& opt,
                                       const Model* reference) {
  torch::NoGradGuard ng;
  QualityResult r;
  const int64_t ctx = std::min(opt.ctx, model.cfg.max_position);
  if (ctx < 4) return Status{Errc::invalid, "context " + std::to_string(ctx) + " is too short (at least 4 tokens)"};
  if (reference && reference->cfg.vocab_size != model.cfg.vocab_size)
    return Status{Errc::invalid, "the reference has vocab_size " + std::to_string(reference->cfg.vocab_size) +
                                     ", the model " + std::to_string(model.cfg.vocab_size)};
  const int64_t avail = static_cast<int64_t>(tokens.size()) / ctx;
  if (avail == 0)
    return Status{Errc::invalid, "the text has " + std::to_string(tokens.size()) + " tokens; one window of ctx " +
                                     std::to_string(ctx) + " needs at least " + std::to_string(ctx)};
  const int64_t windows = opt.chunks > 0 ? std::min(opt.chunks, avail) : avail;
  const int64_t first = ctx / 2;
  const int64_t per_window = ctx - 1 - first;
  for (int64_t t : tokens)
    if (t < 0 || t >= model.cfg.vocab_size)
      return Status{Errc::invalid, "token id " + std::to_string(t) + " is outside the model's vocabulary (" +
                                       std::to_string(model.cfg.vocab_size) + ")"};
  double nll_sum = 0, nll2_sum = 0, ref_nll_sum = 0;
  int64_t agree = 0;
  std::vector<double> kls;
  if (reference) kls.reserve(windows * per_window);
  const int64_t batch = std::max<int64_t>(1, opt.batch);
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t nb = std::min(batch, windows - w0);
    auto toks = torch::empty({nb, ctx}, torch::kInt64);
    auto acc = toks.accessor<int64_t, 2>();
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t start = (w0 + b) * ctx;
      for (int64_t i = 0; i < ctx; ++i) acc[b][i] = tokens[start + i];
      acc[b][0] = 1;  // <s>, as llama.cpp's perplexity does for every window
    }
    // Position j predicts token j+1; score j = first .. ctx-2.
    auto logp = torch::log_softmax(forward(model, toks).slice(1, first, ctx - 1), -1);
    auto target = toks.slice(1, first + 1, ctx).unsqueeze(-1);
    auto nll = -logp.gather(-1, target).squeeze(-1).to(torch::kFloat64);  // [nb, per_window]
    nll_sum += nll.sum().item<double>();
    auto wn = nll.mean(1).contiguous();
    for (int64_t b = 0; b < nb; ++b) r.window_nll.push_back(wn[b].item<double>());
    nll2_sum += nll.pow(2).sum().item<double>();
    if (reference) {
      auto ref_logp = torch::log_softmax(forward(*reference, toks).slice(1, first, ctx - 1), -1);
      ref_nll_sum += -ref_logp.gather(-1, target).to(torch::kFloat64).sum().item<double>();
      auto kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1).to(torch::kFloat64).contiguous().view(-1);
      auto kd = kl.data_ptr<double>();
      for (int64_t b = 0; b < nb; ++b) {
        double s = 0;
        for (int64_t i = 0; i < per_window; ++i) s += std::max(0.0, kd[b * per_window + i]);
        r.window_kl.push_back(s / per_window);
      }
      for (int64_t i = 0; i < kl.numel(); ++i) kls.push_back(std::max(0.0, kd[i]));
      agree += (ref_logp.argmax(-1) == logp.argmax(-1)).sum().item<int64_t>();
    }
    if (opt.progress) opt.progress(w0 + nb, windows);
  }
  const double n = static_cast<double>(windows * per_window);
  r.windows = windows;
  r.ctx = ctx;
  r.scored_tokens = windows * per_window;
  r.nll = nll_sum / n;
  r.perplexity = std::exp(r.nll);
  // llama.cpp: stderr of the mean NLL is sqrt(var / (N-1)); ppl's by the delta method.
  const double var = std::max(0.0, nll2_sum / n - r.nll * r.nll);
  r.ppl_stderr = n > 1 ? r.perplexity * std::sqrt(var / (n - 1)) : 0;
  if (reference) {
    r.has_reference = true;
    r.ref_perplexity = std::exp(ref_nll_sum / n);
    double s = 0;
    for (double k : kls) s += k;
    r.kl_mean = s / n;
    r.kl_p99 = percentile(kls, 0.99);
    r.kl_max = kls.empty() ? 0 : *std::max_element(kls.begin(), kls.end());
    r.top1_agreement = static_cast<double>(agree) / n;
  }
  return r;
}

SpeedResult measure_speed(const Model& model, const std::vector<int64_t>& prompt, const SpeedOptions& opt) {
  torch::NoGradGuard ng;
  using clk = std::chrono::steady_clock;
  SpeedResult r;
  r.threads = torch::get_num_threads();
  const int64_t room = std::max<int64_t>(2, model.cfg.max_position - opt.decode_tokens);
  const int64_t P = std::max<int64_t>(1, std::min(opt.prompt_tokens, room));
  std::vector<int64_t> ids(P);
  for (int64_t i = 0; i < P; ++i)
    ids[i] = prompt.empty() ? 1 : prompt[i % prompt.size()] % model.cfg.vocab_size;
  auto toks = torch::from_blob(ids.data(), {1, P}, torch::kInt64).clone();
  forward(model, toks);  // warm-up: allocations, thread pool
  std::vector<double> ms;
  for (int64_t i = 0; i < std::max<int64_t>(1, opt.runs); ++i) {
    auto t0 = clk::now();
    forward(model, toks);
    ms.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
  }
  r.prompt_tokens = P;
  r.runs = static_cast<int64_t>(ms.size());
  r.forward_ms_p50 = percentile(ms, 0.50);
  r.forward_ms_p95 = percentile(ms, 0.95);
  const int64_t D = std::max<int64_t>(0, std::min(opt.decode_tokens, model.cfg.max_position - P));
  KVCache cache;
  auto logits = forward_cached(model, toks, cache);
  int64_t next = logits[0][-1].argmax().item<int64_t>();
  auto t0 = clk::now();
  for (int64_t i = 0; i < D; ++i) {
    auto t = torch::full({1, 1}, next, torch::kInt64);
    next = forward_cached(model, t, cache)[0][-1].argmax().item<int64_t>();
  }
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  r.decode_tokens = D;
  r.decode_tokens_per_s = s > 0 ? D / s : 0;
  return r;
}

std::vector<int64_t> generate(const Model& model, const std::vector<int64_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int64_t)>& on_token) {
  torch::NoGradGuard ng;
  std::vector<int64_t> out;
  if (prompt.empty()) return out;
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  KVCache cache;
  std::vector<int64_t> p(prompt.begin(), prompt.end());
  if (static_cast<int64_t>(p.size()) > model.cfg.max_position) p.erase(p.begin(), p.end() - model.cfg.max_position);
  auto logits = forward_cached(model, torch::from_blob(p.data(), {1, static_cast<int64_t>(p.size())}, torch::kInt64).clone(), cache)[0][-1];
  for (int64_t step = 0; step < opt.max_tokens && cache.len < model.cfg.max_position; ++step) {
    int64_t id;
    if (opt.temperature <= 0) {
      id = logits.argmax().item<int64_t>();
    } else {
      // Nucleus sampling: the smallest set of most likely tokens whose mass reaches top_p.
      auto probs = torch::softmax(logits.to(torch::kFloat64) / opt.temperature, -1);
      auto [sorted, idx] = probs.sort(-1, /*descending=*/true);
      auto sp = sorted.data_ptr<double>();
      auto ip = idx.data_ptr<int64_t>();
      const int64_t V = sorted.numel();
      double mass = 0;
      int64_t keep = 0;
      while (keep < V && (keep == 0 || mass < opt.top_p)) mass += sp[keep++];
      double u = uni(rng) * mass, c = 0;
      id = ip[keep - 1];
      for (int64_t i = 0; i < keep; ++i) {
        c += sp[i];
        if (u < c) {
          id = ip[i];
          break;
        }
      }
    }
    if (opt.stop_at_eos && id == 2) break;
    out.push_back(id);
    if (on_token) on_token(id);
    logits = forward_cached(model, torch::full({1, 1}, id, torch::kInt64), cache)[0][-1];
  }
  return out;
}

}  // namespace tenpak::rt
