// The smart and exhaustive searches, the decision, and its JSON and SVG.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "tenpak/optimize.h"

namespace tenpak::opt {

using json = nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

void log(const SearchCallbacks& cb, const std::string& s) {
  if (cb.log) cb.log(s);
}

std::string peak_memory_what(const Figures& f, const Probe& p) {
  if (f.memory_measured)
    return "measured: peak RSS of a fresh tenpak-ml process that loaded this candidate with TenPak's runtime "
           "(float32) and decoded " + std::to_string(p.local_tokens) + " tokens (baseline before loading: " +
           fmt(p.local_baseline_rss_bytes / 1048576.0) + " MiB, included)";
  if (f.estimated) return "estimated: serving bytes + the batch's KV cache (docs/OPTIMIZE.md)";
  return "estimated: float32 weights + float32 KV cache (no measurement in this probe)";
}

}  // namespace

bool ranks_before(const CandidateResult& a, const CandidateResult& b) {
  if (a.fig.cost_per_mtok != b.fig.cost_per_mtok) return a.fig.cost_per_mtok < b.fig.cost_per_mtok;
  uint64_t ab = a.probe ? a.probe->disk_bytes : UINT64_MAX, bb = b.probe ? b.probe->disk_bytes : UINT64_MAX;
  return ab < bb;
}

namespace {

struct ProxyMiss {
  std::string constraint, why;
  double bound = 0, limit = 0;
};

std::optional<ProxyMiss> proxy_miss(const Probe& p, const Constraints& c, int64_t n) {
  const auto k = static_cast<int64_t>(p.sample_kl.size());
  if (k == 0 || n <= 0 || k > n) return std::nullopt;
  // A relative margin for float rounding: the sample's windows are scored in
  // a separate forward from the full evaluation's.
  constexpr double kRound = 1e-6;
  if (c.max_kld) {
    double sum = 0;
    for (double v : p.sample_kl) sum += std::max(0.0, v);
    double bound = sum / static_cast<double>(n);
    if (bound * (1 - kRound) > *c.max_kld)
      return ProxyMiss{"max-kld",
                       "KL over the first " + std::to_string(k) + " of " + std::to_string(n) +
                           " windows alone puts the mean at >= " + fmt(bound) + " > " + fmt(*c.max_kld),
                       bound, *c.max_kld};
  }
  // No perplexity proxy: per-window NLL differences can be negative, so a
  // sample bounds nothing, and a heuristic bound was measured to drop the
  // --all winner (bench/optimize_bench.sh run 1: gptq-4bit-32g under
  // --max-ppl-delta 0.5 and 1). A candidate is dropped only on what is proven.
  return std::nullopt;
}

}  // namespace

std::optional<std::string> proxy_rejects(const Probe& p, const Constraints& c, int64_t n) {
  if (auto m = proxy_miss(p, c, n)) return m->why;
  return std::nullopt;
}

void decide(Decision& d) {
  d.winner = -1;
  d.closest.clear();
  d.savings.clear();
  for (size_t i = 0; i < d.table.size(); ++i)
    if (d.table[i].feasible && (d.winner < 0 || ranks_before(d.table[i], d.table[static_cast<size_t>(d.winner)])))
      d.winner = static_cast<int>(i);
  if (d.winner < 0) {
    std::vector<std::pair<double, int>> miss;
    for (size_t i = 0; i < d.table.size(); ++i) {
      const auto& r = d.table[i];
      if (r.checks.empty()) continue;
      double worst = 0;
      for (auto& k : r.checks)
        if (!k.pass) worst = std::max(worst, k.miss);
      if (std::isfinite(worst)) miss.push_back({worst, static_cast<int>(i)});
    }
    std::stable_sort(miss.begin(), miss.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < miss.size() && i < 3; ++i) d.closest.push_back(miss[i].second);
    return;
  }
  const auto& w = d.table[static_cast<size_t>(d.winner)];
  for (const char* base : {"unquantized", "gptq-4bit-128g"}) {
    Savings s;
    s.against = base;
    for (auto& r : d.table) {
      if (r.spec.name != base || !r.probe || !r.probe->ok) continue;
      s.available = true;
      s.baseline_cost_per_mtok = r.fig.cost_per_mtok;
      s.winner_cost_per_mtok = w.fig.cost_per_mtok;
      s.saving = s.baseline_cost_per_mtok > 0 ? 1 - s.winner_cost_per_mtok / s.baseline_cost_per_mtok : 0;
      s.baseline_bytes = static_cast<double>(r.probe->disk_bytes);
      s.winner_bytes = static_cast<double>(w.probe->disk_bytes);
      bool failed = std::any_of(r.checks.begin(), r.checks.end(), [](const Check& k) { return !k.pass; });
      if (r.feasible) s.baseline_meets_constraints = true;
      else if (failed) s.baseline_meets_constraints = false;
    }
    d.savings.push_back(s);
  }
}

