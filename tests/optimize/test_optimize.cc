// The optimizer's decision with injected measurements: constraint checks,
// the cost model's arithmetic, ties, infeasible sets, the cache, and the
// smart search against the exhaustive one over a grid of constraint sets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "tenpak/optimize.h"

namespace fs = std::filesystem;
using namespace tenpak;
using namespace tenpak::opt;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

HardwareProfile gpu(double mem_gb = 16, double bw = 300, double price = 1.0) {
  HardwareProfile h;
  h.name = "G";
  h.memory_gb = mem_gb;
  h.bandwidth_gbs = bw;
  h.price_per_hour = price;
  return h;
}

CostModel cost_model() {
  CostModel m;
  m.batch = 4;
  m.context = 100;
  m.kv_bytes_per_value = 2;
  m.efficiency = {{"fp16", 0.8}, {"gptq", 0.5}, {"awq", 0.5}, {"nf4", 0.25}, {"fp4", 0.25}, {"int8", 0.2}};
  return m;
}

ModelShape shape() {
  ModelShape s;
  s.params = 1000000;
  s.layers = 2;
  s.kv_heads = 2;
  s.head_dim = 8;
  return s;
}

// A synthetic candidate: per-window KL and NLL deltas over n windows; the
// full evaluation is their mean (as rt::evaluate_quality's over windows of
// equal length), the probe sees the first k.
struct Synth {
  CandidateSpec spec;
  Probe probe;
  Evaluation eval;
};

Synth synth(const std::string& name, const std::string& format, double bytes, double kl, double nll, int n, int k,
            std::mt19937& rng, bool unq = false) {
  Synth s;
  s.spec = {name, format, unq, bytes * 0.9};
  s.probe.ok = true;
  s.probe.disk_bytes = static_cast<uint64_t>(bytes);
  s.probe.fp16_bytes = 2000000;
  s.probe.serving_bytes = bytes;
  s.probe.runtime_bytes = 4e6;
  s.probe.local_ms_p50 = 1;
  s.probe.local_ms_p95 = 1.2;
  s.probe.local_tokens_per_s = 1000;
  std::lognormal_distribution<double> spread(0, 0.5);
  std::normal_distribution<double> noise(0, 1);
  double ksum = 0, nsum = 0;
  for (int i = 0; i < n; ++i) {
    double kv = unq ? 0 : kl * spread(rng);
    double nv = unq ? 0 : nll + std::abs(nll) * 0.8 * noise(rng);
    ksum += kv;
    nsum += nv;
    if (i < k) {
      s.probe.sample_kl.push_back(kv);
      s.probe.sample_nll_delta.push_back(nv);
    }
  }
  s.eval.ok = true;
  s.eval.windows = n;
  s.eval.kl_mean = ksum / n;
  s.eval.ppl_delta_pct = 100 * (std::exp(nsum / n) - 1);
  return s;
}

struct Run {
  Result<Decision> d;
  std::vector<int> probed, evaluated;
};

Run run(const std::vector<Synth>& cands, const Constraints& c, const HardwareProfile& hw, bool all, int n) {
  std::vector<CandidateSpec> specs;
  for (auto& s : cands) specs.push_back(s.spec);
  Run r{Status{Errc::invalid, "not run"}, {}, {}};
  SearchCallbacks cb;
  cb.probe = [&](size_t i) -> Result<Probe> {
    r.probed.push_back(static_cast<int>(i));
    return cands[i].probe;
  };
  cb.evaluate = [&](size_t i) -> Result<Evaluation> {
    r.evaluated.push_back(static_cast<int>(i));
    return cands[i].eval;
  };
  r.d = search(specs, c, hw, cost_model(), shape(), n, all, cb);
  return r;
}

// Something shaped like stories260K's presets (bytes, KL) on a GPU profile.
std::vector<Synth> realistic(std::mt19937& rng, int n, int k) {
  std::vector<Synth> v;
  v.push_back(synth("unquantized", "fp16", 2.0e6, 0, 0, n, k, rng, true));
  v.push_back(synth("gptq-4bit-128g", "gptq", 0.62e6, 0.10, 0.012, n, k, rng));
  v.push_back(synth("gptq-4bit-32g", "gptq", 0.66e6, 0.078, 0.014, n, k, rng));
  v.push_back(synth("gptq-3bit-128g", "gptq", 0.50e6, 0.37, 0.066, n, k, rng));
  v.push_back(synth("gptq-8bit-128g", "gptq", 1.1e6, 0.004, 0.001, n, k, rng));
  v.push_back(synth("awq-4bit-128g", "awq", 0.62e6, 0.09, 0.01, n, k, rng));
  v.push_back(synth("awq-4bit-64g", "awq", 0.64e6, 0.08, 0.01, n, k, rng));
  v.push_back(synth("bnb-nf4", "nf4", 0.60e6, 0.31, 0.05, n, k, rng));
  v.push_back(synth("bnb-fp4", "fp4", 0.60e6, 0.54, 0.09, n, k, rng));
  v.push_back(synth("bnb-int8", "int8", 1.05e6, 0.002, 0.003, n, k, rng));
  return v;
}

