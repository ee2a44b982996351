// tenpak optimize: the measuring side of the cost optimizer. The decision
// (constraints, hardware model, smart search, cache) is optimize/
// (tenpak/optimize.h, no libtorch); this file quantizes with quant/ and
// measures with runtime/, and hands those figures to the search as its
// probe and evaluate callbacks. docs/OPTIMIZE.md.
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "ml_commands.h"
#include "tenpak/eval.h"
#include "tenpak/hash.h"
#include "tenpak/llama.h"
#include "tenpak/optimize.h"
#include "tenpak/quant.h"
#include "tenpak/tokenizer.h"
#include "text_file.h"

namespace tenpak::ml {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct OptimizeArgs {
  std::string model, hardware = "this-machine", calib, text, plot, out, cache_dir;
  std::optional<double> max_ppl, max_kld, max_latency, min_compression, price, tokens_per_month;
  int64_t ctx = 256, windows = 16, sample_windows = 4, calib_samples = 32, seq_len = 256, decode_tokens = 32;
  int threads = 2;
  bool all = false, json_out = false, no_cache = false;
};

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fmtd(double v, const char* f = "%.4g") {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// sha256 over the model's files that define its weights and shape (names
// and contents, in name order): the cache key of every measurement.
Result<std::string> model_sha256(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    auto n = e.path().filename().string();
    if (e.is_regular_file() && (n == "config.json" || n.ends_with(".safetensors") || n.ends_with(".index.json") ||
                                n == "tokenizer.bin" || n == "tokenizer.model"))
      files.push_back(e.path());
  }
  if (ec) return Status{Errc::invalid, dir + ": " + ec.message()};
  std::sort(files.begin(), files.end());
  Sha256Hasher h;
  std::vector<char> buf(1 << 20);
  for (auto& f : files) {
    auto n = f.filename().string();
    h.update(n.data(), n.size() + 1);
    std::ifstream in(f, std::ios::binary);
    if (!in) return Status{Errc::io, f.string() + ": cannot open"};
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h.update(buf.data(), static_cast<size_t>(in.gcount()));
    }
  }
  auto d = h.finish();
  return hex(d);
}

std::string text_sha(const std::string& s) { return hex(sha256(s.data(), s.size())).substr(0, 16); }

uint64_t safetensors_bytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") n += e.file_size();
  return n;
}

const char* format_of(quant::Method m) {
  switch (m) {
    case quant::Method::rtn:
    case quant::Method::gptq: return "gptq";
    case quant::Method::awq: return "awq";
    case quant::Method::nf4: return "nf4";
    case quant::Method::fp4: return "fp4";
    case quant::Method::int8: return "int8";
  }
  return "fp16";
}

// A directory removed when the run ends (quantized candidates live there
// between their probe and their evaluation).
struct WorkDir {
  fs::path path;
  ~WorkDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

struct Ctx {
  explicit Ctx(const OptimizeArgs& args) : a(args) {}
  const OptimizeArgs& a;
  rt::Model ref;
  std::vector<int64_t> ids;
  std::string calib_text_file;
  std::string sha, settings;
  opt::MeasurementCache cache{""};
  WorkDir work;
  quant::QuantizeOptions qopt;
  std::vector<opt::CandidateSpec> specs;
  std::vector<double> ref_sample_nll;  // per window, first sample_windows windows
  std::unique_ptr<cli::ProgressBar> bar;
  int steps_done = 0, steps_total = 0;
  void step(const std::string& what) {
    ++steps_done;
    if (bar) bar->update(static_cast<uint64_t>(steps_done), static_cast<uint64_t>(std::max(steps_done, steps_total)));
    std::fprintf(stderr, "%s\n", what.c_str());
  }
};

rt::EvalOptions eval_opts(const OptimizeArgs& a, int64_t chunks) {
  rt::EvalOptions eo;
  eo.ctx = a.ctx;
  eo.chunks = chunks;
  eo.batch = 4;
  return eo;
}

// Per-token decode latency, batch 1, with the runtime's KV cache: a prompt
// of the text's first tokens, then decode_tokens greedy steps, each timed.
void measure_decode(const rt::Model& m, const std::vector<int64_t>& ids, int64_t steps, opt::Probe& p) {
  torch::NoGradGuard ng;
  int64_t prompt = std::min<int64_t>(32, static_cast<int64_t>(ids.size()));
  steps = std::max<int64_t>(1, std::min(steps, m.cfg.max_position - prompt - 1));
  std::vector<int64_t> pr(ids.begin(), ids.begin() + prompt);
  std::vector<double> ms;
  for (int rep = 0; rep < 2; ++rep) {  // the first pass warms up
    ms.clear();
    rt::KVCache cache;
    auto logits = rt::forward_cached(m, torch::tensor(pr, torch::kInt64).view({1, -1}), cache);
    int64_t next = logits[0][-1].argmax().item<int64_t>();
    for (int64_t s = 0; s < steps; ++s) {
      auto t0 = Clock::now();
      auto l = rt::forward_cached(m, torch::full({1, 1}, next, torch::kInt64), cache);
      next = l[0][-1].argmax().item<int64_t>();
      ms.push_back(since(t0) * 1000);
    }
  }
  double sum = 0;
  for (double v : ms) sum += v;
  p.local_ms_p50 = rt::percentile(ms, 0.5);
  p.local_ms_p95 = rt::percentile(ms, 0.95);
  p.local_tokens_per_s = sum > 0 ? 1000.0 * static_cast<double>(ms.size()) / sum : 0;
  p.local_tokens = prompt + steps;  // what the KV cache held at the end
}

// A field of /proc/self/status in bytes ("VmRSS:": the resident set now,
// "VmHWM:": its peak since exec); 0 when unknown.
double proc_status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::atof(line.c_str() + n) * 1024.0;
  return 0;
}