Result<Decision> search(const std::vector<CandidateSpec>& cands, const Constraints& c, const HardwareProfile& hw,
                        const CostModel& m, const ModelShape& shape, int64_t eval_windows, bool exhaustive,
                        const SearchCallbacks& cb) {
  TP_RETURN_IF_ERROR(validate(c));
  Decision d;
  d.exhaustive = exhaustive;
  d.hardware = hw;
  const size_t n = cands.size();
  for (auto& s : cands) d.table.push_back(CandidateResult{s, {}, {}, {}, {}, false, {}});
  std::vector<double> bound(n);
  for (size_t i = 0; i < n; ++i) bound[i] = cost_lower_bound(cands[i], hw, m, shape);
  std::vector<bool> probed(n, false), decided(n, false);

  auto do_probe = [&](size_t i) -> Status {
    auto p = cb.probe(i);
    if (!p.ok()) return p.status();
    ++d.probes;
    auto& r = d.table[i];
    r.probe = *p;
    r.fig = figures(*p, r.spec, hw, m, shape);
    check_candidate(r, c, hw);
    probed[i] = true;
    if (!p->ok) log(cb, r.spec.name + ": " + p->error);
    return Status::Ok();
  };
  auto do_eval = [&](size_t i) -> Status {
    auto& r = d.table[i];
    if (!r.spec.unquantized) {
      auto e = cb.evaluate(i);
      if (!e.ok()) return e.status();
      ++d.evaluations;
      r.eval = *e;
      if (!e->ok) log(cb, r.spec.name + ": evaluation failed: " + e->error);
    }
    check_candidate(r, c, hw);
    decided[i] = true;
    return Status::Ok();
  };
  auto failed_known = [&](size_t i) {
    return std::any_of(d.table[i].checks.begin(), d.table[i].checks.end(), [](const Check& k) { return !k.pass; });
  };

  if (exhaustive) {
    for (size_t i = 0; i < n; ++i) {
      TP_RETURN_IF_ERROR(do_probe(i));
      if (d.table[i].probe->ok) TP_RETURN_IF_ERROR(do_eval(i));
    }
    decide(d);
    return d;
  }

  for (;;) {
    // The cheapest probed candidate that might still win.
    int best = -1;
    for (size_t i = 0; i < n; ++i) {
      if (!probed[i] || decided[i]) continue;
      if (best < 0 || ranks_before(d.table[i], d.table[static_cast<size_t>(best)])) best = static_cast<int>(i);
    }
    int next = -1;
    for (size_t i = 0; i < n; ++i)
      if (!probed[i] && (next < 0 || bound[i] < bound[static_cast<size_t>(next)])) next = static_cast<int>(i);
    double floor = next < 0 ? kInf : bound[static_cast<size_t>(next)];
    if (best >= 0 && d.table[static_cast<size_t>(best)].fig.cost_per_mtok < floor) {
      auto b = static_cast<size_t>(best);
      TP_RETURN_IF_ERROR(do_eval(b));
      if (d.table[b].feasible) break;
      continue;
    }
    if (next < 0) break;
    auto u = static_cast<size_t>(next);
    TP_RETURN_IF_ERROR(do_probe(u));
    auto& r = d.table[u];
    if (!r.probe->ok || failed_known(u)) {
      decided[u] = true;
      if (r.probe->ok) r.skipped = "not evaluated: fails a constraint known without evaluation";
      continue;
    }
    if (!r.spec.unquantized)
      if (auto pm = proxy_miss(*r.probe, c, eval_windows)) {
        decided[u] = true;
        r.skipped = "not evaluated: " + pm->why;
        Check k{pm->constraint, false, pm->bound, pm->limit, "proxy: " + pm->why,
                pm->limit > 0 ? pm->bound / pm->limit - 1 : kInf};
        r.checks.push_back(k);
        log(cb, r.spec.name + ": " + r.skipped);
      }
  }
  // The savings table needs the two usual manual choices' costs: probed
  // (no evaluation) when the search did not need them.
  for (size_t i = 0; i < n; ++i)
    if (!probed[i] && (cands[i].unquantized || cands[i].name == "gptq-4bit-128g")) TP_RETURN_IF_ERROR(do_probe(i));
  double winner_cost = kInf;
  for (size_t i = 0; i < n; ++i)
    if (d.table[i].feasible) winner_cost = std::min(winner_cost, d.table[i].fig.cost_per_mtok);
  for (size_t i = 0; i < n; ++i) {
    auto& r = d.table[i];
    if (!probed[i]) r.skipped = "not measured: cost >= " + fmt(bound[i]) + " USD/Mtok (bound), the winner's is " + fmt(winner_cost);
    else if (r.probe->ok && !decided[i] && r.skipped.empty() && !r.spec.unquantized)
      r.skipped = "not evaluated: costs " + fmt(r.fig.cost_per_mtok) + " USD/Mtok, the winner " + fmt(winner_cost);
  }
  decide(d);
  return d;
}