std::vector<Constraints> grid() {
  std::vector<Constraints> g;
  std::vector<std::optional<double>> kld{std::nullopt, 0.005, 0.01, 0.05, 0.09, 0.2, 0.5}, ppl{std::nullopt, 0.5, 2, 10},
      comp{std::nullopt, 1.5, 3, 3.5}, lat{std::nullopt, 0.05};
  for (auto& a : kld)
    for (auto& b : ppl)
      for (auto& c : comp)
        for (auto& l : lat) {
          Constraints x;
          x.max_kld = a;
          x.max_ppl_delta_pct = b;
          x.min_compression = c;
          x.max_latency_ms = l;
          g.push_back(x);
        }
  return g;
}

}  // namespace

TEST(OptimizeConstraints, BadValuesAreRefusedNamingTheFlag) {
  Constraints c;
  EXPECT_TRUE(validate(c).ok());
  c.max_kld = -0.1;
  auto s = validate(c);
  EXPECT_EQ(s.code(), Errc::invalid);
  EXPECT_NE(s.message().find("--max-kld"), std::string::npos);
  c = {};
  c.max_ppl_delta_pct = std::nan("");
  s = validate(c);
  EXPECT_EQ(s.code(), Errc::invalid);
  EXPECT_NE(s.message().find("NaN"), std::string::npos);
  c = {};
  c.min_compression = INFINITY;
  EXPECT_EQ(validate(c).code(), Errc::invalid);
  c = {};
  c.max_latency_ms = 0;
  EXPECT_EQ(validate(c).code(), Errc::invalid);
  c = {};
  c.min_compression = 9;
  EXPECT_EQ(validate(c).code(), Errc::invalid);
  // Contradictory: only the unquantized model has KL 0, and it is not compressed.
  c = {};
  c.max_kld = 0;
  c.min_compression = 2;
  s = validate(c);
  EXPECT_EQ(s.code(), Errc::invalid);
  EXPECT_NE(s.message().find("contradictory"), std::string::npos);
  c.min_compression = 1;
  EXPECT_TRUE(validate(c).ok());
  // search() refuses them too, before measuring anything.
  c.max_kld = -1;
  std::mt19937 rng(1);
  auto r = run(realistic(rng, 16, 4), c, gpu(), false, 16);
  EXPECT_FALSE(r.d.ok());
  EXPECT_TRUE(r.probed.empty());
}

TEST(OptimizeHardware, BuiltinProfilesHaveSourcesAndUnknownNamesAreListed) {
  auto f = builtin_hardware(7.5);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  ASSERT_GE(f->profiles.size(), 7u);
  EXPECT_EQ(f->profiles[0].name, "this-machine");
  EXPECT_TRUE(f->profiles[0].measured);
  EXPECT_EQ(f->profiles[0].memory_gb, 7.5);
  for (const char* n : {"T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100"}) {
    auto h = find_hardware(*f, n);
    ASSERT_TRUE(h.ok()) << n;
    EXPECT_FALSE(h->measured);
    EXPECT_FALSE(h->price_source.empty());
    EXPECT_FALSE(h->spec_source.empty());
    EXPECT_FALSE(h->date.empty());
  }
  EXPECT_TRUE(find_hardware(*f, "t4").ok());
  auto u = find_hardware(*f, "TPU-v9");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("A100-80GB"), std::string::npos);
  EXPECT_NE(u.status().message().find("this-machine"), std::string::npos);
  for (const char* k : {"fp16", "gptq", "awq", "nf4", "fp4", "int8"}) EXPECT_GT(f->model.efficiency.at(k), 0);
  // A file without the optimizer's section, or with a bad number, is refused naming it.
  EXPECT_EQ(parse_hardware(R"({"gpus": []})", "hw.json", 1).status().code(), Errc::corrupt);
  auto bad = parse_hardware(
      R"({"optimize": {"this_machine": {"price_per_hour": -1}, "efficiency": {}}, "gpus": [{"name": "X"}]})", "hw.json", 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("hw.json"), std::string::npos);
}

