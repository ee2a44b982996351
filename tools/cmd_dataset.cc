// tenpak dataset build|apply|verify|inspect|estimate, and the seeds'
// spellings `tenpak delta compress` and `tenpak delta-dataset compress`.
// apply, verify and inspect are the delta commands' own code paths: a
// dataset delta is an ordinary delta whose frames use codec 10 (patch).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "tenpak/dataset.h"

namespace tenpak::cli {
namespace {

using json = nlohmann::ordered_json;

json report_json(const DatasetBuildReport& r) {
  const BuildReport& b = r.build;
  json j = {{"derived_bytes", b.finetune_bytes},
            {"delta_bytes", b.delta_bytes},
            {"ratio", b.finetune_bytes ? static_cast<double>(b.delta_bytes) / b.finetune_bytes : 0.0},
            {"index_bytes", b.index_bytes},
            {"frames", b.frames},
            {"seconds", b.seconds},
            {"estimated", b.estimated}};
  json files = json::array();
  for (size_t i = 0; i < b.files.size(); ++i) {
    const auto& f = b.files[i];
    const auto& d = r.files[i];
    files.push_back({{"name", f.name}, {"bytes", f.out_bytes}, {"delta_bytes", f.delta_bytes}, {"frames", f.frames},
                     {"mode", d.mode}, {"base", d.base}, {"records", d.records}, {"copied", d.exact},
                     {"edited", d.edited}, {"new", d.fresh}});
  }
  j["files"] = files;
  return j;
}

void print_report(const DatasetBuildReport& r, const std::string& verb) {
  const BuildReport& b = r.build;
  double ratio = b.finetune_bytes ? static_cast<double>(b.delta_bytes) / b.finetune_bytes : 0.0;
  std::printf("%s: %s derived -> %s delta (%.4f of the derived set, %.1f%% saved) in %.2f s (%.1f MB/s)\n",
              verb.c_str(), human_bytes(b.finetune_bytes).c_str(), human_bytes(b.delta_bytes).c_str(), ratio,
              (1 - ratio) * 100, b.seconds, b.seconds > 0 ? b.finetune_bytes / b.seconds / 1e6 : 0.0);
  for (size_t i = 0; i < b.files.size(); ++i) {
    const auto& f = b.files[i];
    const auto& d = r.files[i];
    std::printf("  %-40s %10s -> %10s  %-16s vs %-24s %llu units: %llu copied, %llu edited, %llu new\n",
                f.name.c_str(), human_bytes(f.out_bytes).c_str(), human_bytes(f.delta_bytes).c_str(), d.mode.c_str(),
                d.base.empty() ? "(no base file)" : d.base.c_str(), (unsigned long long)d.records,
                (unsigned long long)d.exact, (unsigned long long)d.edited, (unsigned long long)d.fresh);
  }
}

struct Opts {
  std::string base, derived, out, dir;
  int level = 19;
  bool fast = false;
  unsigned sample = 8;
  bool json_out = false;
  unsigned threads = 0;
  std::vector<std::string> base_locations;
};

int do_build(const Opts& o, bool estimate) {
  DatasetBuildOptions b;
  b.zstd_level = o.fast ? 6 : o.level;
  b.threads = o.threads;
  b.base_locations = o.base_locations;
  if (estimate) b.sample_every = o.sample;
  ProgressBar bar(estimate ? "estimate" : "build");
  b.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto r = estimate ? estimate_dataset_delta(o.base, o.derived, b) : build_dataset_delta(o.base, o.derived, o.out, b);
  bar.finish();
  if (!r.ok()) return fail(r.status());
  if (o.json_out) std::cout << report_json(*r).dump(2) << "\n";
  else print_report(*r, estimate ? "estimate" : "built " + o.out);
  return kOk;
}

void add_build(CLI::App* b, Opts& o, int& rc, bool output_required = true) {
  b->add_option("BASE", o.base, "Base data set: a file or a directory of files")->required();
  b->add_option("DERIVED", o.derived, "Derived data set: a file or a directory of files")->required();
  b->add_option("-o,--output", o.out, "Delta directory to create (must not exist or be empty)")->required();
  b->add_option("-l,--level", o.level, "zstd level for new bytes (1-19; default 19)")->check(CLI::Range(1, 19));
  b->add_flag("--fast", o.fast, "zstd level 6 for new bytes: builds several times faster, a larger delta");
  b->add_option("--base-location", o.base_locations,
                "Where the base can be found, recorded in the delta; repeat for mirrors. Default: the absolute "
                "path of BASE (its directory for a file)");
  b->add_flag("--json", o.json_out, "Print a JSON report on stdout");
  b->add_option("-j,--threads", o.threads, "Worker threads (default: all cores)");
  b->callback([&o, &rc] {
    tune_malloc_for_rebuilds();
    rc = do_build(o, false);
  });
}

}  // namespace

void add_dataset_commands(CLI::App& app, int& rc) {
  static Opts o;
  auto* ds = app.add_subcommand("dataset", "Build, apply, verify, inspect and estimate data set deltas");
  ds->require_subcommand(1);
  auto common = [&](CLI::App* s) {
    s->add_flag("--json", o.json_out, "Print a JSON report on stdout");
    s->add_option("-j,--threads", o.threads, "Worker threads (default: all cores)");
  };
  add_build(ds->add_subcommand("build", "Build a delta of DERIVED against BASE (records matched, new bytes compressed "
                                        "against the base)"),
            o, rc);

  auto* a = ds->add_subcommand("apply", "Rebuild the derived data set from DELTA and its base, to disk");
  a->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  a->add_option("--base", o.base, "Base data set (default: the locations recorded in the delta)");
  a->add_option("-o,--output", o.out, "Output directory to create (must not exist or be empty)")->required();
  common(a);
  a->callback([&] {
    tune_malloc_for_rebuilds();
    rc = run_delta_apply(o.dir, o.base, o.out, o.json_out, o.threads);
  });

  auto* v = ds->add_subcommand("verify", "Rebuild in memory and check every frame hash and file sha256");
  v->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  v->add_option("--base", o.base, "Base data set (default: the locations recorded in the delta)");
  common(v);
  v->callback([&] {
    tune_malloc_for_rebuilds();
    rc = run_delta_apply(o.dir, o.base, "", o.json_out, o.threads);
  });

  auto* i = ds->add_subcommand("inspect", "Show per file codecs and sizes");
  i->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  common(i);
  i->callback([&] { rc = run_delta_inspect(o.dir, o.json_out, o.threads); });

  auto* e = ds->add_subcommand("estimate", "Estimate the delta size without writing, by encoding one frame in N");
  e->add_option("BASE", o.base, "Base data set")->required();
  e->add_option("DERIVED", o.derived, "Derived data set")->required();
  e->add_option("-s,--sample", o.sample, "Encode one frame in N (1 encodes all)")->check(CLI::Range(1, 1000));
  e->add_option("-l,--level", o.level, "zstd level for new bytes")->check(CLI::Range(1, 19));
  common(e);
  e->callback([&] { rc = do_build(o, true); });

  // The seeds' spellings of `dataset build`.
  CLI::App* delta = nullptr;
  try {
    delta = app.get_subcommand("delta");
  } catch (const CLI::OptionNotFound&) {
  }
  if (delta)
    add_build(delta->add_subcommand("compress", "Same as `tenpak dataset build BASE DERIVED -o DIR`"), o, rc);
  auto* dd = app.add_subcommand("delta-dataset", "Same as `tenpak dataset` (the spelling of earlier scripts)");
  dd->require_subcommand(1);
  add_build(dd->add_subcommand("compress", "Same as `tenpak dataset build BASE DERIVED --output DIR`"), o, rc);
}

}  // namespace tenpak::cli