// ------------------------------------------------------------------ output

json decision_json(const Decision& d, const Constraints& c, const CostModel& m, std::optional<double> tokens_per_month) {
  json j;
  auto opt_num = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  j["constraints"] = {{"max_ppl_delta_pct", opt_num(c.max_ppl_delta_pct)},
                      {"max_kld", opt_num(c.max_kld)},
                      {"max_latency_ms", opt_num(c.max_latency_ms)},
                      {"min_compression", opt_num(c.min_compression)}};
  const auto& hw = d.hardware;
  j["hardware"] = {{"name", hw.name},          {"measured", hw.measured},         {"memory_gb", hw.memory_gb},
                   {"bandwidth_gbs", hw.bandwidth_gbs}, {"price_per_hour", hw.price_per_hour},
                   {"price_source", hw.price_source},   {"spec_source", hw.spec_source}, {"date", hw.date}};
  j["cost_model"] = hw.measured ? json{{"speed", "measured on this machine, batch 1"},
                                       {"memory", "measured: peak RSS of a fresh process that loads and decodes each candidate"},
                                       {"note", kThisMachineNote}}
                                : json{{"speed", "estimated: decode bound by weight + KV bytes / (bandwidth x efficiency)"},
                                       {"batch", m.batch},
                                       {"context", m.context},
                                       {"kv_bytes_per_value", m.kv_bytes_per_value},
                                       {"efficiency", m.efficiency},
                                       {"efficiency_source", m.efficiency_source}};
  json rows = json::array();
  for (size_t i = 0; i < d.table.size(); ++i) {
    const auto& r = d.table[i];
    json x;
    x["name"] = r.spec.name;
    x["format"] = r.spec.format;
    x["winner"] = static_cast<int>(i) == d.winner;
    x["feasible"] = r.feasible;
    if (!r.skipped.empty()) x["skipped"] = r.skipped;
    if (r.probe) {
      const auto& p = *r.probe;
      if (!p.ok) x["error"] = p.error;
      else {
        x["disk_bytes"] = p.disk_bytes;
        x["fp16_bytes"] = p.fp16_bytes;
        x["compression"] = p.disk_bytes ? static_cast<double>(p.fp16_bytes) / p.disk_bytes : 0.0;
        x["serving_bytes"] = p.serving_bytes;
        x["recon_error"] = std::isfinite(p.recon_error) ? json(p.recon_error) : json(nullptr);
        x["linears_quantized"] = p.linears_quantized;
        x["linears_total"] = p.linears_total;
        x["sample_kl_mean"] = p.sample_kl.empty() ? json(nullptr)
                                                  : json([&] {
                                                      double s = 0;
                                                      for (double v : p.sample_kl) s += v;
                                                      return s / p.sample_kl.size();
                                                    }());
        x["estimated"] = r.fig.estimated;
        x["latency_ms_p50"] = r.fig.latency_ms_p50;
        x["latency_ms_p95"] = r.fig.latency_ms_p95;
        x["tokens_per_s"] = r.fig.tokens_per_s;
        x["peak_memory_bytes"] = r.fig.peak_memory_bytes;
        x["peak_memory_measured"] = r.fig.memory_measured;
        x["peak_memory_estimated"] = !r.fig.memory_measured;
        x["peak_memory_what"] = peak_memory_what(r.fig, p);
        if (r.fig.memory_measured) x["baseline_rss_bytes"] = p.local_baseline_rss_bytes;
        x["fits"] = r.fig.fits;
        x["cost_per_mtok"] = r.fig.cost_per_mtok;
        if (tokens_per_month) x["cost_per_month"] = r.fig.cost_per_mtok * *tokens_per_month / 1e6;
      }
    }
    if (r.spec.unquantized) {
      x["ppl_delta_pct"] = 0.0;
      x["kl_mean"] = 0.0;
    } else if (r.eval && r.eval->ok) {
      x["ppl"] = r.eval->ppl;
      x["ref_ppl"] = r.eval->ref_ppl;
      x["ppl_delta_pct"] = r.eval->ppl_delta_pct;
      x["kl_mean"] = r.eval->kl_mean;
      x["kl_p99"] = r.eval->kl_p99;
      x["top1"] = r.eval->top1;
      x["eval_windows"] = r.eval->windows;
    } else if (r.eval) {
      x["eval_error"] = r.eval->error;
    }
    json checks = json::array();
    for (auto& k : r.checks) checks.push_back({{"constraint", k.constraint}, {"pass", k.pass}, {"why", k.why}});
    x["checks"] = checks;
    rows.push_back(x);
  }
  j["candidates"] = rows;
  if (hw.measured) j["note"] = kThisMachineNote;
  j["winner"] = d.winner >= 0 ? json(d.table[static_cast<size_t>(d.winner)].spec.name) : json(nullptr);
  json closest = json::array();
  for (int i : d.closest) {
    const auto& r = d.table[static_cast<size_t>(i)];
    json misses = json::array();
    for (auto& k : r.checks)
      if (!k.pass) misses.push_back({{"constraint", k.constraint}, {"why", k.why}});
    closest.push_back({{"name", r.spec.name}, {"misses", misses}});
  }
  j["closest"] = closest;
  json sav = json::array();
  for (auto& s : d.savings) {
    json x{{"against", s.against}, {"available", s.available}};
    if (s.available) {
      x["baseline_cost_per_mtok"] = s.baseline_cost_per_mtok;
      x["winner_cost_per_mtok"] = s.winner_cost_per_mtok;
      x["saving"] = s.saving;
      x["baseline_disk_bytes"] = s.baseline_bytes;
      x["winner_disk_bytes"] = s.winner_bytes;
      x["baseline_meets_constraints"] = s.baseline_meets_constraints ? json(*s.baseline_meets_constraints) : json(nullptr);
      if (tokens_per_month)
        x["saving_per_month"] = (s.baseline_cost_per_mtok - s.winner_cost_per_mtok) * *tokens_per_month / 1e6;
    }
    sav.push_back(x);
  }
  j["savings"] = sav;
  j["search"] = {{"exhaustive", d.exhaustive}, {"probes", d.probes}, {"evaluations", d.evaluations}};
  return j;
}