TEST(OptimizeCostModel, ArithmeticOfTheStatedModel) {
  Probe p;
  p.ok = true;
  p.serving_bytes = 1e6;
  CandidateSpec c{"gptq-4bit-128g", "gptq", false, 0};
  auto hw = gpu(16, 300, 3.6);
  auto m = cost_model();
  auto s = shape();
  // KV per sequence: context 100 x (2 x 2 layers x 2 heads x 8 dims) x 2 bytes = 12,800 B.
  const double kv = 100 * 64 * 2, bw = 300e9 * 0.5;
  auto f = figures(p, c, hw, m, s);
  EXPECT_TRUE(f.estimated);
  EXPECT_NEAR(f.latency_ms_p50, (1e6 + kv) / bw * 1000, 1e-12);
  EXPECT_EQ(f.latency_ms_p95, f.latency_ms_p50);
  EXPECT_NEAR(f.tokens_per_s, 4 / ((1e6 + 4 * kv) / bw), 1e-6);
  EXPECT_NEAR(f.cost_per_mtok, 3.6 / (f.tokens_per_s * 3600) * 1e6, 1e-12);
  EXPECT_NEAR(f.peak_memory_bytes, 1e6 + 4 * kv, 1e-6);
  EXPECT_TRUE(f.fits);
  // The same bytes in a slower format cost more; fewer bytes cost less.
  CandidateSpec nf4{"bnb-nf4", "nf4", false, 0};
  EXPECT_GT(figures(p, nf4, hw, m, s).cost_per_mtok, f.cost_per_mtok);
  // The bound before quantizing is the same formula on the lower bound of bytes.
  c.serving_bytes_lower_bound = 1e6;
  EXPECT_DOUBLE_EQ(cost_lower_bound(c, hw, m, s), f.cost_per_mtok);
  // Too big for the card: does not fit.
  p.serving_bytes = 17 * kGiB;
  EXPECT_FALSE(figures(p, c, hw, m, s).fits);
  // This machine: the measured figures, batch 1; no bound before measuring.
  HardwareProfile local = gpu(8, 1, 0.36);
  local.measured = true;
  p.serving_bytes = 1e6;
  p.runtime_bytes = 4e6;
  p.local_ms_p50 = 2;
  p.local_ms_p95 = 3;
  p.local_tokens_per_s = 400;
  auto lf = figures(p, c, local, m, s);
  EXPECT_FALSE(lf.estimated);
  EXPECT_EQ(lf.latency_ms_p95, 3);
  EXPECT_EQ(lf.tokens_per_s, 400);
  EXPECT_NEAR(lf.cost_per_mtok, 0.36 / (400 * 3600.0) * 1e6, 1e-12);
  EXPECT_NEAR(lf.peak_memory_bytes, 4e6 + 100 * 64 * 4.0, 1e-6);
  EXPECT_FALSE(lf.memory_measured);  // no measurement in this probe: the estimate, labelled so
  EXPECT_EQ(cost_lower_bound(c, local, m, s), 0);
}

