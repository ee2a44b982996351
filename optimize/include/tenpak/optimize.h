// The cost optimizer's decision, without libtorch: which candidate (a
// quantization preset, or the unquantized model) is the cheapest to serve
// among those that meet the user's constraints, from figures that were
// measured (quality, bytes, this machine's speed) or estimated by a stated
// hardware model (other hardware). The measuring side (quantize, evaluate)
// lives in tenpak-ml (tools/ml/cmd_optimize.cc) and is handed to the search
// as two callbacks, so the search's order, its stopping rule and its
// guarantee are tested here with injected measurements. docs/OPTIMIZE.md
// states the cost model, the sources of the hardware figures and why the
// smart search picks the same winner as the exhaustive one.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::opt {

// ---------------------------------------------------------------- constraints

// Unset (nullopt) means "no constraint". Percent and ratios as the CLI takes
// them: --max-ppl-delta 2 means perplexity at most 2% above the unquantized
// model's; --min-compression 3 means at most a third of the fp16 bytes.
struct Constraints {
  std::optional<double> max_ppl_delta_pct;  // perplexity increase, percent
  std::optional<double> max_kld;            // mean KL(unquantized || candidate), nats per token
  std::optional<double> max_latency_ms;     // per generated token, batch 1 (p95 where measured)
  std::optional<double> min_compression;    // fp16 bytes / bytes on disk
  bool has_quality() const { return max_ppl_delta_pct || max_kld; }
};
// Errc::invalid naming the flag for a negative, NaN or infinite bound, a
// latency of 0, a compression below 1/64 or above what a 2-bit code could
// reach (8x fp16), and for contradictory sets: a quality bound of exactly 0
// (which only the unquantized model meets) with --min-compression above 1
// (which the unquantized model never meets).
Status validate(const Constraints& c);

// -------------------------------------------------------------- hardware model

// What this machine's speed figures mean, shown with them (table, JSON,
// plot): the runtime has no quantized kernels, so they do not rank formats.
inline constexpr const char* kThisMachineNote =
    "this machine runs every candidate with TenPak's runtime, which dequantizes each checkpoint to float32 "
    "at load (no quantized kernels): every candidate does the same arithmetic, so the latency, throughput "
    "and cost differences between candidates here are run-to-run noise, not an effect of quantization";

struct HardwareProfile {
  std::string name;
  double memory_gb = 0;      // GiB (2^30 bytes)
  double bandwidth_gbs = 0;  // 1e9 bytes per second
  double price_per_hour = 0;
  std::string price_source, spec_source, date;
  bool measured = false;     // this machine: latency and throughput measured, never estimated
};

// The stated model that turns bytes into speed on hardware that is not this
// machine (docs/OPTIMIZE.md, "Cost model"): one decode step of a batch of
// `batch` sequences at `context` tokens reads every serving weight byte once
// and each sequence's KV cache once, at `bandwidth x efficiency[format]`.
struct CostModel {
  double batch = 16;         // sequences decoded together (throughput and cost)
  double context = 1024;     // tokens in each sequence's KV cache
  double kv_bytes_per_value = 2;  // fp16 KV cache on GPUs
  std::map<std::string, double> efficiency;  // format ("fp16", "gptq", "awq", "nf4", "fp4", "int8") -> (0, 1]
  std::string efficiency_source;
};

// The hardware file (router/data/hardware.json, shared with the router):
// "gpus" (the router's profiles) and "optimize" (this machine's price and
// the CostModel). `what` names the file in errors.
struct HardwareFile {
  std::vector<HardwareProfile> profiles;  // "this-machine" first, then the GPUs in file order
  CostModel model;
  std::string source;
};
Result<HardwareFile> parse_hardware(const std::string& json_text, const std::string& what,
                                    double this_machine_memory_gb);
// The file compiled into the library (router/data/hardware.json).
Result<HardwareFile> builtin_hardware(double this_machine_memory_gb);
// Errc::invalid listing every name when `name` is not one (case-insensitive).
Result<HardwareProfile> find_hardware(const HardwareFile& f, const std::string& name);
// Total memory of this machine from /proc/meminfo, GiB; 0 when unknown.
double this_machine_memory_gb();

// The model's shape, for KV cache bytes and parameter counts.
struct ModelShape {
  int64_t params = 0;               // every parameter (fp16 bytes = 2 x params)
  int64_t layers = 0, kv_heads = 0, head_dim = 0;
  int64_t kv_values_per_token() const { return 2 * layers * kv_heads * head_dim; }  // K and V
};

// --------------------------------------------------------------- candidates

struct CandidateSpec {
  std::string name;     // preset name, or "unquantized"
  std::string format;   // efficiency key: "fp16" for the unquantized model
  bool unquantized = false;
  // A lower bound of serving_bytes, known before quantizing (the codes
  // alone, every other tensor at 2 bytes): the search's cost bound.
  double serving_bytes_lower_bound = 0;
};

