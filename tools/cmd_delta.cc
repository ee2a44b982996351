// tenpak delta build|apply|verify|inspect|estimate
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "locations.h"
#include "ml_dispatch.h"
#include "tenpak/delta.h"
#include "tenpak/lossy_info.h"
#include "tenpak/open_source.h"
#include "tenpak/safetensors.h"

namespace tenpak::cli {
namespace {

using json = nlohmann::ordered_json;

json report_json(const BuildReport& r, bool tensors) {
  json j = {{"finetune_bytes", r.finetune_bytes},
            {"delta_bytes", r.delta_bytes},
            {"ratio", r.finetune_bytes ? static_cast<double>(r.delta_bytes) / r.finetune_bytes : 0.0},
            {"index_bytes", r.index_bytes},
            {"frames", r.frames},
            {"tensors", r.tensors},
            {"tensors_matched", r.tensors_matched},
            {"tensors_identical", r.tensors_identical},
            {"seconds", r.seconds},
            {"estimated", r.estimated},
            {"followed_links", r.followed_links}};
  json files = json::array();
  for (auto& f : r.files)
    files.push_back({{"name", f.name}, {"bytes", f.out_bytes}, {"delta_bytes", f.delta_bytes}, {"frames", f.frames}});
  j["files"] = files;
  if (tensors) {
    json ts = json::array();
    for (auto& t : r.tensors_detail)
      ts.push_back({{"file", t.file}, {"name", t.name}, {"dtype", t.dtype}, {"match", t.match}, {"bytes", t.out_bytes},
                    {"delta_bytes", t.delta_bytes}, {"codecs", t.codecs}});
    j["tensor_list"] = ts;
  }
  return j;
}

void print_report(const BuildReport& r, const char* verb) {
  double ratio = r.finetune_bytes ? static_cast<double>(r.delta_bytes) / r.finetune_bytes : 0.0;
  std::printf("%s: %s fine-tune -> %s delta (%.4f of the fine-tune, %.1f%% saved) in %.2f s\n", verb,
              human_bytes(r.finetune_bytes).c_str(), human_bytes(r.delta_bytes).c_str(), ratio, (1 - ratio) * 100,
              r.seconds);
  std::printf("  %llu tensors, %llu matched to the base, %llu bit-identical; %llu frames, index %s\n",
              (unsigned long long)r.tensors, (unsigned long long)r.tensors_matched,
              (unsigned long long)r.tensors_identical, (unsigned long long)r.frames, human_bytes(r.index_bytes).c_str());
  for (auto& l : r.followed_links) std::printf("  followed symbolic link %s\n", l.c_str());
}

struct Common {
  bool json_out = false;
  unsigned threads = 0;
};

// A remote base (URL, hub id) is downloaded next to `near` first (estimate:
// "", the temporary directory; download_parent): build and estimate read
// all of it. Returns the local directory to use (`base`
// itself when local); `keep` owns the download.
Result<std::string> local_base(const std::string& base, const std::string& near, std::unique_ptr<DownloadedModel>& keep) {
  if (!is_remote_location(base)) return base;
  std::fprintf(stderr, "downloading the base model from %s ...\n", base.c_str());
  ProgressBar bar("download");
  auto d = download_model_dir(base, near, [&](uint64_t done, uint64_t total) { bar.update(done, total); });
  bar.finish();
  if (!d.ok()) return d.status();
  keep = std::move(d.value());
  // The URL of one file: that file, as a local file path would be.
  if (std::string file = remote_file_name(base); !file.empty()) return keep->dir() + "/" + file;
  return keep->dir();
}

int do_build(const std::string& base, const std::string& ft, const std::string& out, int level, bool fast,
             bool as_safetensors, const std::vector<std::string>& base_locations, const Common& c) {
  BuildOptions o;
  o.zstd_level = level;
  o.allow_ctx = !fast;
  o.as_safetensors = as_safetensors;
  o.base_locations = base_locations;
  // A remote base is recorded where it came from, not where it was downloaded.
  if (o.base_locations.empty() && is_remote_location(base)) o.base_locations = {base};
  // A delta is published: it never records credentials (give them at mount
  // time with --base, or through HF_TOKEN for the hub).
  for (auto& l : o.base_locations)
    if (redact_urls(l) != l)
      return fail(Status{Errc::unsupported, redact_urls(l) + ": a base location with credentials (user:password@) would be "
                                            "written into the delta; record it without them (--base-location) and give "
                                            "them at mount time (--base)"});
  o.threads = c.threads;
  std::unique_ptr<DownloadedModel> download;
  auto lb = local_base(base, out, download);
  if (!lb.ok()) return fail(lb.status());
  ProgressBar bar("build");
  o.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto r = build_delta(*lb, ft, out, o);
  bar.finish();
  if (!r.ok()) return fail(r.status());
  // --json names the files, whose names need not be UTF-8 (a delta holds
  // any safe relative path): such bytes are written as U+FFFD, where dump's
  // default threw, uncaught (abort, after the delta was written).
  if (c.json_out) std::cout << json_text(report_json(*r, false), 2) << "\n";
  else print_report(*r, ("built " + out).c_str());
  return kOk;
}

int do_estimate(const std::string& base, const std::string& ft, unsigned sample, int level, bool as_safetensors,
                const Common& c) {
  BuildOptions o;
  o.zstd_level = level;
  o.as_safetensors = as_safetensors;
  o.threads = c.threads;
  o.sample_every = sample;
  std::unique_ptr<DownloadedModel> download;
  auto lb = local_base(base, "", download);
  if (!lb.ok()) return fail(lb.status());
  ProgressBar bar("estimate");
  o.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto r = estimate_delta(*lb, ft, o);
  bar.finish();
  if (!r.ok()) return fail(r.status());
  if (c.json_out) std::cout << json_text(report_json(*r, false), 2) << "\n";
  else print_report(*r, "estimate");
  return kOk;
}

// The delta at `loc`: a local directory, or (URL, hub id) any location
// open_source takes, read without a persistent cache (a one-off rebuild).
Result<std::unique_ptr<DeltaReader>> open_any_delta(const std::string& loc) {
  return is_remote_location(loc) ? open_delta(loc, nullptr) : open_delta_dir(loc);
}

int do_apply(const std::string& delta, const std::string& base, const std::string& out, const Common& c) {
  auto r = open_any_delta(delta);
  if (!r.ok()) return fail(r.status());
  ApplyOptions o;
  o.threads = c.threads;
  const Manifest& man = (*r)->manifest();
  // A lossy delta's record (tenpak/lossy_info.h: checked against the index,
  // fetched from wherever the delta is): nullopt when there is none.
  auto lossy = load_lossy_info(delta, man);
  if (!lossy.ok()) return fail(lossy.status());
  if (!*lossy && has_approx_frames(man))
    std::fprintf(stderr, "warning: %s has lossy frames (codec 11) but no tenpak.lossy.json: its quality is unknown\n",
                 delta.c_str());
  if (!base.empty() && !is_remote_location(base)) {
    // A local base: sizes now, its sha256 beside the rebuild (nothing is
    // committed before it matched).
    Status st = attach_local_base(**r, base, false);
    if (!st.ok()) return fail(st);
    o.concurrent_check = [&man, &base] { return check_local_base_sha256(man, base); };
  } else {
    // A remote base, or the locations the delta records: sizes checked at
    // open, local files' sha256 too; remote ranges are checked by every
    // frame's hash and the output by its sha256.
    Status st = attach_base_from(**r, base, true, nullptr, {});
    if (!st.ok()) return fail(st);
  }
  ProgressBar bar(out.empty() ? "verify" : "rebuild");
  o.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto t0 = std::chrono::steady_clock::now();
  auto n = apply_delta(**r, out, o);
  bar.finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!n.ok()) return fail(n.status());
  const Manifest& m = (*r)->manifest();
  if (c.json_out) {
    json j = {{"ok", true}, {"files", m.out_files.size()}, {"frames", m.frames.size()}, {"bytes", *n}, {"seconds", secs}};
    if (!out.empty()) j["output"] = out;
    if (*lossy) j["lossy"] = json::parse((*lossy)->json);
    std::cout << json_text(j, 2) << "\n";
  } else if (out.empty()) {
    std::printf("verified %zu files, %zu frames, %s: every frame hash and file sha256 matches (%.2f s)\n",
                m.out_files.size(), m.frames.size(), human_bytes(*n).c_str(), secs);
    if (*lossy) std::printf("%s\n", lossy_summary_line(**lossy).c_str());
  } else {
    std::printf("rebuilt %zu files (%s) into %s; every sha256 matches (%.2f s)\n", m.out_files.size(),
                human_bytes(*n).c_str(), out.c_str(), secs);
  }
  return kOk;
}

// Reads the safetensors header of output file `fi` by rebuilding its first
// frames (headers never depend on the base).
Result<SafetensorsHeader> rebuilt_header(DeltaReader& r, uint32_t fi) {
  const auto& m = r.manifest();
  const OutFile& of = m.out_files[fi];
  auto read_range = [&](uint64_t off, uint64_t len, std::string& out) -> Status {
    auto [a, b] = r.frames_for(fi, off, len);
    std::string buf;
    uint64_t start = m.frames[a].out_offset;
    for (uint32_t k = a; k < b; ++k) {
      std::string fb(m.frames[k].out_len, '\0');
      TP_RETURN_IF_ERROR(r.read_frame(k, reinterpret_cast<uint8_t*>(fb.data())));
      buf += fb;
    }
    out = buf.substr(off - start, len);
    return Status::Ok();
  };
  std::string first;
  TP_RETURN_IF_ERROR(read_range(0, std::min<uint64_t>(8, of.size), first));
  auto n = safetensors_header_len(reinterpret_cast<const uint8_t*>(first.data()), of.size, of.name);
  if (!n.ok()) return n.status();
  std::string js;
  TP_RETURN_IF_ERROR(read_range(8, *n, js));
  return parse_safetensors_header(js.data(), *n, of.size, of.name);
}

int do_inspect(const std::string& delta, bool tensors, const Common& c) {
  auto r = open_any_delta(delta);
  if (!r.ok()) return fail(r.status());
  const Manifest& m = (*r)->manifest();
  // The index as stored: a local delta's tenpak.idx (version 1 or compact,
  // docs/FORMAT.md); elsewhere its version-1 size, which a compact index
  // (lossy deltas) is smaller than, or for an index with a lossy record
  // (which only the compact layout holds) its compact size as TenPak writes it.
  std::error_code ec;
  uint64_t idx_size = is_remote_location(delta) ? 0 : std::filesystem::file_size(std::filesystem::path(delta) / kIndexFile, ec);
  if (is_remote_location(delta) || ec) {
    auto compact = serialize_manifest_compact(m, true);
    idx_size = !m.lossy_record.empty() && compact.ok() ? compact->size() : serialize_manifest(m).size();
  }
  // An older lossy delta's side file is part of what a reader fetches.
  uint64_t side_size = 0;
  if (!is_remote_location(delta) && m.lossy_record.empty()) {
    std::error_code e2;
    const auto sz = std::filesystem::file_size(std::filesystem::path(delta) / kLossyFile, e2);
    if (!e2) side_size = sz;
  }
  uint64_t total_out = 0, total_delta = idx_size + side_size;
  json files = json::array();
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi) {
    const OutFile& of = m.out_files[fi];
    std::map<std::string, uint64_t> by_codec;
    uint64_t d = 0;
    for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
      d += m.frames[k].data_len;
      by_codec[codec_name(m.frames[k].codec)] += m.frames[k].out_len;
    }
    total_out += of.size;
    total_delta += d;
    json jf = {{"name", of.name}, {"bytes", of.size}, {"delta_bytes", d},
               {"ratio", of.size ? static_cast<double>(d) / of.size : 0.0}, {"frames", of.frame_count},
               {"sha256", hex(of.sha256)}, {"bytes_by_codec", by_codec}};
    if (tensors && of.name.size() > 12 && of.name.substr(of.name.size() - 12) == ".safetensors") {
      auto h = rebuilt_header(**r, fi);
      if (h.ok()) {
        json jt = json::array();
        for (auto& t : h->tensors) {
          auto [a, b] = (*r)->frames_for(fi, t.begin, t.nbytes());
          uint64_t td = 0;
          std::string codecs;
          for (uint32_t k = a; k < b; ++k) {
            const Frame& f = m.frames[k];
            if (f.out_offset < t.begin || f.out_offset >= t.end) continue;
            td += f.data_len;
            std::string cn = codec_name(f.codec);
            if (codecs.find(cn) == std::string::npos) codecs += (codecs.empty() ? "" : ",") + cn;
          }
          jt.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes()},
                        {"delta_bytes", td}, {"codecs", codecs}});
        }
        jf["tensors"] = jt;
      } else {
        jf["tensors_error"] = h.status().message();
      }
    }
    files.push_back(jf);
  }
  json base = json::array();
  for (auto& b : m.base_files) base.push_back({{"name", b.name}, {"bytes", b.size}, {"sha256", hex(b.sha256)}});
  auto lossy = load_lossy_info(delta, m);
  if (!lossy.ok()) return fail(lossy.status());
  json j = {{"delta", delta}, {"format_version", kFormatVersion}, {"finetune_bytes", total_out},
            {"delta_bytes", total_delta}, {"index_bytes", idx_size}, {"side_file_bytes", side_size},
            {"ratio", total_out ? static_cast<double>(total_delta) / total_out : 0.0},
            {"frames", m.frames.size()}, {"base_locations", m.base_locations}, {"base_files", base},
            {"files", files}};
  j["lossy"] = *lossy ? json::parse((*lossy)->json) : json(has_approx_frames(m));
  if (c.json_out) {
    std::cout << json_text(j, 2) << "\n";
    return kOk;
  }
  std::printf("delta %s (format v%u): %s -> %s (%.4f), %zu frames, index %s\n", delta.c_str(), kFormatVersion,
              human_bytes(total_out).c_str(), human_bytes(total_delta).c_str(),
              total_out ? static_cast<double>(total_delta) / total_out : 0.0, m.frames.size(),
              human_bytes(idx_size).c_str());
  if (*lossy) std::printf("%s\n", lossy_summary_line(**lossy).c_str());
  else if (has_approx_frames(m)) std::printf("LOSSY delta (codec 11 frames), no tenpak.lossy.json: quality unknown\n");
  std::printf("base: %zu files\n", m.base_files.size());
  for (auto& l : m.base_locations) std::printf("  at %s\n", l.c_str());
  for (auto& b : m.base_files) std::printf("  %-50s %12s  %s\n", b.name.c_str(), human_bytes(b.size).c_str(), hex(b.sha256).substr(0, 16).c_str());
  std::printf("%-50s %12s %12s %8s  codecs\n", "file", "size", "delta", "ratio");
  for (auto& f : files) {
    std::string codecs;
    for (auto& [k, v] : f["bytes_by_codec"].items()) codecs += k + " ";
    std::printf("%-50s %12s %12s %8.4f  %s\n", f["name"].get<std::string>().c_str(),
                human_bytes(f["bytes"].get<double>()).c_str(), human_bytes(f["delta_bytes"].get<double>()).c_str(),
                f["ratio"].get<double>(), codecs.c_str());
    if (f.contains("tensors"))
      for (auto& t : f["tensors"])
        std::printf("    %-46s %6s %12s %12s %8.4f  %s\n", t["name"].get<std::string>().c_str(),
                    t["dtype"].get<std::string>().c_str(), human_bytes(t["bytes"].get<double>()).c_str(),
                    human_bytes(t["delta_bytes"].get<double>()).c_str(),
                    t["bytes"].get<double>() ? t["delta_bytes"].get<double>() / t["bytes"].get<double>() : 0.0,
                    t["codecs"].get<std::string>().c_str());
    if (f.contains("tensors_error")) std::printf("    (tensors: %s)\n", f["tensors_error"].get<std::string>().c_str());
  }
  return kOk;
}

}  // namespace