TEST(OptimizeCostModel, ThisMachineUsesTheMeasuredPeakMemoryForItsMemoryCheck) {
  Probe p;
  p.ok = true;
  p.disk_bytes = 1000;
  p.fp16_bytes = 2000;
  p.serving_bytes = 1e6;
  p.runtime_bytes = 4e6;  // the estimate would fit easily...
  p.local_tokens_per_s = 400;
  p.local_peak_rss_bytes = 3 * kGiB;  // ...the measured process did not
  p.local_baseline_rss_bytes = 0.2 * kGiB;
  p.local_tokens = 40;
  CandidateSpec c{"bnb-nf4", "nf4", false, 0};
  HardwareProfile local = gpu(2, 1, 0.36);
  local.name = "this-machine";
  local.measured = true;
  CandidateResult r;
  r.spec = c;
  r.probe = p;
  r.fig = figures(p, c, local, cost_model(), shape());
  EXPECT_TRUE(r.fig.memory_measured);
  EXPECT_FALSE(r.fig.estimated);
  EXPECT_EQ(r.fig.peak_memory_bytes, 3 * kGiB);  // nothing subtracted, nothing added
  EXPECT_FALSE(r.fig.fits);
  check_candidate(r, Constraints{}, local);
  ASSERT_EQ(r.checks.size(), 1u);
  EXPECT_EQ(r.checks[0].constraint, "memory");
  EXPECT_NE(r.checks[0].why.find("measured peak RSS 3 GiB"), std::string::npos) << r.checks[0].why;
  EXPECT_FALSE(r.feasible);
  // The JSON labels it measured, and carries the note that this machine's
  // speed differences between candidates are noise (float32 runtime).
  Decision d;
  d.hardware = local;
  d.table.push_back(r);
  auto j = decision_json(d, Constraints{}, cost_model(), std::nullopt);
  const auto& row = j["candidates"][0];
  EXPECT_EQ(row["peak_memory_measured"], true);
  EXPECT_EQ(row["peak_memory_estimated"], false);
  EXPECT_NE(row["peak_memory_what"].get<std::string>().find("measured: peak RSS"), std::string::npos);
  EXPECT_EQ(row["baseline_rss_bytes"].get<double>(), 0.2 * kGiB);
  ASSERT_TRUE(j.contains("note"));
  EXPECT_NE(j["note"].get<std::string>().find("noise"), std::string::npos);
  EXPECT_NE(decision_svg(d, Constraints{}, "t").find("noise"), std::string::npos);
  // On a GPU profile the same probe's memory is the estimate, labelled so.
  r.fig = figures(p, c, gpu(), cost_model(), shape());
  EXPECT_FALSE(r.fig.memory_measured);
  d.hardware = gpu();
  d.table[0] = r;
  j = decision_json(d, Constraints{}, cost_model(), std::nullopt);
  EXPECT_EQ(j["candidates"][0]["peak_memory_measured"], false);
  EXPECT_EQ(j["candidates"][0]["peak_memory_estimated"], true);
  EXPECT_FALSE(j.contains("note"));
}

TEST(OptimizeChecks, EveryConstraintKindPassesAndFailsWithItsReason) {
  CandidateResult r;
  r.spec = {"gptq-4bit-128g", "gptq", false, 0};
  Probe p;
  p.ok = true;
  p.disk_bytes = 500;
  p.fp16_bytes = 2000;  // compression 4
  r.probe = p;
  r.fig.latency_ms_p95 = 5;
  r.fig.fits = true;
  Evaluation e;
  e.ok = true;
  e.kl_mean = 0.1;
  e.ppl_delta_pct = 3;
  r.eval = e;
  auto hw = gpu();
  auto one = [&](Constraints c, const std::string& name, bool pass) {
    check_candidate(r, c, hw);
    ASSERT_EQ(r.checks.size(), 1u) << name;
    EXPECT_EQ(r.checks[0].constraint, name);
    EXPECT_EQ(r.checks[0].pass, pass) << name << ": " << r.checks[0].why;
    EXPECT_EQ(r.feasible, pass);
    EXPECT_FALSE(r.checks[0].why.empty());
    if (!pass) EXPECT_GT(r.checks[0].miss, 0);
  };
  Constraints c;
  c.max_kld = 0.2;
  one(c, "max-kld", true);
  c.max_kld = 0.05;
  one(c, "max-kld", false);
  c = {};
  c.max_ppl_delta_pct = 3;  // equal: passes
  one(c, "max-ppl-delta", true);
  c.max_ppl_delta_pct = 2.9;
  one(c, "max-ppl-delta", false);
  c = {};
  c.max_latency_ms = 5;
  one(c, "max-latency-ms", true);
  c.max_latency_ms = 4;
  one(c, "max-latency-ms", false);
  c = {};
  c.min_compression = 4;
  one(c, "min-compression", true);
  c.min_compression = 4.5;
  one(c, "min-compression", false);
  // Memory: a candidate that does not fit fails with that reason, whatever the constraints.
  r.fig.fits = false;
  r.fig.peak_memory_bytes = 20 * kGiB;
  one({}, "memory", false);
  EXPECT_NE(r.checks[0].why.find("16 GiB"), std::string::npos);
  r.fig.fits = true;
  // Quality not evaluated yet: undecided, so not feasible, and no check invented.
  r.eval.reset();
  c = {};
  c.max_kld = 1;
  check_candidate(r, c, hw);
  EXPECT_TRUE(r.checks.empty());
  EXPECT_FALSE(r.feasible);
  // The unquantized model meets quality bounds by definition.
  r.spec.unquantized = true;
  c.max_kld = 0;
  check_candidate(r, c, hw);
  EXPECT_TRUE(r.feasible);
  // A preset that failed to quantize: one failing check with the reason.
  r.spec.unquantized = false;
  r.probe->ok = false;
  r.probe->error = "no linear fits";
  check_candidate(r, c, hw);
  ASSERT_EQ(r.checks.size(), 1u);
  EXPECT_EQ(r.checks[0].constraint, "quantize");
  EXPECT_NE(r.checks[0].why.find("no linear fits"), std::string::npos);
}