// This machine's speed and memory of one candidate, measured in a fresh
// tenpak-ml process (`tenpak-ml optimize-measure`, below): one process
// measures one candidate, so its peak resident set (the child's VmHWM: the
// model as the runtime loads it, float32 after dequantizing, the transient
// copies of loading, the KV cache, activations, and libtorch itself) is that
// candidate's, which this process's own peak, after nine candidates, is not.
// Not wait4's ru_maxrss: Linux carries the spawning process's peak into the
// child's at exec (measured: every child reported this process's peak).
// A child that fails (cannot load what was written, killed) fails the
// candidate with its last error line; the search goes on with the others.
Status measure_in_child(Ctx& c, const std::string& name, const std::string& dir, opt::Probe& p) {
  std::error_code ec;
  const std::string exe = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) return {Errc::io, "/proc/self/exe: " + ec.message()};
  const fs::path out = c.work.path / ("measure-" + name + ".json"), err = c.work.path / ("measure-" + name + ".err");
  std::string prompt;
  for (size_t i = 0; i < c.ids.size() && i < 32; ++i) prompt += (i ? "," : "") + std::to_string(c.ids[i]);
  std::vector<std::string> args{exe, "optimize-measure", dir, "--prompt", prompt, "--decode-tokens",
                                std::to_string(c.a.decode_tokens), "--threads", std::to_string(c.a.threads)};
  std::vector<char*> argv;
  for (auto& x : args) argv.push_back(x.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), ::environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return {Errc::io, exe + ": cannot start the measuring process: " + std::strerror(rc)};
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0)
    if (errno != EINTR) return {Errc::io, std::string("waitpid: ") + std::strerror(errno)};
  auto slurp = [](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
    std::string e = slurp(err);
    while (!e.empty() && e.back() == '\n') e.pop_back();
    if (auto nl = e.rfind('\n'); nl != std::string::npos) e = e.substr(nl + 1);
    p.ok = false;
    p.error = "measuring " + dir + " in a fresh process failed (" +
              (WIFEXITED(wst) ? "exit " + std::to_string(WEXITSTATUS(wst)) : "signal " + std::to_string(WTERMSIG(wst))) +
              (e.empty() ? "" : ": " + e) + ")";
    return Status::Ok();
  }
  json j = json::parse(slurp(out), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return {Errc::corrupt, out.string() + ": the measuring process wrote no JSON"};
  try {
    p.local_ms_p50 = j.at("ms_p50").get<double>();
    p.local_ms_p95 = j.at("ms_p95").get<double>();
    p.local_tokens_per_s = j.at("tokens_per_s").get<double>();
    p.local_tokens = j.at("tokens").get<int64_t>();
    p.local_baseline_rss_bytes = j.at("baseline_rss_bytes").get<double>();
    p.local_peak_rss_bytes = j.at("peak_rss_bytes").get<double>();
  } catch (const std::exception& e) {
    return {Errc::corrupt, out.string() + ": " + e.what()};
  }
  if (!(p.local_peak_rss_bytes > 0)) return {Errc::corrupt, out.string() + ": no peak resident set (VmHWM) measured"};
  fs::remove(out, ec);
  fs::remove(err, ec);
  return Status::Ok();
}

int64_t param_count(const rt::Model& m) {
  int64_t n = 0;
  for (auto& [k, t] : m.w) n += t.numel();
  return n;
}

// The sample proxies of a dequantized candidate.
Status sample_proxies(Ctx& c, const rt::Model& m, opt::Probe& p) {
  if (c.ref_sample_nll.empty()) {
    auto r = rt::evaluate_quality(c.ref, c.ids, eval_opts(c.a, c.a.sample_windows));
    if (!r.ok()) return r.status();
    c.ref_sample_nll = r->window_nll;
  }
  auto q = rt::evaluate_quality(m, c.ids, eval_opts(c.a, c.a.sample_windows), &c.ref);
  if (!q.ok()) return q.status();
  p.sample_kl = q->window_kl;
  p.sample_nll_delta.clear();
  for (size_t i = 0; i < q->window_nll.size() && i < c.ref_sample_nll.size(); ++i)
    p.sample_nll_delta.push_back(q->window_nll[i] - c.ref_sample_nll[i]);
  return Status::Ok();
}