int run_delta_apply(const std::string& delta, const std::string& base, const std::string& out, bool json, unsigned threads) {
  return do_apply(delta, base, out, Common{json, threads});
}
int run_delta_inspect(const std::string& delta, bool json, unsigned threads) {
  return do_inspect(delta, false, Common{json, threads});
}

void add_delta_commands(CLI::App& app, int& rc) {
  auto* delta = app.add_subcommand("delta", "Build, apply, verify, inspect and estimate model deltas");
  delta->require_subcommand(1);
  static Common c;
  static std::string base, ft, out, dir;
  static int level = 3;
  static unsigned sample = 8;
  static bool tensors = false;
  static bool as_safetensors = false;
  static const char* kAsSafetensors =
      "Serve PyTorch checkpoints of FINETUNED (.pt, .pth, .ckpt, pytorch_model*.bin) converted to safetensors "
      "(renamed, with a safetensors index and metadata: docs/CONVERTED_CHECKPOINTS.md) instead of bit for bit";
  auto common = [&](CLI::App* s) {
    s->add_flag("--json", c.json_out, "Print a JSON report on stdout");
    s->add_option("-j,--threads", c.threads, "Worker threads (default: all cores)");
  };

  auto* b = delta->add_subcommand("build", "Build a delta of FINETUNED against BASE");
  b->add_option("BASE", base,
                "Base model: directory, .safetensors or PyTorch checkpoint; or the http(s) URL / hub id of a base "
                "model directory (downloaded first, next to the output, and recorded as the base location)")
      ->required();
  b->add_option("FINETUNED", ft, "Fine-tuned model: directory, .safetensors or PyTorch checkpoint")->required();
  b->add_option("-o,--output", out, "Delta directory to create (must not exist or be empty)")->required();
  b->add_option("-l,--level", level, "zstd level for frame payloads (1-19)")->check(CLI::Range(1, 19));
  common(b);
  static bool fast = false;
  static std::vector<std::string> base_locations;
  b->add_flag("--fast", fast,
              "Skip the context-modelled codec (sub_ctx): a larger delta that rebuilds several times faster");
  b->add_option("--base-location", base_locations,
                "Where the base can be found, recorded in the delta (path, http(s) URL of the base directory or "
                "hub id org/name[@revision]); repeat for mirrors. Default: the absolute path of BASE");
  b->add_flag("--as-safetensors", as_safetensors, kAsSafetensors);
  // Lossy deltas are chosen and measured with libtorch: these options hand
  // the whole command to tenpak-ml (tools/ml/cmd_delta_lossy.cc, docs/LOSSY.md).
  static std::string lossy, eval_text, data_dir, calib_text, report, tune_loss;
  static double max_kld = -1, max_ppl = -1, tune_lr = 0, qat_lr = 0, qat_label_weight = 0;
  static bool lossy_emb = false, no_tune = false;
  static int tune_steps = 0, realloc = 0, qat_steps = 0, qat_batch = 0;
  static int64_t eval_ctx = 0, eval_chunks = 0;
  b->add_option("--lossy", lossy,
                "LOSSY delta: sparse:THRESHOLD, dare:P, bitdelta, qdelta:BITS or lowrank:R (with a target also auto, "
                "or a method name alone to sweep its setting); quality measured and recorded (tenpak-ml)");
  b->add_option("--eval-text", eval_text, "--lossy: text to measure on (default: held-out TinyShakespeare)");
  b->add_option("--max-kld", max_kld, "--lossy: smallest delta with mean KL divergence <= X (nats)");
  b->add_option("--max-ppl-delta", max_ppl, "--lossy: smallest delta with perplexity <= PCT % above the fine-tune's");
  b->add_flag("--lossy-embeddings", lossy_emb, "--lossy: approximate the embedding and LM head too");
  b->add_option("--eval-ctx", eval_ctx, "--lossy: window of the quality measurement");
  b->add_option("--eval-chunks", eval_chunks, "--lossy: windows to score (0: all)");
  b->add_option("--data-dir", data_dir, "--lossy: shared data folder of the default eval text");
  b->add_option("--calib-text", calib_text, "--lossy bitdelta: text its scales are tuned on (never the eval text)");
  b->add_flag("--no-tune", no_tune, "--lossy bitdelta: scales = mean |delta|, not tuned");
  b->add_option("--tune-steps", tune_steps, "--lossy bitdelta: Adam steps of the scale tuning");
  b->add_option("--tune-lr", tune_lr, "--lossy bitdelta: learning rate of the scale tuning");
  b->add_option("--tune-loss", tune_loss, "--lossy: what the scale tuning minimises, mse (default) or kl");
  b->add_option("--realloc", realloc, "--lossy gptqmix: N rounds of allocating again around the tuned allocation");
  b->add_option("--qat-steps", qat_steps,
                "--lossy gptqdelta/gptqmix: N steps of quantization-aware distillation of the codes (default 0: off)");
  b->add_option("--qat-lr", qat_lr, "--lossy: learning rate of --qat-steps' latents (grid steps)");
  b->add_option("--qat-batch", qat_batch, "--lossy: calibration windows per --qat-steps step");
  b->add_option("--qat-label-weight", qat_label_weight,
                "--lossy: weight of the calibration text's next tokens in --qat-steps' loss (with --tune-loss kl)");
  b->add_option("--report", report,
                "--lossy: write the build report (per-tensor choices, every candidate measured; not part of the "
                "delta) to FILE");
  b->callback([&] {
    if (!lossy.empty() || max_kld >= 0 || max_ppl >= 0 || lossy_emb || !eval_text.empty() || !calib_text.empty() ||
        no_tune || tune_steps || tune_lr || !report.empty() || !tune_loss.empty() || realloc ||
        qat_steps || qat_lr || qat_batch || qat_label_weight) {
      if (lossy.empty()) {
        rc = fail({Errc::invalid, "--max-kld, --max-ppl-delta, --eval-text, --lossy-embeddings, --calib-text, "
                                  "--no-tune, --tune-*, --realloc, --qat-* and --report need --lossy METHOD"});
        return;
      }
      rc = exec_ml();
      return;
    }
    tune_malloc_for_rebuilds();
    rc = do_build(base, ft, out, level, fast, as_safetensors, base_locations, c);
  });

  auto* a = delta->add_subcommand("apply", "Rebuild the fine-tuned model from DELTA and its base, to disk");
  a->add_option("DELTA", dir, "Delta directory (path, http(s) URL or hub id)")->required();
  a->add_option("--base", base,
                "Base model the delta was built against (path, URL or hub id; default: the locations recorded in "
                "the delta)");
  a->add_option("-o,--output", out, "Output directory to create (must not exist or be empty)")->required();
  common(a);
  a->callback([&] {
    tune_malloc_for_rebuilds();
    rc = do_apply(dir, base, out, c);
  });

  auto* v = delta->add_subcommand("verify", "Rebuild in memory and check every frame hash and file sha256");
  v->add_option("DELTA", dir, "Delta directory (path, http(s) URL or hub id)")->required();
  v->add_option("--base", base,
                "Base model the delta was built against (path, URL or hub id; default: the locations recorded in "
                "the delta)");
  common(v);
  v->callback([&] {
    tune_malloc_for_rebuilds();
    rc = do_apply(dir, base, "", c);
  });

  auto* i = delta->add_subcommand("inspect", "Show per file (and with --tensors, per tensor) codecs and sizes");
  i->add_option("DELTA", dir, "Delta directory (path, http(s) URL or hub id)")->required();
  i->add_flag("-t,--tensors", tensors, "List every tensor");
  common(i);
  i->callback([&] { rc = do_inspect(dir, tensors, c); });

  auto* e = delta->add_subcommand("estimate", "Estimate the delta size without writing, by sampling frames");
  e->add_option("BASE", base, "Base model (path, or URL / hub id of a model directory: downloaded to $TMPDIR first)")
      ->required();
  e->add_option("FINETUNED", ft, "Fine-tuned model")->required();
  e->add_option("-s,--sample", sample, "Encode one frame in N (1 encodes all)")->check(CLI::Range(1, 1000));
  e->add_option("-l,--level", level, "zstd level")->check(CLI::Range(1, 19));
  common(e);
  e->add_flag("--as-safetensors", as_safetensors, kAsSafetensors);
  e->callback([&] { rc = do_estimate(base, ft, sample, level, as_safetensors, c); });
}

}  // namespace tenpak::cli
