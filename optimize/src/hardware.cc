// Hardware profiles, the cost model and the constraint checks.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "embedded.h"
#include "tenpak/optimize.h"

namespace tenpak::opt {

using json = nlohmann::json;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

Status number(const json& j, const char* key, double lo, double hi, double& out, const std::string& where,
              bool required) {
  if (!j.contains(key)) {
    if (required) return {Errc::corrupt, where + ": needs \"" + key + "\""};
    return Status::Ok();
  }
  if (!j[key].is_number()) return {Errc::corrupt, where + ": \"" + key + "\" must be a number"};
  double v = j[key].get<double>();
  if (!(v >= lo && v <= hi))
    return {Errc::corrupt, where + ": \"" + key + "\" = " + std::to_string(v) + " outside [" + std::to_string(lo) +
                               ", " + std::to_string(hi) + "]"};
  out = v;
  return Status::Ok();
}

std::string str(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

}  // namespace

Status validate(const Constraints& c) {
  auto bad = [](const char* flag, double v, const char* what) {
    return Status{Errc::invalid, std::string(flag) + " " + fmt(v) + ": " + what};
  };
  struct Item {
    const char* flag;
    const std::optional<double>& v;
  } items[] = {{"--max-ppl-delta", c.max_ppl_delta_pct},
               {"--max-kld", c.max_kld},
               {"--max-latency-ms", c.max_latency_ms},
               {"--min-compression", c.min_compression}};
  for (auto& it : items) {
    if (!it.v) continue;
    if (std::isnan(*it.v)) return Status{Errc::invalid, std::string(it.flag) + ": NaN is not a bound"};
    if (std::isinf(*it.v)) return bad(it.flag, *it.v, "must be finite");
    if (*it.v < 0) return bad(it.flag, *it.v, "must not be negative");
  }
  if (c.max_latency_ms && *c.max_latency_ms == 0) return bad("--max-latency-ms", 0, "no model decodes in 0 ms");
  if (c.min_compression && (*c.min_compression < 1.0 / 64 || *c.min_compression > 8))
    return bad("--min-compression", *c.min_compression,
               "must be in [1/64, 8] (8: every weight in 2 bits, more than any preset reaches)");
  bool zero_quality = (c.max_ppl_delta_pct && *c.max_ppl_delta_pct == 0) || (c.max_kld && *c.max_kld == 0);
  if (zero_quality && c.min_compression && *c.min_compression > 1)
    return Status{Errc::invalid,
                  "contradictory constraints: a quality bound of 0 is met only by the unquantized model, "
                  "which --min-compression " + fmt(*c.min_compression) + " (> 1) rules out"};
  return Status::Ok();
}

double this_machine_memory_gb() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemTotal:") return kb * 1024.0 / kGiB;
  return 0;
}