Result<opt::Probe> probe(Ctx& c, size_t i) {
  const auto& spec = c.specs[i];
  if (auto hit = c.cache.get_probe(c.sha, spec.name, c.settings)) {
    c.step("probe " + spec.name + ": cached");
    return *hit;
  }
  auto t0 = Clock::now();
  opt::Probe p;
  const int64_t params = param_count(c.ref);
  p.fp16_bytes = static_cast<uint64_t>(2 * params);
  p.recon_error = 0;
  if (spec.unquantized) {
    p.ok = true;
    p.disk_bytes = safetensors_bytes(c.a.model);
    p.serving_bytes = 2.0 * static_cast<double>(params);
    p.runtime_bytes = 4.0 * static_cast<double>(params);
    p.linears_total = c.ref.cfg.num_layers * 7;
    p.sample_kl.assign(static_cast<size_t>(c.a.sample_windows), 0.0);
    p.sample_nll_delta.assign(static_cast<size_t>(c.a.sample_windows), 0.0);
    TP_RETURN_IF_ERROR(measure_in_child(c, spec.name, c.a.model, p));
  } else {
    auto preset = quant::find_preset(spec.name);
    if (!preset.ok()) return preset.status();
    const fs::path out = c.work.path / spec.name;
    std::error_code ec;
    fs::remove_all(out, ec);
    if (quant::needs_calibration(*preset) && c.calib_text_file.empty()) {
      p.ok = false;
      p.error = spec.name + " needs calibration text: give --calib FILE";
    } else {
      auto rep = quant::quantize_model_dir(c.a.model, *preset, out.string(), c.calib_text_file, c.qopt);
      if (!rep.ok()) {
        // A preset that cannot quantize this model is one failed candidate,
        // reported with its reason; the search goes on with the others.
        p.ok = false;
        p.error = rep.status().message();
      } else {
        const auto& qm = rep->model;
        p.ok = true;
        p.disk_bytes = rep->output_bytes;
        double stored = 0, others = 0;
        for (auto& [n, t] : qm.stored) stored += static_cast<double>(t.numel() * t.element_size());
        std::set<std::string> replaced(qm.quantized_weights.begin(), qm.quantized_weights.end());
        for (auto& [n, t] : qm.deq.w)
          if (!replaced.count(n)) others += 2.0 * static_cast<double>(t.numel());
        p.serving_bytes = stored + others;
        p.runtime_bytes = 4.0 * static_cast<double>(param_count(qm.deq));
        for (auto& l : qm.linears) p.linears_quantized += l.quantized;
        p.linears_total = static_cast<int64_t>(qm.linears.size());
        if (preset->method == quant::Method::awq) {
          p.recon_error = std::nan("");  // scales folded into the weights: not comparable with the originals
        } else {
          double num = 0, den = 0;
          for (auto& n : qm.quantized_weights) {
            auto w = c.ref.w.at(n), d = qm.deq.w.at(n);
            num += (w - d).pow(2).sum().item<double>();
            den += w.pow(2).sum().item<double>();
          }
          p.recon_error = den > 0 ? std::sqrt(num / den) : 0;
        }
        TP_RETURN_IF_ERROR(sample_proxies(c, qm.deq, p));
        TP_RETURN_IF_ERROR(measure_in_child(c, spec.name, out.string(), p));
      }
    }
  }
  p.seconds = since(t0);
  Status st = c.cache.put_probe(c.sha, spec.name, c.settings, p);
  if (!st.ok()) std::fprintf(stderr, "tenpak: warning: cache: %s\n", st.message().c_str());
  c.step("probe " + spec.name + ": " + (p.ok ? "ok" : "failed: " + p.error) + " (" + fmtd(p.seconds, "%.1f") + " s)");
  return p;
}