std::string decision_svg(const Decision& d, const Constraints& c, const std::string& title) {
  struct Pt {
    std::string name;
    double cost, kl;
    bool win, feasible;
    std::string tip;  // every figure of the row, each marked measured or estimated
  };
  std::vector<Pt> pts;
  for (size_t i = 0; i < d.table.size(); ++i) {
    const auto& r = d.table[i];
    if (!r.probe || !r.probe->ok || !std::isfinite(r.fig.cost_per_mtok)) continue;
    double kl;
    if (r.spec.unquantized) kl = 0;
    else if (r.eval && r.eval->ok) kl = r.eval->kl_mean;
    else continue;
    const char* speed = r.fig.estimated ? "estimated" : "measured";
    std::string tip = r.spec.name + ": KL " + fmt(kl) + " (measured); cost " + fmt(r.fig.cost_per_mtok) +
                      " USD/Mtok, latency p50 " + fmt(r.fig.latency_ms_p50) + " / p95 " + fmt(r.fig.latency_ms_p95) +
                      " ms, " + fmt(r.fig.tokens_per_s) + " tok/s (" + speed + "); peak memory " +
                      fmt(r.fig.peak_memory_bytes / 1048576.0) + " MiB (" +
                      (r.fig.memory_measured ? "measured peak RSS" : "estimated") + "); " +
                      fmt(r.probe->disk_bytes ? static_cast<double>(r.probe->fp16_bytes) / r.probe->disk_bytes : 0) +
                      "x compression (measured)";
    pts.push_back({r.spec.name, r.fig.cost_per_mtok, kl, static_cast<int>(i) == d.winner, r.feasible, tip});
  }
  const int W = 820, H = 520, L = 90, R = 200, T = 50, B = 60;
  double x0 = kInf, x1 = 0, y1 = 0;
  for (auto& p : pts) {
    x0 = std::min(x0, p.cost);
    x1 = std::max(x1, p.cost);
    y1 = std::max(y1, p.kl);
  }
  if (c.max_kld) y1 = std::max(y1, *c.max_kld);
  if (pts.empty()) x0 = 0, x1 = 1;
  double pad = (x1 - x0) * 0.08 + 1e-12 + x1 * 1e-3;
  x0 = std::max(0.0, x0 - pad);
  x1 += pad;
  y1 = y1 * 1.1 + 1e-9;
  auto X = [&](double v) { return L + (W - L - R) * (v - x0) / (x1 - x0); };
  auto Y = [&](double v) { return H - B - (H - T - B) * v / y1; };
  auto esc = [](const std::string& s) {
    std::string o;
    for (char ch : s) o += ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '&' ? "&amp;" : std::string(1, ch);
    return o;
  };
  std::ostringstream o;
  char b[256];
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << L << "\" y=\"24\" font-size=\"14\">" << esc(title) << "</text>\n";
  o << "<text x=\"" << L << "\" y=\"40\" fill=\"#555\">" << esc(d.hardware.name)
    << (d.hardware.measured ? ": cost measured on this machine" : ": cost ESTIMATED from the bandwidth model")
    << "</text>\n";
  o << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
    << "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (int k = 0; k <= 4; ++k) {
    double xv = x0 + (x1 - x0) * k / 4, yv = y1 * k / 4;
    std::snprintf(b, sizeof b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.4g</text>\n", X(xv), H - B + 16, xv);
    o << b;
    std::snprintf(b, sizeof b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, Y(yv) + 4, yv);
    o << b;
  }
  o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 18 << "\" text-anchor=\"middle\">cost, USD per million tokens"
    << (d.hardware.measured ? "" : " (estimated)") << "</text>\n";
  std::snprintf(b, sizeof b,
                "<text x=\"20\" y=\"%d\" transform=\"rotate(-90 20 %d)\" text-anchor=\"middle\">KL divergence vs unquantized (nats/token)</text>\n",
                (T + H - B) / 2, (T + H - B) / 2);
  o << b;
  if (c.max_kld) {
    std::snprintf(b, sizeof b,
                  "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>"
                  "<text x=\"%d\" y=\"%.1f\" fill=\"#d62728\">max KL %.4g</text>\n",
                  L, Y(*c.max_kld), W - R, Y(*c.max_kld), W - R + 4, Y(*c.max_kld) + 4, *c.max_kld);
    o << b;
  }
  // Other constraints are not axes of this plot: listed at the right.
  int ly = T + 40;
  auto note = [&](const std::string& s) {
    o << "<text x=\"" << W - R + 4 << "\" y=\"" << ly << "\" fill=\"#d62728\">" << esc(s) << "</text>\n";
    ly += 16;
  };
  if (c.max_ppl_delta_pct) note("max ppl +" + fmt(*c.max_ppl_delta_pct) + "%");
  if (c.max_latency_ms) note("max latency " + fmt(*c.max_latency_ms) + " ms");
  if (c.min_compression) note("min compression " + fmt(*c.min_compression) + "x");
  for (auto& p : pts) {
    const char* color = p.win ? "#2ca02c" : p.feasible ? "#1f77b4" : "#999";
    std::snprintf(b, sizeof b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\">", X(p.cost), Y(p.kl), p.win ? 7 : 4,
                  color);
    o << b << "<title>" << esc(p.tip) << "</title></circle>";
    std::snprintf(b, sizeof b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">%s%s</text>\n", X(p.cost) + 8, Y(p.kl) - 4, color,
                  esc(p.name).c_str(), p.win ? " (winner)" : "");
    o << b;
  }
  o << "<text x=\"" << W - R + 4 << "\" y=\"" << H - B << "\" fill=\"#555\">grey: misses a constraint</text>\n";
  if (d.hardware.measured)
    o << "<text x=\"" << L << "\" y=\"" << H - 4 << "\" fill=\"#555\" font-size=\"10\">every candidate runs dequantized "
         "to float32 here: cost differences are noise, not quantization (docs/OPTIMIZE.md)</text>\n";
  o << "</svg>\n";
  return o.str();
}

}  // namespace tenpak::opt