TEST(OptimizeDecision, TiesGoToFewerBytesThenToTheEarlierCandidate) {
  std::mt19937 rng(3);
  std::vector<Synth> v{synth("a", "gptq", 1000, 0.01, 0.001, 8, 2, rng), synth("b", "gptq", 1000, 0.01, 0.001, 8, 2, rng)};
  Constraints c;
  auto hw = gpu();
  for (bool all : {false, true}) {
    auto r = run(v, c, hw, all, 8);
    ASSERT_TRUE(r.d.ok());
    EXPECT_EQ(r.d->winner, 0) << "equal cost and bytes: the earlier candidate";
  }
  // Equal cost (one format, same serving bytes) but fewer bytes on disk wins.
  v[1].probe.disk_bytes = 900;
  for (bool all : {false, true}) {
    auto r = run(v, c, hw, all, 8);
    ASSERT_TRUE(r.d.ok());
    EXPECT_EQ(r.d->winner, 1);
  }
}

TEST(OptimizeDecision, InfeasibleSetsNameTheClosestCandidatesAndWhatTheyMiss) {
  std::mt19937 rng(5);
  auto v = realistic(rng, 16, 4);
  Constraints c;
  c.max_kld = 0.001;
  c.min_compression = 1.5;  // rules out the unquantized (1x) and 8-bit (1.8x ok) ... int8 1.9x ok, but their KL > 0.001
  for (bool all : {false, true}) {
    auto r = run(v, c, gpu(), all, 16);
    ASSERT_TRUE(r.d.ok());
    EXPECT_EQ(r.d->winner, -1);
    ASSERT_FALSE(r.d->closest.empty());
    EXPECT_LE(r.d->closest.size(), 3u);
    double prev = 0;
    for (int i : r.d->closest) {
      const auto& row = r.d->table[static_cast<size_t>(i)];
      double worst = 0;
      bool misses = false;
      for (auto& k : row.checks)
        if (!k.pass) worst = std::max(worst, k.miss), misses = true;
      EXPECT_TRUE(misses) << row.spec.name;
      EXPECT_GE(worst, prev);
      prev = worst;
    }
    auto j = decision_json(*r.d, c, cost_model(), std::nullopt);
    EXPECT_TRUE(j["winner"].is_null());
    EXPECT_FALSE(j["closest"].empty());
    EXPECT_TRUE(j["savings"].empty());
  }
}

TEST(OptimizeDecision, SavingsAgainstTheUsualManualChoices) {
  std::mt19937 rng(7);
  auto v = realistic(rng, 16, 4);
  Constraints c;
  c.max_kld = 0.5;  // gptq-3bit-128g or a 4-bit preset wins
  auto r = run(v, c, gpu(), true, 16);
  ASSERT_TRUE(r.d.ok());
  ASSERT_GE(r.d->winner, 0);
  const auto& w = r.d->table[static_cast<size_t>(r.d->winner)];
  ASSERT_EQ(r.d->savings.size(), 2u);
  for (auto& s : r.d->savings) {
    ASSERT_TRUE(s.available) << s.against;
    const CandidateResult* base = nullptr;
    for (auto& row : r.d->table)
      if (row.spec.name == s.against) base = &row;
    ASSERT_NE(base, nullptr);
    EXPECT_DOUBLE_EQ(s.baseline_cost_per_mtok, base->fig.cost_per_mtok);
    EXPECT_DOUBLE_EQ(s.saving, 1 - w.fig.cost_per_mtok / base->fig.cost_per_mtok);
    ASSERT_TRUE(s.baseline_meets_constraints.has_value());
    EXPECT_EQ(*s.baseline_meets_constraints, base->feasible);
  }
  EXPECT_GT(r.d->savings[0].saving, 0.5);  // unquantized fp16 is the most expensive here
  auto j = decision_json(*r.d, c, cost_model(), 1e9);
  EXPECT_EQ(j["winner"], w.spec.name);
  for (auto& row : j["candidates"])
    if (row.contains("estimated")) EXPECT_TRUE(row["estimated"].get<bool>());
  EXPECT_NEAR(j["savings"][0]["saving_per_month"].get<double>(),
              (r.d->savings[0].baseline_cost_per_mtok - r.d->savings[0].winner_cost_per_mtok) * 1000, 1e-9);
  auto svg = decision_svg(*r.d, c, "t");
  EXPECT_NE(svg.find("(winner)"), std::string::npos);
  EXPECT_NE(svg.find("max KL"), std::string::npos);
  EXPECT_NE(svg.find("ESTIMATED"), std::string::npos);
}