Result<opt::Evaluation> evaluate(Ctx& c, size_t i) {
  const auto& spec = c.specs[i];
  if (auto hit = c.cache.get_eval(c.sha, spec.name, c.settings)) {
    c.step("evaluate " + spec.name + ": cached");
    return *hit;
  }
  auto t0 = Clock::now();
  opt::Evaluation e;
  const fs::path out = c.work.path / spec.name;
  if (!fs::exists(out / "config.json")) {
    // Probed in an earlier run (cached): quantize again, deterministically.
    auto preset = quant::find_preset(spec.name);
    if (!preset.ok()) return preset.status();
    std::error_code ec;
    fs::remove_all(out, ec);
    auto rep = quant::quantize_model_dir(c.a.model, *preset, out.string(), c.calib_text_file, c.qopt);
    if (!rep.ok()) {
      e.error = rep.status().message();
      return e;
    }
  }
  auto m = quant::load_model_any(out.string());
  if (!m.ok()) {
    e.error = m.status().message();
    return e;
  }
  auto q = rt::evaluate_quality(*m, c.ids, eval_opts(c.a, c.a.windows), &c.ref);
  if (!q.ok()) return Status{q.status().code(), (c.a.text.empty() ? c.a.calib : c.a.text) + ": " + q.status().message()};
  e.ok = true;
  e.windows = q->windows;
  e.scored_tokens = q->scored_tokens;
  e.ppl = q->perplexity;
  e.ref_ppl = q->ref_perplexity;
  e.ppl_delta_pct = 100 * (q->perplexity / q->ref_perplexity - 1);
  e.kl_mean = q->kl_mean;
  e.kl_p99 = q->kl_p99;
  e.top1 = q->top1_agreement;
  e.seconds = since(t0);
  Status st = c.cache.put_eval(c.sha, spec.name, c.settings, e);
  if (!st.ok()) std::fprintf(stderr, "tenpak: warning: cache: %s\n", st.message().c_str());
  c.step("evaluate " + spec.name + ": KL " + fmtd(e.kl_mean) + ", ppl " + fmtd(e.ppl_delta_pct, "%+.2f") + "% (" +
         fmtd(e.seconds, "%.1f") + " s)");
  return e;
}

