// tenpak quantize / presets: the quantization presets (quant/, docs/QUANT_FORMATS.md).
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "ml_commands.h"
#include "tenpak/quant.h"

namespace tenpak::ml {
namespace {

struct QuantizeArgs {
  std::string model, preset, out, calib;
  int64_t samples = 64, seq_len = 256;
  int threads = 2;
  bool act_order = false, no_act_order = false, json = false, quantize_head = false;
  // Unset: the preset's own choice (quant::Preset::gptq_*).
  std::optional<bool> static_groups, mse;
  std::optional<double> damp;
  std::optional<int> search;
  std::optional<double> search_shrink;
};

int run_quantize(const QuantizeArgs& a) {
  auto p = quant::find_preset(a.preset);
  if (!p.ok()) return cli::fail(p.status());
  if (a.threads > 0) {
    torch::set_num_threads(a.threads);
    torch::set_num_interop_threads(1);
  }
  quant::QuantizeOptions opt;
  opt.calib_samples = a.samples;
  opt.seq_len = a.seq_len;
  opt.act_order = a.act_order;
  if (a.no_act_order) opt.desc_act = false;
  opt.quantize_head = a.quantize_head;
  if (a.static_groups) opt.static_groups = *a.static_groups;
  if (a.mse) opt.mse = *a.mse;
  if (a.damp) opt.damp_percent = *a.damp;
  if (a.search) opt.search = *a.search;
  if (a.search_shrink) opt.search_shrink = *a.search_shrink;
  std::unique_ptr<cli::ProgressBar> bar;
  std::string stage;
  opt.progress = [&](const std::string& s, int64_t done, int64_t total) {
    if (s != stage) {
      if (bar) bar->finish();
      stage = s;
      bar = s == "done" ? nullptr : std::make_unique<cli::ProgressBar>("quantize " + s);
    }
    if (bar) bar->update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
  };
  auto r = quant::quantize_model_dir(a.model, *p, a.out, a.calib, opt);
  if (bar) bar->finish();
  if (!r.ok()) return cli::fail(r.status());
  const auto& q = r->model;
  int quantized = 0;
  for (auto& l : q.linears) quantized += l.quantized;
  if (a.json) {
    nlohmann::json j;
    j["output"] = a.out;
    j["preset"] = p->name;
    j["method"] = quant::method_name(p->method);
    j["quantization_config"] = q.quantization_config;
    j["linears_quantized"] = quantized;
    j["linears_total"] = q.linears.size();
    nlohmann::json skipped = nlohmann::json::array();
    for (auto& l : q.linears)
      if (!l.quantized) skipped.push_back({{"name", l.name}, {"reason", l.reason}});
    j["skipped"] = skipped;
    // The loss-aware search's layer objectives (GPTQ with --search > 0).
    nlohmann::json objectives = nlohmann::json::object(), fell_back = nlohmann::json::array();
    for (auto& l : q.linears) {
      if (l.gptq_objective >= 0) objectives[l.name] = l.gptq_objective;
      if (l.search_fell_back) fell_back.push_back(l.name);
    }
    if (!objectives.empty()) j["gptq_search"] = {{"objective", objectives}, {"fell_back_to_plain", fell_back}};
    j["modified_unquantized"] = q.modified;
    j["calibration_tokens"] = q.calib_tokens;
    j["input_bytes"] = r->input_bytes;
    j["output_bytes"] = r->output_bytes;
    j["seconds"] = r->seconds;
    std::cout << cli::json_text(j, 2) << "\n";
  } else {
    std::fprintf(stderr, "%s: %d of %zu linears quantized, %s -> %s (%.1f%%) in %.1f s%s\n", p->name.c_str(),
                 quantized, q.linears.size(), cli::human_bytes(r->input_bytes).c_str(),
                 cli::human_bytes(r->output_bytes).c_str(),
                 r->input_bytes ? 100.0 * r->output_bytes / r->input_bytes : 0.0, r->seconds,
                 q.calib_tokens ? (", " + std::to_string(q.calib_tokens) + " calibration tokens").c_str() : "");
    std::string last;
    for (auto& l : q.linears)
      if (!l.quantized && l.reason != last) {
        std::fprintf(stderr, "  kept in float: %s... (%s)\n", l.name.c_str(), l.reason.c_str());
        last = l.reason;
      }
    std::printf("%s\n", a.out.c_str());
  }
  return cli::kOk;
}

int run_presets(bool json) {
  auto measured = quant::load_measured();
  nlohmann::json all = nlohmann::json::array();
  for (auto& p : quant::presets()) all.push_back(quant::preset_json(p, measured));
  if (json) {
    nlohmann::json j;
    j["presets"] = all;
    j["rtn_baseline"] = "rtn-<bits>bit-<group>g (bits 2/3/4/8): round to nearest, GPTQ format";
    j["measured_source"] = measured.is_null() ? nlohmann::json(nullptr) : measured.value("source", nlohmann::json());
    std::cout << cli::json_text(j, 2) << "\n";
    return cli::kOk;
  }
  std::printf("%-15s %-13s %4s %5s %7s %-6s %s\n", "preset", "family", "bits", "group", "bits/w", "calib",
              "measured on stories260K (KL vs fp32, ppl ratio, size vs fp16)");
  for (auto& j : all) {
    std::string m = "not measured yet (bench/quant_bench.sh)";
    if (j["measured"].is_object()) {
      const auto& x = j["measured"];
      char buf[200];
      std::snprintf(buf, sizeof buf, "KL %.4f, ppl x%.4f, top-1 %.1f%%, %.0f%% of fp16",
                    x.value("kl_mean", 0.0), x.value("ppl_ratio", 0.0), 100 * x.value("top1", 0.0),
                    100 * x.value("size_vs_fp16", 0.0));
      m = buf;
    }
    std::printf("%-15s %-13s %4d %5lld %7.3f %-6s %s\n", j["name"].get<std::string>().c_str(),
                j["family"].get<std::string>().c_str(), j["bits"].get<int>(), (long long)j["group_size"].get<int64_t>(),
                j["bits_per_weight"].get<double>(), j["calibration"].get<bool>() ? "yes" : "no", m.c_str());
  }
  std::printf("\n");
  for (auto& j : all) {
    std::printf("%s: %s\n  %s\n  CLI:    %s\n  Python: %s\n", j["name"].get<std::string>().c_str(),
                j["use_case"].get<std::string>().c_str(), j["quantize"].get<std::string>().c_str(),
                j["cli"].get<std::string>().c_str(), j["python"].get<std::string>().c_str());
    for (auto& l : j["loaders"])
      std::printf("  loader: %s (%s)\n", l["loader"].get<std::string>().c_str(), l["how"].get<std::string>().c_str());
  }
  std::printf("\nBaseline: rtn-<bits>bit-<group>g (round to nearest, GPTQ format), e.g. rtn-4bit-128g.\n");
  return cli::kOk;
}

}  // namespace

void add_quant_commands(CLI::App& app, int& rc) {
  auto qa = std::make_shared<QuantizeArgs>();
  auto* q = app.add_subcommand("quantize", "quantize a model directory with a preset (GPTQ, AWQ, bitsandbytes, RTN)");
  q->add_option("MODEL_DIR", qa->model, "model directory (config.json, *.safetensors, tokenizer)")->required();
  q->add_option("--preset", qa->preset, "preset name (`tenpak presets` lists them; rtn-<bits>bit-<group>g)")->required();
  q->add_option("-o,--output", qa->out, "output directory (must not exist)")->required();
  q->add_option("--calib", qa->calib, "calibration text (GPTQ and AWQ presets)");
  q->add_option("--calib-samples", qa->samples, "calibration windows (default 64)");
  q->add_option("--seq-len", qa->seq_len, "tokens per calibration window (default 256, at most max_position)");
  q->add_flag("--act-order", qa->act_order,
              "GPTQ: quantize input channels by decreasing Hessian diagonal (desc_act; off in the presets)");
  q->add_flag("--no-act-order", qa->no_act_order, "GPTQ: input channels in their order");
  q->add_option("--threads", qa->threads, "CPU threads (default 2)");
  q->add_flag("--quantize-head", qa->quantize_head,
              "quantize lm_head too (unties a tied embedding; GPTQ/RTN and bitsandbytes presets, not AWQ)");
  q->add_option("--static-groups", qa->static_groups,
                "GPTQ: group scales from the original weights, contiguous groups even with --act-order (true/false; "
                "default false)");
  q->add_option("--mse", qa->mse, "choose group ranges by GPTQ's clipping search (true/false; default true for gptq-*, false for rtn-*)");
  q->add_option("--search", qa->search,
                "GPTQ: candidates per group of the loss-aware range search (0: off; default 80 for gptq-*)");
  q->add_option("--search-shrink", qa->search_shrink,
                "GPTQ: the search's ranges are shrunk by k * S / N, k < N (default 0.8 for gptq-*: with --search 80, "
                "AutoGPTQ's mse grid 1 - k/100)")
      ->check(CLI::Range(0.01, 0.99));
  q->add_option("--damp", qa->damp, "GPTQ: dampening, fraction of the mean Hessian diagonal (default 0.01)");
  q->add_flag("--json", qa->json, "print a JSON report");
  q->callback([qa, &rc] { rc = run_quantize(*qa); });

  auto pj = std::make_shared<bool>(false);
  auto* ps = app.add_subcommand("presets", "list the quantization presets, their loaders and measured quality");
  ps->add_flag("--json", *pj, "print JSON");
  ps->callback([pj, &rc] { rc = run_presets(*pj); });
}

}  // namespace tenpak::ml