TEST(OptimizeSearch, AFailedPresetIsReportedAndTheOthersGoOn) {
  std::mt19937 rng(9);
  auto v = realistic(rng, 16, 4);
  v[3].probe = Probe{};
  v[3].probe.error = "model.layers.0.mlp.down_proj.weight: in_features 172 not a multiple of 32";
  Constraints c;
  c.max_kld = 0.5;
  for (bool all : {false, true}) {
    auto r = run(v, c, gpu(), all, 16);
    ASSERT_TRUE(r.d.ok());
    ASSERT_GE(r.d->winner, 0);
    EXPECT_NE(r.d->winner, 3);
    ASSERT_TRUE(r.d->table[3].probe.has_value());
    EXPECT_EQ(r.d->table[3].checks.at(0).constraint, "quantize");
    EXPECT_EQ(std::count(r.evaluated.begin(), r.evaluated.end(), 3), 0);
  }
  // A measuring error (not a preset's failure) aborts with that error.
  std::vector<CandidateSpec> specs;
  for (auto& s : v) specs.push_back(s.spec);
  SearchCallbacks cb;
  cb.probe = [](size_t) -> Result<Probe> { return Status{Errc::io, "text.txt: read failed"}; };
  cb.evaluate = [](size_t) -> Result<Evaluation> { return Evaluation{}; };
  auto d = search(specs, c, gpu(), cost_model(), shape(), 16, false, cb);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Errc::io);
}

TEST(OptimizeSearch, ProxiesNeverDropACandidateThatMeetsTheKlBound) {
  // The KL proxy's bound is exact: whatever the unseen windows hold, a
  // candidate whose full mean meets max_kld is never dropped.
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    auto s = synth("x", "gptq", 1000, 0.1, 0.01, 16, 4, rng);
    Constraints c;
    c.max_kld = std::uniform_real_distribution<double>(0.01, 0.3)(rng);
    if (s.eval.kl_mean <= *c.max_kld) EXPECT_FALSE(proxy_rejects(s.probe, c, 16).has_value()) << trial;
  }
  // And it does drop what is far off.
  Probe p;
  p.sample_kl = {1, 1, 1, 1};
  Constraints c;
  c.max_kld = 0.2;
  EXPECT_TRUE(proxy_rejects(p, c, 16).has_value());  // >= 4/16 = 0.25
  c.max_kld = 0.3;
  EXPECT_FALSE(proxy_rejects(p, c, 16).has_value());
}

TEST(OptimizeSearch, SmartPicksTheSameWinnerAsAllOverAGridWithFewerEvaluations) {
  int sets = 0, smart_evals = 0, all_evals = 0, disagree = 0;
  for (int seed = 0; seed < 6; ++seed) {
    std::mt19937 rng(100 + seed);
    auto v = realistic(rng, 16, 4);
    for (bool local : {false, true}) {
      HardwareProfile hw = local ? gpu(8, 1, 0.1) : gpu(16, 300, 1.0);
      hw.measured = local;
      if (local)  // this machine: measured speeds that differ by noise
        for (auto& s : v) s.probe.local_tokens_per_s = 1000 * std::uniform_real_distribution<double>(0.8, 1.2)(rng);
      for (auto& c : grid()) {
        auto a = run(v, c, hw, true, 16);
        auto s = run(v, c, hw, false, 16);
        ASSERT_TRUE(a.d.ok() && s.d.ok());
        ++sets;
        all_evals += a.d->evaluations;
        smart_evals += s.d->evaluations;
        if (a.d->winner != s.d->winner) {
          ++disagree;
          ADD_FAILURE() << "seed " << seed << (local ? " this-machine" : " gpu") << ": all picks " << a.d->winner
                        << ", smart " << s.d->winner;
        }
        // Every evaluation the smart search ran is counted, each candidate at most once.
        std::vector<int> e = s.evaluated;
        std::sort(e.begin(), e.end());
        EXPECT_EQ(std::unique(e.begin(), e.end()), e.end());
        EXPECT_EQ(static_cast<int>(s.evaluated.size()), s.d->evaluations);
      }
    }
  }
  std::printf("[ grid ] %d constraint sets: smart %d evaluations, --all %d (%.1f%%), %d disagreements\n", sets, smart_evals,
              all_evals, 100.0 * smart_evals / all_evals, disagree);
  EXPECT_EQ(disagree, 0);
  EXPECT_LE(2 * smart_evals, all_evals) << "the smart search must run at most half of the evaluations on average";
}