Status copy_dir_atomic(const std::string& from, const std::string& to) {
  fs::path tmp = fs::path(to).parent_path() / (fs::path(to).filename().string() + ".tenpak-tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::copy(from, tmp, fs::copy_options::recursive, ec);
  if (!ec) fs::rename(tmp, to, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove_all(tmp, ec2);
    return {Errc::io, to + ": " + ec.message()};
  }
  return Status::Ok();
}

// One column per constraint given (and memory): "pass", "FAIL", or "?"
// (not decided: the smart search did not need that figure); the reasons of
// every failure in the last column.
void print_table(const opt::Decision& d, const opt::Constraints& cons, const OptimizeArgs& a) {
  const auto& hw = d.hardware;
  std::printf("hardware  %s: %s\n", hw.name.c_str(),
              hw.measured ? "this machine: latency, throughput and peak memory measured (peak RSS of a fresh process per candidate)"
                          : "ESTIMATED latency, throughput, memory and cost (bandwidth model, docs/OPTIMIZE.md)");
  if (hw.measured) std::printf("note      %s\n", opt::kThisMachineNote);
  std::printf("price     %.4g USD/h (%s%s)\n", hw.price_per_hour,
              a.price ? "--price-per-hour" : hw.price_source.c_str(), a.price || hw.date.empty() ? "" : (", " + hw.date).c_str());
  std::vector<std::pair<std::string, std::string>> cols;  // check name, header
  if (cons.max_ppl_delta_pct) cols.push_back({"max-ppl-delta", "ppl<=" + fmtd(*cons.max_ppl_delta_pct)});
  if (cons.max_kld) cols.push_back({"max-kld", "KL<=" + fmtd(*cons.max_kld)});
  if (cons.max_latency_ms) cols.push_back({"max-latency-ms", "ms<=" + fmtd(*cons.max_latency_ms)});
  if (cons.min_compression) cols.push_back({"min-compression", "x>=" + fmtd(*cons.min_compression)});
  cols.push_back({"memory", "fits"});
  std::printf("\n%-16s %10s %6s %9s %8s %8s %8s %9s %10s %10s", "candidate", "disk", "compr", "KL", "ppl d%", "p50 ms", "p95 ms",
              "tok/s", "peak mem", "USD/Mtok");
  for (auto& [k, h] : cols) std::printf(" %9s", h.c_str());
  std::printf("  %s\n", "result");
  for (size_t i = 0; i < d.table.size(); ++i) {
    const auto& r = d.table[i];
    std::string res;
    if (static_cast<int>(i) == d.winner) res = "WINNER";
    else if (r.feasible) res = "meets all";
    for (auto& k : r.checks)
      if (!k.pass) res += (res.empty() ? "" : "; ") + k.why;
    if (res.empty() && !r.skipped.empty()) res = r.skipped;
    std::string pass;
    for (auto& [name, h] : cols) {
      std::string v = "?";
      if (r.probe && r.probe->ok) {
        if (name == "memory") v = r.fig.fits ? "pass" : "FAIL";
        for (auto& k : r.checks)
          if (k.constraint == name) v = k.pass ? "pass" : "FAIL";
      } else if (r.probe) {
        v = "-";
      }
      pass += " " + std::string(std::max<size_t>(9, h.size()) - v.size(), ' ') + v;
    }
    if (!r.probe || !r.probe->ok) {
      std::printf("%-16s %10s %6s %9s %8s %8s %8s %9s %10s %10s%s  %s\n", r.spec.name.c_str(), "-", "-", "-", "-", "-", "-", "-",
                  "-", "-", pass.c_str(), res.c_str());
      continue;
    }
    const auto& p = *r.probe;
    std::string kl = "-", pd = "-";
    if (r.spec.unquantized) kl = "0", pd = "0";
    else if (r.eval && r.eval->ok) kl = fmtd(r.eval->kl_mean, "%.5f"), pd = fmtd(r.eval->ppl_delta_pct, "%+.2f");
    std::string tag = r.fig.estimated ? "~" : "", mtag = r.fig.memory_measured ? "" : "~";
    std::printf("%-16s %10s %5.2fx %9s %8s %8s %8s %9s %10s %10s%s  %s\n", r.spec.name.c_str(),
                cli::human_bytes(p.disk_bytes).c_str(), p.disk_bytes ? double(p.fp16_bytes) / p.disk_bytes : 0.0, kl.c_str(),
                pd.c_str(), (tag + fmtd(r.fig.latency_ms_p50, "%.3g")).c_str(), (tag + fmtd(r.fig.latency_ms_p95, "%.3g")).c_str(),
                (tag + fmtd(r.fig.tokens_per_s, "%.4g")).c_str(), (mtag + cli::human_bytes(r.fig.peak_memory_bytes)).c_str(),
                (tag + fmtd(r.fig.cost_per_mtok, "%.4g")).c_str(), pass.c_str(), res.c_str());
  }
  if (!hw.measured) std::printf("(~: estimated for %s by the bandwidth model, not measured)\n", hw.name.c_str());
  else std::printf("(peak mem: measured peak RSS of a fresh process that loads the candidate and decodes; ~: estimated)\n");
  std::printf("\n");
  if (d.winner >= 0) {
    const auto& w = d.table[static_cast<size_t>(d.winner)];
    std::printf("winner    %s: %.4g USD per million tokens%s\n", w.spec.name.c_str(), w.fig.cost_per_mtok,
                w.fig.estimated ? " (estimated)" : " (measured; on this machine the differences are noise, see note)");
    for (auto& s : d.savings) {
      if (!s.available) {
        std::printf("vs %-14s not measured\n", s.against.c_str());
        continue;
      }
      std::string meets = !s.baseline_meets_constraints ? "not evaluated" : *s.baseline_meets_constraints ? "meets the constraints" : "misses a constraint";
      std::printf("vs %-14s %.4g USD/Mtok (%s): saves %.1f%%%s\n", s.against.c_str(), s.baseline_cost_per_mtok,
                  meets.c_str(), 100 * s.saving,
                  a.tokens_per_month ? (", " + fmtd((s.baseline_cost_per_mtok - s.winner_cost_per_mtok) * *a.tokens_per_month / 1e6, "%.2f") + " USD/month").c_str() : "");
    }
  } else {
    std::printf("nothing meets the constraints. Closest:\n");
    for (int i : d.closest) {
      const auto& r = d.table[static_cast<size_t>(i)];
      std::string m;
      for (auto& k : r.checks)
        if (!k.pass) m += (m.empty() ? "" : "; ") + k.constraint + ": " + k.why;
      std::printf("  %-16s misses %s\n", r.spec.name.c_str(), m.c_str());
    }
  }
  std::printf("search    %s: %d probes, %d full evaluations\n", d.exhaustive ? "all candidates (--all)" : "smart",
              d.probes, d.evaluations);
}

int run_optimize(const OptimizeArgs& a) {
  auto t_start = Clock::now();
  opt::Constraints cons;
  cons.max_ppl_delta_pct = a.max_ppl;
  cons.max_kld = a.max_kld;
  cons.max_latency_ms = a.max_latency;
  cons.min_compression = a.min_compression;
  if (Status st = opt::validate(cons); !st.ok()) return cli::fail(st);
  for (auto& [flag, v] : {std::pair{"--price-per-hour", a.price}, std::pair{"--tokens-per-month", a.tokens_per_month}})
    if (v && !(std::isfinite(*v) && *v >= 0 && (*v > 0 || std::string(flag) == "--tokens-per-month")))
      return cli::fail({Errc::invalid, std::string(flag) + " " + fmtd(*v) + ": must be a finite number above 0"});
  if (a.windows < 1 || a.sample_windows < 1 || a.sample_windows > a.windows)
    return cli::fail({Errc::invalid, "--sample-windows must be in [1, --windows]"});
  if (a.text.empty() && a.calib.empty())
    return cli::fail({Errc::invalid,
                      "--text FILE (or --calib FILE, whose part after the calibration windows is then the evaluation "
                      "text) is needed: the text every candidate is evaluated on (perplexity, KL)"});
  auto hwf = opt::builtin_hardware(opt::this_machine_memory_gb());
  if (!hwf.ok()) return cli::fail(hwf.status());
  auto hw = opt::find_hardware(*hwf, a.hardware);
  if (!hw.ok()) return cli::fail(hw.status());
  if (a.price) {
    hw->price_per_hour = *a.price;
    hw->price_source = "--price-per-hour";
  }
  if (!a.out.empty() && fs::exists(a.out))
    return cli::fail({Errc::exists, a.out + ": exists; tenpak optimize -o writes a new directory"});
  if (a.threads > 0) {
    torch::set_num_threads(a.threads);
    torch::set_num_interop_threads(1);
  }

  auto ref = quant::load_model_any(a.model);
  if (!ref.ok()) return cli::fail(ref.status());
  auto tok = rt::Tokenizer::load(a.model);
  if (!tok.ok()) return cli::fail(tok.status());
  Ctx c(a);
  c.ref = std::move(*ref);
  std::string calib_sha = "none", calib_text;
  if (!a.calib.empty()) {
    auto ct = read_text_file(a.calib);
    if (!ct.ok()) return cli::fail(ct.status());
    calib_text = std::move(*ct);
    calib_sha = text_sha(calib_text);
    c.calib_text_file = a.calib;
  }
  const size_t need_tokens = static_cast<size_t>(a.windows * std::min<int64_t>(a.ctx, c.ref.cfg.max_position) + 1);
  std::string text_key;
  if (!a.text.empty()) {
    auto text = read_text_file(a.text);
    if (!text.ok()) return cli::fail(text.status());
    // Encode only the head the evaluation needs (about 8 bytes per token is
    // ample for these tokenizers); the whole text when that is too short.
    c.ids = tok->encode(text->substr(0, need_tokens * 8), true);
    if (c.ids.size() < need_tokens) c.ids = tok->encode(*text, true);
    if (c.ids.size() < need_tokens)
      return cli::fail({Errc::invalid, a.text + ": " + std::to_string(c.ids.size()) + " tokens, the evaluation needs " +
                                           std::to_string(need_tokens) + " (--windows x --ctx); give a longer text or fewer windows"});
    text_key = text_sha(*text);
  } else {
    // No --text: evaluate on the calibration text after what calibration
    // reads (quant::calibration_windows takes the first calib_samples x
    // seq_len tokens), one more seq_len of tokens skipped so that a token
    // boundary that differs between encoding a prefix and the whole text
    // cannot make the two overlap: no candidate is scored on text it saw.
    const size_t skip = static_cast<size_t>((a.calib_samples + 1) * a.seq_len);
    size_t cut = std::min(calib_text.size(), (skip + need_tokens) * 8);
    if (auto nl = calib_text.rfind('\n', cut); cut < calib_text.size() && nl != std::string::npos && nl > cut / 2) cut = nl + 1;
    auto all = tok->encode(calib_text.substr(0, cut), false);
    if (all.size() < skip + need_tokens && cut < calib_text.size()) all = tok->encode(calib_text, false);
    if (all.size() < skip + need_tokens)
      return cli::fail({Errc::invalid, a.calib + ": " + std::to_string(all.size()) + " tokens; without --text the evaluation uses the " +
                                           "tokens after the first " + std::to_string(skip) + " (calibration), and needs " +
                                           std::to_string(need_tokens) + " more; give --text FILE"});
    c.ids.assign(all.begin() + static_cast<std::ptrdiff_t>(skip), all.begin() + static_cast<std::ptrdiff_t>(skip + need_tokens));
    text_key = "calib-tail-" + calib_sha + "-" + std::to_string(skip);
  }
  auto sha = model_sha256(a.model);
  if (!sha.ok()) return cli::fail(sha.status());
  c.sha = *sha;
  c.qopt.calib_samples = a.calib_samples;
  c.qopt.seq_len = a.seq_len;
  c.settings = "v2 calib=" + calib_sha + " samples=" + std::to_string(a.calib_samples) + " seq=" + std::to_string(a.seq_len) +
               " text=" + text_key + " ctx=" + std::to_string(a.ctx) + " windows=" + std::to_string(a.windows) +
               " sample=" + std::to_string(a.sample_windows) + " decode=" + std::to_string(a.decode_tokens) +
               " threads=" + std::to_string(a.threads);
  c.cache = opt::MeasurementCache(a.no_cache ? "" : a.cache_dir.empty() ? opt::MeasurementCache::default_dir() : a.cache_dir);
  c.work.path = fs::temp_directory_path() / ("tenpak-optimize-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(c.work.path, ec);
  fs::create_directories(c.work.path, ec);
  if (ec) return cli::fail({Errc::io, c.work.path.string() + ": " + ec.message()});

  // Candidates: the unquantized model and the nine presets. The cost bound
  // before quantizing counts the codes alone (bits per weight without
  // scales) and every other tensor at 2 bytes.
  int64_t linear_params = 0, params = param_count(c.ref);
  for (int l = 0; l < c.ref.cfg.num_layers; ++l)
    for (auto& n : rt::linear_names(c.ref.cfg, l)) linear_params += c.ref.w.at(n).numel();
  c.specs.push_back({"unquantized", "fp16", true, 2.0 * static_cast<double>(params)});
  for (auto& p : quant::presets())
    c.specs.push_back({p.name, format_of(p.method), false,
                       2.0 * static_cast<double>(params - linear_params) + p.bits / 8.0 * static_cast<double>(linear_params)});
  opt::ModelShape shape;
  shape.params = params;
  shape.layers = c.ref.cfg.num_layers;
  shape.kv_heads = c.ref.cfg.num_kv_heads;
  shape.head_dim = c.ref.cfg.head_dim;
  opt::CostModel model = hwf->model;

  c.steps_total = static_cast<int>(2 * c.specs.size());
  c.bar = std::make_unique<cli::ProgressBar>("optimize");
  opt::SearchCallbacks cb;
  // A preset that throws on some tensor (libtorch raises c10::Error, e.g. a
  // factorization that fails) is one failed candidate, reported with the
  // first line of the error; the search goes on with the others. Not cached:
  // a later run tries it again.
  auto first_line = [](const std::exception& e) {
    std::string m = e.what();
    return m.substr(0, m.find('\n'));
  };
  cb.probe = [&](size_t i) -> Result<opt::Probe> {
    try {
      return probe(c, i);
    } catch (const std::exception& e) {
      opt::Probe p;
      p.error = "preset " + c.specs[i].name + " failed: " + first_line(e);
      c.step("probe " + c.specs[i].name + ": failed: " + p.error);
      return p;
    }
  };
  cb.evaluate = [&](size_t i) -> Result<opt::Evaluation> {
    try {
      return evaluate(c, i);
    } catch (const std::exception& e) {
      opt::Evaluation ev;
      ev.error = "evaluating " + c.specs[i].name + " failed: " + first_line(e);
      c.step("evaluate " + c.specs[i].name + ": " + ev.error);
      return ev;
    }
  };
  auto d = opt::search(c.specs, cons, *hw, model, shape, a.windows, a.all, cb);
  c.bar->finish();
  if (!d.ok()) return cli::fail(d.status());
  double seconds = since(t_start);

  if (!a.plot.empty()) {
    Status st = opt::write_atomic(a.plot, opt::decision_svg(*d, cons, "tenpak optimize " + a.model));
    if (!st.ok()) return cli::fail(st);
  }
  std::string written;
  if (!a.out.empty() && d->winner >= 0) {
    const auto& w = d->table[static_cast<size_t>(d->winner)];
    Status st;
    if (w.spec.unquantized) st = copy_dir_atomic(a.model, a.out);
    else {
      auto preset = quant::find_preset(w.spec.name);
      if (!preset.ok()) return cli::fail(preset.status());
      auto rep = quant::quantize_model_dir(a.model, *preset, a.out, c.calib_text_file, c.qopt);
      st = rep.ok() ? Status::Ok() : rep.status();
    }
    if (!st.ok()) return cli::fail(st);
    written = a.out;
  }
  if (a.json_out) {
    json j = opt::decision_json(*d, cons, model, a.tokens_per_month);
    j["model"] = a.model;
    j["model_sha256"] = c.sha;
    j["text"] = a.text.empty() ? "held-out: " + a.calib + " after its calibration tokens" : a.text;
    j["calib"] = a.calib;
    j["eval"] = {{"ctx", a.ctx}, {"windows", a.windows}, {"sample_windows", a.sample_windows}};
    j["cache_dir"] = c.cache.dir();
    j["seconds"] = seconds;
    j["output"] = written.empty() ? json(nullptr) : json(written);
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    print_table(*d, cons, a);
    std::printf("time      %.1f s\n", seconds);
    if (!written.empty()) std::printf("wrote     %s\n", written.c_str());
  }
  return d->winner >= 0 ? cli::kOk : cli::kTargetNotMet;
}

// The measuring child of measure_in_child: loads one candidate with the
// runtime and times decode_tokens greedy steps after the given prompt;
// prints {ms_p50, ms_p95, tokens_per_s, tokens, baseline_rss_bytes,
// peak_rss_bytes} as JSON.
struct MeasureArgs {
  std::string model, prompt;
  int64_t decode_tokens = 32;
  int threads = 2;
};

int run_measure(const MeasureArgs& a) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the optimizer (kill -9 of it included)
  if (::getppid() == 1) return cli::kError;
  if (a.threads > 0) {
    torch::set_num_threads(a.threads);
    torch::set_num_interop_threads(1);
  }
  std::vector<int64_t> ids;
  std::stringstream ss(a.prompt);
  for (std::string t; std::getline(ss, t, ',');) {
    char* end = nullptr;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (t.empty() || *end || v < 0) return cli::fail({Errc::invalid, "--prompt: not a list of token ids: " + a.prompt});
    ids.push_back(v);
  }
  if (ids.empty()) return cli::fail({Errc::invalid, "--prompt: no token ids"});
  const double baseline = proc_status_bytes("VmRSS:");
  auto m = quant::load_model_any(a.model);
  if (!m.ok()) return cli::fail(m.status());
  for (int64_t id : ids)
    if (id >= m->cfg.vocab_size) return cli::fail({Errc::invalid, "--prompt: token " + std::to_string(id) + " outside the vocabulary"});
  opt::Probe p;
  measure_decode(*m, ids, a.decode_tokens, p);
  json j{{"ms_p50", p.local_ms_p50}, {"ms_p95", p.local_ms_p95}, {"tokens_per_s", p.local_tokens_per_s},
         {"tokens", p.local_tokens}, {"baseline_rss_bytes", baseline},
         {"peak_rss_bytes", proc_status_bytes("VmHWM:")}};  // peak since exec: this candidate's alone
  std::cout << cli::json_text(j, -1) << "\n";
  return std::cout.flush() ? cli::kOk : cli::kError;
}

}  // namespace

