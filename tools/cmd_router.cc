// tenpak route, tenpak router eval (and router train, handed to tenpak-ml):
// the prompt router (router/include/tenpak/router.h). No libtorch here.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "ml_dispatch.h"
#include "tenpak/router.h"
#include "tenpak/router_catalog.h"
#include "tenpak/router_data.h"

namespace tenpak::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace tenpak::router;

struct RouteArgs {
  std::string model, prompt, catalog, router, batch;
  double threshold = 0.85;
  bool json = false;
};

struct EvalArgs {
  std::vector<std::string> data, routers;
  std::string plot;
  uint32_t kfold = 0;
  uint64_t seed = 1;
  int random_runs = 100;
  bool json = false;
};

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

json option_json(const ServeOption& o) {
  json j = {{"model", o.model->name}, {"label", o.label()}, {"price_per_mtok", o.price_per_mtok}};
  if (o.gpu) {
    j["quantization"] = o.quant->name;
    j["gpu"] = o.gpu->name;
    j["gpus"] = o.gpus;
    j["tokens_per_s"] = o.tokens_per_s;
  } else {
    j["api"] = true;
  }
  return j;
}

// What drove the prediction: the largest contributions to the logit, named.
json drivers(const RouterModel& m, const std::string& prompt, size_t k) {
  std::vector<std::pair<uint32_t, std::string>> names;
  Features f = extract_features(prompt, m.hash_bits, &names);
  json out = json::array();
  const uint32_t H = 1u << m.hash_bits;
  for (auto& [idx, c] : m.top_contributions(f, k)) {
    std::string what;
    if (idx >= H) {
      what = dense_name(static_cast<int>(idx - H));
    } else {
      for (auto& [b, t] : names)
        if (b == idx) { what = "\"" + t + "\""; break; }
    }
    out.push_back({{"feature", what}, {"logit", c}});
  }
  return out;
}

Result<json> route_one(const RouterModel& m, const Catalog& cat, const std::string& model, const std::string& prompt,
                       double threshold) {
  TP_RETURN_IF_ERROR(validate_prompt(prompt));
  Features f = extract_features(prompt, m.hash_bits);
  double p = m.predict(f);
  int category = prompt_category(prompt);
  auto r = recommend(cat, model, category, p, m.p_ref, threshold);
  if (!r.ok()) return r.status();
  json j = {{"requested", option_json(r->requested)},
            {"recommended", option_json(r->recommended)},
            {"saving", r->saving},
            {"category", kCategories[category]},
            {"p_needs_strong", p},
            {"p_reference", m.p_ref},
            {"predicted_relative_quality", r->predicted_quality},
            {"quality_threshold", threshold},
            {"drivers", drivers(m, prompt, 5)}};
  return j;
}

void print_route(const json& j) {
  auto line = [](const char* what, const json& o) {
    std::printf("%-13s %-40s $%s per million tokens\n", what, o["label"].get<std::string>().c_str(),
                fmt(o["price_per_mtok"].get<double>() < 1 ? "%.3f" : "%.2f", o["price_per_mtok"].get<double>()).c_str());
  };
  line("Requested:", j["requested"]);
  line("Recommended:", j["recommended"]);
  double s = j["saving"].get<double>();
  if (s > 0) std::printf("Saving:       %s%% cheaper\n", fmt("%.1f", 100 * s).c_str());
  else std::printf("Saving:       none: no cheaper option is predicted to reach the quality threshold\n");
  std::printf("Why:          P(needs the strong model) = %s (an average training prompt: %s); category %s;\n"
              "              predicted quality relative to the requested model for this prompt %s (threshold %s)\n",
              fmt("%.3f", j["p_needs_strong"].get<double>()).c_str(), fmt("%.3f", j["p_reference"].get<double>()).c_str(),
              j["category"].get<std::string>().c_str(), fmt("%.3f", j["predicted_relative_quality"].get<double>()).c_str(),
              fmt("%.2f", j["quality_threshold"].get<double>()).c_str());
  std::printf("Drivers:     ");
  for (auto& d : j["drivers"])
    std::printf(" %s (%s)", d["feature"].get<std::string>().c_str(), fmt("%+.2f", d["logit"].get<double>()).c_str());
  std::printf("\n");
}

Result<RouterModel> load_router_arg(const std::string& path) { return path.empty() ? default_router() : load_router(path); }