// What the measuring side reports. A probe quantizes (no text evaluation):
// exact bytes, this machine's decode speed and the cheap quality proxies;
// an evaluation measures quality on the whole --text.
struct Probe {
  bool ok = false;
  std::string error;          // why the preset failed (reported; the search goes on)
  uint64_t disk_bytes = 0;    // safetensors bytes of the written checkpoint
  uint64_t fp16_bytes = 0;    // 2 x parameters
  double serving_bytes = 0;   // quantized tensors as stored + every other tensor at 2 bytes (GPU serving)
  double runtime_bytes = 0;   // float32 weights this machine's runtime holds after dequantizing (the estimate)
  // This machine, batch 1, measured in a fresh process (tenpak-ml
  // optimize-measure) that loads the candidate with TenPak's runtime and
  // decodes local_tokens tokens: per-token decode latency, and that
  // process's peak resident set (its VmHWM) with the resident set it
  // had before loading the model (libtorch and the process itself; reported,
  // not subtracted). 0: not measured (then peak memory is the estimate).
  double local_ms_p50 = 0, local_ms_p95 = 0, local_tokens_per_s = 0;
  double local_peak_rss_bytes = 0, local_baseline_rss_bytes = 0;
  int64_t local_tokens = 0;  // prompt + decoded tokens in the measured KV cache
  // Proxies. recon_error: ||W - deq(W)|| / ||W|| over the quantized linears
  // (NaN where not comparable: AWQ folds scales). sample_*: the first
  // sample_windows windows of the evaluation text, per window.
  double recon_error = 0;
  int64_t linears_quantized = 0, linears_total = 0;
  std::vector<double> sample_kl;        // mean KL per window
  std::vector<double> sample_nll_delta;  // mean NLL(candidate) - NLL(unquantized) per window
  double seconds = 0;
};
struct Evaluation {
  bool ok = false;
  std::string error;
  int64_t windows = 0, scored_tokens = 0;
  double ppl = 0, ref_ppl = 0, ppl_delta_pct = 0;
  double kl_mean = 0, kl_p99 = 0, top1 = 0;
  double seconds = 0;
};

// Speed, memory and cost of a probed candidate on a profile: measured on
// this machine, from CostModel elsewhere (estimated = true).
struct Figures {
  bool estimated = false;
  double latency_ms_p50 = 0, latency_ms_p95 = 0;  // per generated token, batch 1
  double tokens_per_s = 0;                         // this machine: batch 1; else at CostModel::batch
  // This machine: the measured peak RSS when the probe has one
  // (memory_measured), else float32 weights + float32 KV cache of `context`
  // tokens. Elsewhere: serving bytes + the batch's KV cache (estimated).
  double peak_memory_bytes = 0;
  bool memory_measured = false;
  bool fits = true;
  double cost_per_mtok = 0;                        // USD per million generated tokens
};
Figures figures(const Probe& p, const CandidateSpec& c, const HardwareProfile& hw, const CostModel& m,
                const ModelShape& shape);
// The same model's bound from serving_bytes_lower_bound: no figure of an
// unprobed candidate can be cheaper. 0 on this machine (not known before measuring).
double cost_lower_bound(const CandidateSpec& c, const HardwareProfile& hw, const CostModel& m, const ModelShape& shape);

// ------------------------------------------------------------------ decision

struct Check {
  std::string constraint;  // "max-ppl-delta", "max-kld", "max-latency-ms", "min-compression", "memory", "quantize"
  bool pass = false;
  double value = 0, limit = 0;
  std::string why;         // "KL 0.107 > 0.05", "needs 20.1 GiB, T4 has 16 GiB", ...
  // How far outside the limit, relative (0 when it passes): ranks the closest candidates.
  double miss = 0;
};

struct CandidateResult {
  CandidateSpec spec;
  std::optional<Probe> probe;
  std::optional<Evaluation> eval;
  Figures fig;
  std::vector<Check> checks;  // one per constraint that could be decided (quantize failure first)
  bool feasible = false;      // every constraint checked and passed
  std::string skipped;        // not evaluated by the smart search, and why
};

struct Savings {
  std::string against;       // "unquantized", "gptq-4bit-128g"
  bool available = false;    // the baseline was measured
  std::optional<bool> baseline_meets_constraints;  // unknown when the smart search did not need to evaluate it
  double baseline_cost_per_mtok = 0, winner_cost_per_mtok = 0;
  double saving = 0;         // 1 - winner / baseline
  double baseline_bytes = 0, winner_bytes = 0;  // on disk
};

struct Decision {
  std::vector<CandidateResult> table;  // in the candidates' order
  int winner = -1;                     // index into table; -1: nothing meets the constraints
  std::vector<int> closest;            // when infeasible: up to 3, by smallest largest miss
  std::vector<Savings> savings;        // when there is a winner
  int probes = 0, evaluations = 0;     // what the search asked for (cached answers included)
  bool exhaustive = false;
  HardwareProfile hardware;
};