void add_optimize_commands(CLI::App& app, int& rc) {
  {
    auto m = std::make_shared<MeasureArgs>();
    auto* s = app.add_subcommand("optimize-measure", "internal: one candidate's speed and memory, in its own process");
    s->group("");  // hidden: tenpak optimize runs it, not people
    s->add_option("MODEL_DIR", m->model)->required();
    s->add_option("--prompt", m->prompt, "comma-separated token ids")->required();
    s->add_option("--decode-tokens", m->decode_tokens)->check(CLI::Range(1, 1 << 20));
    s->add_option("--threads", m->threads)->check(CLI::Range(1, 1024));
    s->callback([m, &rc] { rc = run_measure(*m); });
  }
  auto a = std::make_shared<OptimizeArgs>();
  auto* o = app.add_subcommand("optimize", "pick the cheapest quantization preset that meets your constraints, from measurements");
  o->add_option("MODEL_DIR", a->model, "model directory (config.json, *.safetensors, tokenizer)")->required();
  auto num = [&](const char* name, std::optional<double>& dst, const char* help) {
    o->add_option_function<double>(name, [&dst](const double& v) { dst = v; }, help);
  };
  num("--max-ppl-delta", a->max_ppl, "largest perplexity increase over the unquantized model, percent");
  num("--max-kld", a->max_kld, "largest mean KL divergence from the unquantized model, nats per token");
  num("--max-latency-ms", a->max_latency, "largest p95 time per generated token (batch 1), ms");
  num("--min-compression", a->min_compression, "smallest fp16 size / size on disk");
  o->add_option("--hardware", a->hardware, "where it will run: this-machine (measured) or a GPU profile (estimated)")
      ->capture_default_str();
  num("--price-per-hour", a->price, "USD per hour of the hardware (overrides the profile's)");
  num("--tokens-per-month", a->tokens_per_month, "generated tokens per month: costs and savings per month");
  o->add_option("--calib", a->calib, "calibration text (GPTQ and AWQ presets; without it they are reported as failed)");
  o->add_option("--text", a->text,
                "evaluation text (perplexity and KL against the unquantized model); default: the --calib text after "
                "the tokens calibration reads");
  o->add_flag("--all", a->all, "measure every candidate (no smart search)");
  o->add_option("--plot", a->plot, "write an SVG of quality against cost, constraints drawn, winner marked");
  o->add_flag("--json", a->json_out, "print a JSON report");
  o->add_option("-o,--output", a->out, "write the winner's quantized model to this new directory");
  o->add_option("--cache-dir", a->cache_dir, "measurement cache (default $XDG_CACHE_HOME/tenpak/optimize or ~/.cache/tenpak/optimize)");
  o->add_flag("--no-cache", a->no_cache, "neither read nor write the measurement cache");
  o->add_option("--ctx", a->ctx, "evaluation window length in tokens")->capture_default_str()->check(CLI::Range(8, 1 << 20));
  o->add_option("--windows", a->windows, "evaluation windows of the full evaluation")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  o->add_option("--sample-windows", a->sample_windows, "windows of the cheap KL proxy (the first of --windows)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  o->add_option("--calib-samples", a->calib_samples, "calibration windows")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  o->add_option("--seq-len", a->seq_len, "tokens per calibration window")->capture_default_str()->check(CLI::Range(8, 1 << 20));
  o->add_option("--decode-tokens", a->decode_tokens, "timed decode steps per candidate (this machine)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  o->add_option("--threads", a->threads, "CPU threads")->capture_default_str()->check(CLI::Range(1, 1024));
  o->callback([a, &rc] { rc = run_optimize(*a); });
}

}  // namespace tenpak::ml