int run_route(const RouteArgs& a) {
  if (a.threshold < 0 || a.threshold > 1) return fail({Errc::invalid, "--quality-threshold must be within [0, 1]"});
  auto cat = a.catalog.empty() ? default_catalog() : load_catalog(a.catalog);
  if (!cat.ok()) return fail(cat.status());
  if (!cat->find_model(a.model.substr(0, a.model.find('@'))))
    return fail({Errc::invalid, "unknown model \"" + a.model + "\"; the catalog (" + cat->source + ") has: " + cat->model_list()});
  if (a.batch.empty())
    if (auto st = validate_prompt(a.prompt); !st.ok()) return fail(st);
  auto m = load_router_arg(a.router);
  if (!m.ok()) return fail(m.status());
  if (a.batch.empty()) {
    auto j = route_one(*m, *cat, a.model, a.prompt, a.threshold);
    if (!j.ok()) return fail(j.status());
    if (a.json) std::printf("%s\n", json_text(*j, -1).c_str());
    else print_route(*j);
    return kOk;
  }
  if (!a.prompt.empty()) return fail({Errc::invalid, "give either a PROMPT or --batch, not both"});
  std::ifstream in(a.batch);
  if (!in) return fail({Errc::io, a.batch + ": cannot open"});
  // One JSON line out per input line that holds a prompt; a bad line gets an
  // error line (file and line named) and the rest still run; exit 2 or 4 then.
  int rc = kOk;
  std::string l;
  for (uint64_t line = 1; std::getline(in, l); ++line) {
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = a.batch + ":" + std::to_string(line);
    json in_j = json::parse(l, nullptr, false);
    json out;
    if (in_j.is_discarded() || !in_j.is_object() || !in_j.contains("prompt") || !in_j["prompt"].is_string()) {
      out = {{"line", line}, {"error", where + ": expected a JSON object with a string \"prompt\""}};
      rc = kCorrupt;
    } else {
      std::string model = in_j.contains("model") && in_j["model"].is_string() ? in_j["model"].get<std::string>() : a.model;
      auto j = route_one(*m, *cat, model, in_j["prompt"].get<std::string>(), a.threshold);
      if (j.ok()) {
        out = std::move(*j);
        out["line"] = line;
        if (in_j.contains("id")) out["id"] = in_j["id"];
      } else {
        out = {{"line", line}, {"error", where + ": " + j.status().message()}};
        if (rc == kOk) rc = exit_code(j.status());
      }
    }
    std::printf("%s\n", json_text(out, -1).c_str());
  }
  if (in.bad()) return fail({Errc::io, a.batch + ": read error"});
  return rc;
}

// ---- router eval --------------------------------------------------------

struct Method {
  std::string name;
  RoutingCurve curve;
};

Status write_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tenpak-tmp-" + std::to_string(::getpid());
  {
    std::ofstream o(tmp, std::ios::binary);
    o << bytes;
    o.flush();
    if (!o) {
      std::remove(tmp.c_str());
      return {Errc::io, path + ": cannot write"};
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return {Errc::io, path + ": cannot rename into place"};
  }
  return Status::Ok();
}

