// What `tenpak eval` measures, as library calls, so the quantization and
// optimizer tools compare models without the CLI. docs/RUNTIME.md gives the
// definitions and their sources.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tenpak/llama.h"
#include "tenpak/status.h"

namespace tenpak::rt {

struct EvalOptions {
  int64_t ctx = 256;      // window length in tokens (clamped to the model's max_position)
  int64_t chunks = 0;     // windows to score; 0 = every full window of the text
  int64_t batch = 1;      // windows per forward call (same numbers, only speed)
  // Progress: windows done, windows in all. May be empty.
  std::function<void(int64_t done, int64_t total)> progress;
};

// Perplexity as llama.cpp's perplexity tool computes it: the token stream is
// cut into consecutive windows of `ctx` tokens, the first token of each
// replaced by <s>; in each window the predictions of tokens ctx/2+1 .. ctx-1
// (the second half, each with at least ctx/2 tokens of context) are scored.
// With a reference: per scored position, KL(P_ref || P_model) of the
// next-token distributions, and whether both argmax agree.
struct QualityResult {
  int64_t windows = 0, scored_tokens = 0, ctx = 0;
  double nll = 0;          // mean negative log-likelihood (nats per token)
  double perplexity = 0;   // exp(nll)
  double ppl_stderr = 0;   // perplexity's standard error (delta method, as llama.cpp)
  bool has_reference = false;
  double ref_perplexity = 0;
  double kl_mean = 0, kl_p99 = 0, kl_max = 0;  // nats
  double top1_agreement = 0;                    // fraction of scored positions
  // Per window, in text order: mean NLL of its scored tokens, and (with a
  // reference) mean KL divergence. For plots of where a model does worse.
  std::vector<double> window_nll, window_kl;
};

// `tokens`: the whole text encoded once (with <s> first). Errc::invalid when
// the text is shorter than one window (the message says how many tokens are
// needed). `reference` may be null.
Result<QualityResult> evaluate_quality(const Model& model, const std::vector<int64_t>& tokens,
                                       const EvalOptions& opt, const Model* reference = nullptr);

struct SpeedOptions {
  int64_t prompt_tokens = 128;  // fixed prompt length for the forward latency
  int64_t runs = 10;            // timed forwards (after one warm-up)
  int64_t decode_tokens = 64;   // tokens decoded one at a time with the KV cache
};
struct SpeedResult {
  int64_t prompt_tokens = 0, runs = 0, decode_tokens = 0, threads = 0;
  double forward_ms_p50 = 0, forward_ms_p95 = 0;  // one forward of the prompt
  double decode_tokens_per_s = 0;                 // greedy decode after the prompt, KV cache
};
// `prompt`: token ids, repeated or cut to prompt_tokens (and to fit the
// model's max_position with the decoded tokens).
SpeedResult measure_speed(const Model& model, const std::vector<int64_t>& prompt, const SpeedOptions& opt);

struct SampleOptions {
  int64_t max_tokens = 64;
  double temperature = 0;  // 0: greedy
  double top_p = 1.0;
  uint64_t seed = 0;
  bool stop_at_eos = true;
};
// Continues `prompt` (ids); returns the new ids only. on_token (may be
// empty) sees each id as it is produced.
std::vector<int64_t> generate(const Model& model, const std::vector<int64_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int64_t)>& on_token = {});

// Nearest-rank percentile (q in [0,1]) of `v` (copied, sorted). 0 when empty.
double percentile(std::vector<double> v, double q);

}  // namespace tenpak::rt