TEST(OptimizeSearch, OnAGpuTheSearchStopsBeforeProbingWhatCannotBeCheaper) {
  std::mt19937 rng(13);
  auto v = realistic(rng, 16, 4);
  Constraints c;
  c.max_kld = 0.5;  // a cheap 3/4-bit candidate wins
  auto r = run(v, c, gpu(), false, 16);
  ASSERT_TRUE(r.d.ok());
  ASSERT_GE(r.d->winner, 0);
  // gptq-8bit-128g and bnb-int8 cost more by their bound: never quantized.
  for (int i : {4, 9}) {
    EXPECT_EQ(std::count(r.probed.begin(), r.probed.end(), i), 0) << v[static_cast<size_t>(i)].spec.name;
    EXPECT_NE(r.d->table[static_cast<size_t>(i)].skipped.find("not measured"), std::string::npos);
  }
  // ...but the two manual baselines are probed for the savings table.
  EXPECT_EQ(std::count(r.probed.begin(), r.probed.end(), 0), 1);
  EXPECT_TRUE(r.d->savings.at(0).available && r.d->savings.at(1).available);
}

// ------------------------------------------------------------------- cache

TEST(OptimizeCache, RoundTripAndOnlyCompleteEntriesCount) {
  const fs::path dir = fs::temp_directory_path() / ("tenpak_opt_cache_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  MeasurementCache cache(dir.string());
  const std::string sha(64, 'a'), settings = "v1 ctx=256";
  EXPECT_FALSE(cache.get_probe(sha, "bnb-nf4", settings));
  Probe p;
  p.ok = true;
  p.disk_bytes = 123;
  p.fp16_bytes = 456;
  p.serving_bytes = 78.5;
  p.recon_error = std::nan("");  // AWQ: stored as null, read back as NaN
  p.sample_kl = {0.1, 0.2};
  p.sample_nll_delta = {-0.01, 0.02};
  p.local_peak_rss_bytes = 5.5e8;
  p.local_baseline_rss_bytes = 2.5e8;
  p.local_tokens = 40;
  ASSERT_TRUE(cache.put_probe(sha, "bnb-nf4", settings, p).ok());
  auto g = cache.get_probe(sha, "bnb-nf4", settings);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->local_peak_rss_bytes, 5.5e8);
  EXPECT_EQ(g->local_baseline_rss_bytes, 2.5e8);
  EXPECT_EQ(g->local_tokens, 40);
  EXPECT_EQ(g->disk_bytes, 123u);
  EXPECT_EQ(g->serving_bytes, 78.5);
  EXPECT_TRUE(std::isnan(g->recon_error));
  EXPECT_EQ(g->sample_kl, p.sample_kl);
  EXPECT_EQ(g->sample_nll_delta, p.sample_nll_delta);
  // Keyed by preset and settings too.
  EXPECT_FALSE(cache.get_probe(sha, "bnb-fp4", settings));
  EXPECT_FALSE(cache.get_probe(sha, "bnb-nf4", "v1 ctx=512"));
  EXPECT_FALSE(cache.get_probe(std::string(64, 'b'), "bnb-nf4", settings));
  // No temporary file is left beside the entry.
  int files = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) {
      ++files;
      EXPECT_EQ(e.path().filename().string().find("tmp"), std::string::npos) << e.path();
    }
  EXPECT_EQ(files, 1);
  // An entry of the previous schema (version 1: complete, but without the
  // measured peak memory) is measured again, not read with memory 0.
  {
    std::ifstream f(cache.path(sha, "bnb-nf4", settings, "probe"));
    auto j = nlohmann::json::parse(f);
    j["version"] = 1;
    j["value"].erase("local_peak_rss_bytes");
    j["value"].erase("local_baseline_rss_bytes");
    j["value"].erase("local_tokens");
    std::ofstream(cache.path(sha, "bnb-nf4", settings, "probe"), std::ios::trunc) << j.dump();
    EXPECT_FALSE(cache.get_probe(sha, "bnb-nf4", settings));
    j["version"] = 2;  // the same fields under the new version: incomplete, not a measurement either
    std::ofstream(cache.path(sha, "bnb-nf4", settings, "probe"), std::ios::trunc) << j.dump();
    EXPECT_FALSE(cache.get_probe(sha, "bnb-nf4", settings));
    ASSERT_TRUE(cache.put_probe(sha, "bnb-nf4", settings, p).ok());
  }

  Evaluation e;
  e.ok = true;
  e.kl_mean = 0.25;
  e.windows = 16;
  ASSERT_TRUE(cache.put_eval(sha, "bnb-nf4", settings, e).ok());
  auto ge = cache.get_eval(sha, "bnb-nf4", settings);
  ASSERT_TRUE(ge.has_value());
  EXPECT_EQ(ge->kl_mean, 0.25);

  // What an interrupted writer could leave, or a damaged file: a torn copy
  // at the final name (as if written in place), an entry without
  // "complete", a temporary file: none is taken for a measurement.
  const std::string path = cache.path(sha, "bnb-nf4", settings, "eval");
  std::string whole;
  {
    std::ifstream f(path);
    whole.assign(std::istreambuf_iterator<char>(f), {});
  }
  for (size_t cut : {whole.size() / 2, whole.size() - 3}) {
    std::ofstream(path, std::ios::trunc) << whole.substr(0, cut);
    EXPECT_FALSE(cache.get_eval(sha, "bnb-nf4", settings)) << cut;
  }
  std::ofstream(path, std::ios::trunc) << R"({"version": 1, "kind": "eval", "value": {}})";
  EXPECT_FALSE(cache.get_eval(sha, "bnb-nf4", settings));
  std::ofstream(path + ".tenpak-tmp-1", std::ios::trunc) << whole;
  fs::remove(path);
  EXPECT_FALSE(cache.get_eval(sha, "bnb-nf4", settings));
  // A later put replaces whatever is there.
  ASSERT_TRUE(cache.put_eval(sha, "bnb-nf4", settings, e).ok());
  EXPECT_TRUE(cache.get_eval(sha, "bnb-nf4", settings));
  // A cache directory that cannot be created: an error, not a crash.
  MeasurementCache bad("/proc/tenpak-no-such-dir");
  EXPECT_FALSE(bad.put_eval(sha, "x", settings, e).ok());
  fs::remove_all(dir);
}