Result<HardwareFile> parse_hardware(const std::string& text, const std::string& what, double local_mem_gb) {
  json h = json::parse(text, nullptr, false);
  if (h.is_discarded() || !h.is_object()) return Status{Errc::corrupt, what + ": not a JSON object"};
  HardwareFile f;
  f.source = what;
  if (!h.contains("optimize") || !h["optimize"].is_object())
    return Status{Errc::corrupt, what + ": needs an object \"optimize\" (this machine's price, the cost model)"};
  const json& o = h["optimize"];
  std::string where = what + ": optimize";
  if (!o.contains("this_machine") || !o["this_machine"].is_object())
    return Status{Errc::corrupt, where + ": needs an object \"this_machine\""};
  HardwareProfile local;
  local.name = "this-machine";
  local.measured = true;
  local.memory_gb = local_mem_gb;
  TP_RETURN_IF_ERROR(number(o["this_machine"], "price_per_hour", 1e-6, 1e4, local.price_per_hour,
                            where + ".this_machine", true));
  local.price_source = str(o["this_machine"], "price_source");
  local.date = str(o["this_machine"], "date");
  local.spec_source = "measured: the runtime runs each candidate here; memory from /proc/meminfo";
  f.profiles.push_back(local);
  TP_RETURN_IF_ERROR(number(o, "batch", 1, 1e4, f.model.batch, where, false));
  TP_RETURN_IF_ERROR(number(o, "context", 1, 1e7, f.model.context, where, false));
  TP_RETURN_IF_ERROR(number(o, "kv_bytes_per_value", 0.5, 8, f.model.kv_bytes_per_value, where, false));
  if (!o.contains("efficiency") || !o["efficiency"].is_object())
    return Status{Errc::corrupt, where + ": needs an object \"efficiency\" (format -> fraction of bandwidth)"};
  for (auto& [k, v] : o["efficiency"].items()) {
    double e = 0;
    TP_RETURN_IF_ERROR(number(o["efficiency"], k.c_str(), 1e-3, 1, e, where + ".efficiency", true));
    f.model.efficiency[k] = e;
  }
  for (const char* need : {"fp16", "gptq", "awq", "nf4", "fp4", "int8"})
    if (!f.model.efficiency.count(need))
      return Status{Errc::corrupt, where + ".efficiency: needs \"" + std::string(need) + "\""};
  f.model.efficiency_source = str(o, "efficiency_source");
  if (!h.contains("gpus") || !h["gpus"].is_array() || h["gpus"].empty())
    return Status{Errc::corrupt, what + ": needs a non-empty array \"gpus\""};
  for (size_t i = 0; i < h["gpus"].size(); ++i) {
    const json& g = h["gpus"][i];
    std::string w = what + ": gpus[" + std::to_string(i) + "]";
    if (!g.is_object() || str(g, "name").empty()) return Status{Errc::corrupt, w + ": needs a \"name\""};
    HardwareProfile p;
    p.name = str(g, "name");
    TP_RETURN_IF_ERROR(number(g, "memory_gb", 1, 1e4, p.memory_gb, w, true));
    TP_RETURN_IF_ERROR(number(g, "bandwidth_gbs", 1, 1e5, p.bandwidth_gbs, w, true));
    TP_RETURN_IF_ERROR(number(g, "price_per_hour", 1e-6, 1e4, p.price_per_hour, w, true));
    p.price_source = str(g, "price_source");
    p.spec_source = str(g, "spec_source");
    p.date = str(g, "date");
    f.profiles.push_back(p);
  }
  return f;
}

Result<HardwareFile> builtin_hardware(double local_mem_gb) {
  return parse_hardware(embedded::hardware_json(), "built-in hardware profiles (router/data/hardware.json)",
                        local_mem_gb);
}