// Applies every constraint to one candidate. Quality constraints need `eval`
// (the unquantized candidate meets them by definition: its delta and KL are 0).
void check_candidate(CandidateResult& r, const Constraints& c, const HardwareProfile& hw);

// The order the winner is chosen by: lower cost, then fewer bytes on disk
// (both known from the probe, so the smart search can rank before it
// evaluates). Equal on both: the earlier candidate. True when a ranks before b.
bool ranks_before(const CandidateResult& a, const CandidateResult& b);

// Conservative proxies (docs/OPTIMIZE.md, "Smart search"). With the sample
// being the first k of the evaluation's N windows of equal weight:
//  - KL: every window's mean KL is >= 0, so the full mean is at least
//    sum(sample) / N. Dropped only when that bound exceeds max_kld: exact.
//  - perplexity: NLL deltas may be negative; the full mean delta is bounded
//    by sum(sample) + (N - k) * min(0, min(sample)) over N, i.e. assuming
//    every unseen window improves as much as the best seen one. Dropped only
//    when that bound's perplexity increase exceeds max_ppl_delta.
// Returns the reason when the candidate cannot meet the quality
// constraints, nullopt when it might.
std::optional<std::string> proxy_rejects(const Probe& p, const Constraints& c, int64_t eval_windows);

struct SearchCallbacks {
  // Each called at most once per candidate index; a failed preset is an
  // ok Result holding Probe{ok = false, error}. A non-ok Result aborts.
  std::function<Result<Probe>(size_t)> probe;
  std::function<Result<Evaluation>(size_t)> evaluate;
  std::function<void(const std::string&)> log;  // may be empty
};

// exhaustive (--all): probes and evaluates every candidate, then picks.
// Otherwise the smart search: candidates are probed in order of
// cost_lower_bound; the cheapest probed candidate not yet ruled out is
// evaluated only when its exact cost is below every unprobed candidate's
// bound; the first one that meets every constraint wins and the search
// stops. Candidates that fail a constraint known from the probe (size,
// latency, memory) or that a proxy rules out are never evaluated.
// `eval_windows`: N of the evaluation (for the proxies).
Result<Decision> search(const std::vector<CandidateSpec>& cands, const Constraints& c, const HardwareProfile& hw,
                        const CostModel& m, const ModelShape& shape, int64_t eval_windows, bool exhaustive,
                        const SearchCallbacks& cb);

// The winner, savings and closest candidates of a table whose rows carry
// their checks. search() calls it; exposed for tests.
void decide(Decision& d);

// The result as JSON (every figure, "estimated" flags, checks, winner, savings).
nlohmann::json decision_json(const Decision& d, const Constraints& c, const CostModel& m,
                             std::optional<double> tokens_per_month);
// Quality (KL) against cost per million tokens, one point per measured
// candidate, the max-kld line drawn, the winner marked; a standalone SVG.
std::string decision_svg(const Decision& d, const Constraints& c, const std::string& title);

// ---------------------------------------------------------------- the cache

// Measurements by (model sha256, preset, settings): DIR/<model sha256>/
// <preset>.<settings hash>.{probe,eval}.json, each written to a temporary
// name in the same directory and renamed, so an interrupted run leaves only
// complete entries; a file that does not parse as a complete entry is
// ignored (and overwritten).
class MeasurementCache {
 public:
  // dir empty: no cache.
  explicit MeasurementCache(std::string dir) : dir_(std::move(dir)) {}
  // $TENPAK_OPTIMIZE_CACHE, else $XDG_CACHE_HOME/tenpak/optimize, else ~/.cache/tenpak/optimize.
  static std::string default_dir();
  const std::string& dir() const { return dir_; }

  std::optional<Probe> get_probe(const std::string& model_sha, const std::string& preset,
                                 const std::string& settings) const;
  std::optional<Evaluation> get_eval(const std::string& model_sha, const std::string& preset,
                                     const std::string& settings) const;
  Status put_probe(const std::string& model_sha, const std::string& preset, const std::string& settings,
                   const Probe& p) const;
  Status put_eval(const std::string& model_sha, const std::string& preset, const std::string& settings,
                  const Evaluation& e) const;
  // The file an entry lives in (tests).
  std::string path(const std::string& model_sha, const std::string& preset, const std::string& settings,
                   const std::string& kind) const;

 private:
  std::string dir_;
};

nlohmann::json probe_to_json(const Probe&);
Result<Probe> probe_from_json(const nlohmann::json&);
nlohmann::json eval_to_json(const Evaluation&);
Result<Evaluation> eval_from_json(const nlohmann::json&);

// Writes `data` to `path` through a temporary file in the same directory
// and a rename; creates the directory.
Status write_atomic(const std::string& path, const std::string& data);

}  // namespace tenpak::opt