std::string svg_plot(const std::vector<Method>& ms, const std::string& title) {
  const double W = 720, Hh = 460, L = 70, R = 220, T = 40, B = 60;
  double lo = 1, hi = 0;
  for (auto& m : ms)
    for (double a : m.curve.accuracy) { lo = std::min(lo, a); hi = std::max(hi, a); }
  double pad = std::max(0.01, (hi - lo) * 0.05);
  lo = std::max(0.0, lo - pad);
  hi = std::min(1.0, hi + pad);
  auto X = [&](double f) { return L + f * (W - L - R); };
  auto Y = [&](double a) { return T + (hi - a) / (hi - lo) * (Hh - T - B); };
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << Hh << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << L << "\" y=\"22\" font-size=\"14\">" << title << "</text>\n";
  for (int i = 0; i <= 10; ++i) {
    double f = i / 10.0, a = lo + (hi - lo) * i / 10.0;
    s << "<line x1=\"" << X(f) << "\" y1=\"" << T << "\" x2=\"" << X(f) << "\" y2=\"" << Hh - B << "\" stroke=\"#eee\"/>\n"
      << "<text x=\"" << X(f) << "\" y=\"" << Hh - B + 16 << "\" text-anchor=\"middle\">" << fmt("%.1f", f) << "</text>\n"
      << "<line x1=\"" << L << "\" y1=\"" << Y(a) << "\" x2=\"" << W - R << "\" y2=\"" << Y(a) << "\" stroke=\"#eee\"/>\n"
      << "<text x=\"" << L - 6 << "\" y=\"" << Y(a) + 4 << "\" text-anchor=\"end\">" << fmt("%.3f", a) << "</text>\n";
  }
  s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << Hh - T - B << "\" fill=\"none\" stroke=\"#333\"/>\n"
    << "<text x=\"" << X(0.5) << "\" y=\"" << Hh - 18 << "\" text-anchor=\"middle\">fraction of prompts sent to the strong model</text>\n"
    << "<text transform=\"translate(18," << (T + Hh - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">accuracy</text>\n";
  for (size_t i = 0; i < ms.size(); ++i) {
    const auto& acc = ms[i].curve.accuracy;
    const size_t n = acc.size() - 1, step = std::max<size_t>(1, n / 400);
    s << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << colors[i % 6] << "\" points=\"";
    for (size_t k = 0; k <= n; k += step) s << X(double(k) / n) << "," << Y(acc[k]) << " ";
    s << X(1) << "," << Y(acc[n]) << "\"/>\n";
    double ly = T + 16 + 36 * i;
    s << "<line x1=\"" << W - R + 12 << "\" y1=\"" << ly << "\" x2=\"" << W - R + 36 << "\" y2=\"" << ly << "\" stroke-width=\"2\" stroke=\"" << colors[i % 6] << "\"/>\n"
      << "<text x=\"" << W - R + 42 << "\" y=\"" << ly + 4 << "\">" << ms[i].name << "</text>\n"
      << "<text x=\"" << W - R + 42 << "\" y=\"" << ly + 20 << "\" fill=\"#555\">APGR " << fmt("%.3f", ms[i].curve.apgr)
      << ", CPT(50%) " << fmt("%.2f", ms[i].curve.cpt50) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

int run_eval(const EvalArgs& a) {
  std::vector<Example> ex;
  for (auto& p : a.data) {
    auto r = read_data(p);
    if (!r.ok()) return fail(r.status());
    std::move(r->begin(), r->end(), std::back_inserter(ex));
  }
  std::vector<RouterModel> models;
  std::vector<std::string> names = a.routers;
  if (names.empty()) names.push_back("");
  for (auto& n : names) {
    auto m = load_router_arg(n);
    if (!m.ok()) return fail(m.status());
    models.push_back(std::move(*m));
  }
  if (a.kfold && models.size() != a.kfold)
    return fail({Errc::invalid, "--kfold " + std::to_string(a.kfold) + " needs one --router per fold (router i scores fold i), got " +
                                    std::to_string(models.size())});
  if (!a.kfold && models.size() != 1) return fail({Errc::invalid, "several --router files need --kfold"});
  // A router trained on a file evaluated here (and not on a disjoint fold of
  // it) would be scored on what it saw: say so.
  if (!a.kfold) {
    auto meta = json::parse(models[0].meta, nullptr, false);
    if (meta.is_object() && meta.contains("data") && meta["data"].is_array()) {
      for (auto& d : meta["data"]) {
        if (!d.is_string()) continue;
        std::error_code ec;
        std::string trained = fs::weakly_canonical(d.get<std::string>(), ec).string();
        for (auto& p : a.data) {
          std::string evald = fs::weakly_canonical(p, ec).string();
          if (evald.rfind(trained, 0) == 0 || trained.rfind(evald, 0) == 0)
            std::fprintf(stderr, "tenpak: warning: the router was trained on %s, which overlaps %s: these scores are not held out\n",
                         d.get<std::string>().c_str(), p.c_str());
        }
      }
    }
  }
  std::vector<double> score(ex.size()), length(ex.size());
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < ex.size(); ++i) {
    if (auto st = validate_prompt(ex[i].prompt); !st.ok())
      return fail({Errc::corrupt, ex[i].file + ":" + std::to_string(ex[i].line) + ": " + st.message()});
    const RouterModel& m = models[a.kfold ? fold_of(ex[i].prompt, a.kfold) : 0];
    score[i] = m.predict(extract_features(ex[i].prompt, m.hash_bits));
    length[i] = static_cast<double>(ex[i].prompt.size());
  }
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / ex.size();
  std::vector<Method> ms = {{"router", routing_curve(score, ex)},
                            {"random", random_routing_curve(ex, a.seed, a.random_runs)},
                            {"length", routing_curve(length, ex)}};
  if (!a.plot.empty()) {
    std::string title = "tenpak router eval: " + std::to_string(ex.size()) + " prompts" + (a.kfold ? ", " + std::to_string(a.kfold) + "-fold" : "");
    if (auto st = write_atomic(a.plot, svg_plot(ms, title)); !st.ok()) return fail(st);
  }
  if (a.json) {
    json j = {{"prompts", ex.size()}, {"weak_accuracy", ms[0].curve.weak}, {"strong_accuracy", ms[0].curve.strong},
              {"us_per_prompt", us}, {"kfold", a.kfold}, {"methods", json::array()}};
    for (auto& m : ms) j["methods"].push_back({{"name", m.name}, {"apgr", m.curve.apgr}, {"cpt50", m.curve.cpt50}, {"cpt80", m.curve.cpt80}});
    std::printf("%s\n", json_text(j, -1).c_str());
    return kOk;
  }
  std::printf("%zu prompts%s; weak accuracy %.3f, strong %.3f\n", ex.size(), a.kfold ? (", " + std::to_string(a.kfold) + "-fold (router i scores fold i)").c_str() : "",
              ms[0].curve.weak, ms[0].curve.strong);
  std::printf("%-8s %6s %9s %9s\n", "method", "APGR", "CPT(50%)", "CPT(80%)");
  for (auto& m : ms) std::printf("%-8s %6.3f %9.3f %9.3f\n", m.name.c_str(), m.curve.apgr, m.curve.cpt50, m.curve.cpt80);
  std::printf("router latency: %.1f us per prompt (features + prediction, one core)\n", us);
  return kOk;
}

}  // namespace

void add_router_commands(CLI::App& app, int& rc) {
  auto ra = std::make_shared<RouteArgs>();
  auto* r = app.add_subcommand("route", "recommend the cheapest model and hardware that answers a prompt well enough");
  r->add_option("MODEL", ra->model, "the requested model (a catalog name; NAME@GPU for a given GPU)")->required();
  r->add_option("PROMPT", ra->prompt, "the prompt (or --batch)");
  r->add_option("--quality-threshold", ra->threshold, "minimum predicted quality relative to MODEL (0..1)")
      ->capture_default_str()
      ->check(finite_number());
  r->add_option("--catalog", ra->catalog, "catalog JSON (default: the built-in one, docs/ROUTER.md)");
  r->add_option("--router", ra->router, "router file (default: the built-in one)");
  r->add_option("--batch", ra->batch, "JSONL file of {\"prompt\": ..., \"model\"?: ..., \"id\"?: ...}: one JSON line out per prompt");
  r->add_flag("--json", ra->json, "print a JSON report");
  r->callback([ra, &rc] {
    if (ra->prompt.empty() && ra->batch.empty()) { rc = fail({Errc::invalid, "empty prompt (give PROMPT or --batch FILE.jsonl)"}); return; }
    rc = run_route(*ra);
  });

  auto* group = app.add_subcommand("router", "train (tenpak-ml) and evaluate the prompt router");
  group->require_subcommand(1);
  auto ea = std::make_shared<EvalArgs>();
  auto* e = group->add_subcommand("eval", "APGR, CPT(50%), CPT(80%) of a router beside random and length routing");
  e->add_option("DATA", ea->data, "RouteLLM *.csv, MT-Bench *judgement*.jsonl, or directories of them")->required();
  e->add_option("--router", ea->routers, "router file (default: the built-in one); with --kfold K, K files: router i scores fold i");
  e->add_option("--kfold", ea->kfold, "cross-validation: fold of a prompt = hash of its text mod K (as router train --kfold)")->check(CLI::Range(2, 100));
  e->add_option("--plot", ea->plot, "SVG of accuracy against the fraction of strong calls");
  e->add_option("--seed", ea->seed, "seed of the random-routing baseline")->capture_default_str();
  e->add_option("--random-runs", ea->random_runs, "random routings averaged")->capture_default_str()->check(CLI::Range(1, 100000));
  e->add_flag("--json", ea->json, "print a JSON report");
  e->callback([ea, &rc] { rc = run_eval(*ea); });
  add_ml_command(*group, "train", "learn a router file from labelled data (RouteLLM CSV, MT-Bench judgements)", rc);
}

}  // namespace tenpak::cli