TEST(OptimizeCache, AnInterruptedSearchKeepsWhatItFinishedAndTheNextRunReusesIt) {
  const fs::path dir = fs::temp_directory_path() / ("tenpak_opt_cache2_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  MeasurementCache cache(dir.string());
  std::mt19937 rng(17);
  auto v = realistic(rng, 16, 4);
  std::vector<CandidateSpec> specs;
  for (auto& s : v) specs.push_back(s.spec);
  const std::string sha(64, 'c'), settings = "s";
  int measured = 0;
  SearchCallbacks cb;
  // Measures through the cache as tenpak-ml does; the 5th measurement is
  // "interrupted" (the process would die here: nothing of it is written).
  cb.probe = [&](size_t i) -> Result<Probe> {
    if (auto h = cache.get_probe(sha, specs[i].name, settings)) return *h;
    if (++measured == 5) return Status{Errc::io, "interrupted"};
    TP_RETURN_IF_ERROR(cache.put_probe(sha, specs[i].name, settings, v[i].probe));
    return v[i].probe;
  };
  cb.evaluate = [&](size_t i) -> Result<Evaluation> {
    if (auto h = cache.get_eval(sha, specs[i].name, settings)) return *h;
    if (++measured == 5) return Status{Errc::io, "interrupted"};
    TP_RETURN_IF_ERROR(cache.put_eval(sha, specs[i].name, settings, v[i].eval));
    return v[i].eval;
  };
  Constraints c;
  c.max_kld = 0.05;
  auto first = search(specs, c, gpu(), cost_model(), shape(), 16, true, cb);
  ASSERT_FALSE(first.ok());
  int entries = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) ++entries;
  EXPECT_EQ(entries, 4);
  const int before = measured;
  auto second = search(specs, c, gpu(), cost_model(), shape(), 16, true, cb);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(measured - before, 10 + 9 - 4);  // 10 probes, 9 evaluations (none for the unquantized model), 4 cached
  auto third = search(specs, c, gpu(), cost_model(), shape(), 16, true, cb);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->winner, second->winner);
  fs::remove_all(dir);
}