Result<HardwareProfile> find_hardware(const HardwareFile& f, const std::string& name) {
  std::string names;
  for (auto& p : f.profiles) {
    if (lower(p.name) == lower(name)) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return Status{Errc::invalid, "unknown hardware '" + name + "'; known: " + names};
}

Figures figures(const Probe& p, const CandidateSpec& c, const HardwareProfile& hw, const CostModel& m,
                const ModelShape& shape) {
  Figures f;
  if (!p.ok) return f;
  if (hw.measured) {
    // This machine: the runtime decodes one sequence of float32 weights (it
    // dequantizes every checkpoint) with a float32 KV cache. Memory is the
    // measured peak RSS of the process that did it; the estimate only stands
    // in for a probe that carries no measurement (injected ones).
    f.latency_ms_p50 = p.local_ms_p50;
    f.latency_ms_p95 = p.local_ms_p95;
    f.tokens_per_s = p.local_tokens_per_s;
    f.memory_measured = p.local_peak_rss_bytes > 0;
    f.peak_memory_bytes = f.memory_measured ? p.local_peak_rss_bytes
                                            : p.runtime_bytes + m.context * shape.kv_values_per_token() * 4.0;
  } else {
    f.estimated = true;
    auto it = m.efficiency.find(c.format);
    double eff = it == m.efficiency.end() ? 1.0 : it->second;
    double bw = hw.bandwidth_gbs * 1e9 * eff;
    double kv_seq = m.context * shape.kv_values_per_token() * m.kv_bytes_per_value;
    double step1 = (p.serving_bytes + kv_seq) / bw;
    double stepb = (p.serving_bytes + m.batch * kv_seq) / bw;
    f.latency_ms_p50 = f.latency_ms_p95 = step1 * 1000;
    f.tokens_per_s = m.batch / stepb;
    f.peak_memory_bytes = p.serving_bytes + m.batch * kv_seq;
  }
  f.fits = hw.memory_gb <= 0 || f.peak_memory_bytes <= hw.memory_gb * kGiB;
  f.cost_per_mtok = f.tokens_per_s > 0 ? hw.price_per_hour / (f.tokens_per_s * 3600) * 1e6
                                       : std::numeric_limits<double>::infinity();
  return f;
}

double cost_lower_bound(const CandidateSpec& c, const HardwareProfile& hw, const CostModel& m, const ModelShape& shape) {
  if (hw.measured) return 0;
  Probe p;
  p.ok = true;
  p.serving_bytes = c.serving_bytes_lower_bound;
  return figures(p, c, hw, m, shape).cost_per_mtok;
}

void check_candidate(CandidateResult& r, const Constraints& c, const HardwareProfile& hw) {
  r.checks.clear();
  r.feasible = false;
  if (!r.probe) return;
  const Probe& p = *r.probe;
  if (!p.ok) {
    r.checks.push_back({"quantize", false, 0, 0, "failed: " + p.error, std::numeric_limits<double>::infinity()});
    return;
  }
  auto max_check = [&](const char* name, double v, double lim, const std::string& what, const std::string& unit) {
    Check k{name, v <= lim, v, lim, "", 0};
    k.why = what + " " + fmt(v) + unit + (k.pass ? " <= " : " > ") + fmt(lim) + unit;
    if (!k.pass) k.miss = lim > 0 ? v / lim - 1 : std::numeric_limits<double>::infinity();
    r.checks.push_back(k);
  };
  bool decided_all = true;
  if (!r.fig.fits) {
    Check k{"memory", false, r.fig.peak_memory_bytes, hw.memory_gb * kGiB, "", 0};
    k.why = std::string(r.fig.memory_measured ? "measured peak RSS " : "needs ") + fmt(r.fig.peak_memory_bytes / kGiB) +
            " GiB" + (r.fig.memory_measured ? "" : " (weights + KV cache, estimated)") + ", " + hw.name + " has " +
            fmt(hw.memory_gb) + " GiB";
    k.miss = r.fig.peak_memory_bytes / (hw.memory_gb * kGiB) - 1;
    r.checks.push_back(k);
  }
  if (c.min_compression) {
    double v = p.disk_bytes ? static_cast<double>(p.fp16_bytes) / p.disk_bytes : 0;
    Check k{"min-compression", v >= *c.min_compression, v, *c.min_compression, "", 0};
    k.why = "compression " + fmt(v) + "x" + (k.pass ? " >= " : " < ") + fmt(*c.min_compression) + "x fp16";
    if (!k.pass) k.miss = v > 0 ? *c.min_compression / v - 1 : std::numeric_limits<double>::infinity();
    r.checks.push_back(k);
  }
  if (c.max_latency_ms)
    max_check("max-latency-ms", r.fig.latency_ms_p95, *c.max_latency_ms,
              std::string(r.fig.estimated ? "estimated" : "measured") + " p95 latency", " ms");
  if (c.max_ppl_delta_pct) {
    if (r.spec.unquantized) max_check("max-ppl-delta", 0, *c.max_ppl_delta_pct, "perplexity increase", "%");
    else if (r.eval && r.eval->ok) max_check("max-ppl-delta", r.eval->ppl_delta_pct, *c.max_ppl_delta_pct, "perplexity increase", "%");
    else decided_all = false;
  }
  if (c.max_kld) {
    if (r.spec.unquantized) max_check("max-kld", 0, *c.max_kld, "KL", "");
    else if (r.eval && r.eval->ok) max_check("max-kld", r.eval->kl_mean, *c.max_kld, "KL", "");
    else decided_all = false;
  }
  if (r.eval && !r.eval->ok && !r.spec.unquantized) {
    r.checks.push_back({"evaluate", false, 0, 0, "failed: " + r.eval->error, std::numeric_limits<double>::infinity()});
    decided_all = false;
  }
  bool all_pass = std::all_of(r.checks.begin(), r.checks.end(), [](const Check& k) { return k.pass; });
  r.feasible = all_pass && decided_all;
}

}  // namespace tenpak::opt
