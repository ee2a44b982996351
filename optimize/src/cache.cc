// The measurement cache: one JSON file per (model, preset, settings, kind),
// written through a temporary file and a rename.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tenpak/hash.h"
#include "tenpak/optimize.h"
#include "tenpak/out_file.h"

namespace tenpak::opt {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// 2: probes carry this machine's measured peak RSS (local_peak_rss_bytes);
// version-1 entries lack it and are measured again, never read as 0.
constexpr int kVersion = 2;

// NaN and infinities are not JSON numbers: stored as null, read back as NaN.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double get(const json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) return std::nan("");
  if (!j[k].is_number()) throw std::runtime_error(std::string("field ") + k + " is not a number");
  return j[k].get<double>();
}

std::string settings_key(const std::string& settings) {
  auto h = sha256(settings.data(), settings.size());
  return hex(h.data(), 8);
}

std::optional<json> read_entry(const std::string& path, const char* kind) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  // Only a whole entry counts: the rename makes a torn one impossible, but a
  // file from elsewhere (or another version) is ignored all the same.
  if (j.is_discarded() || !j.is_object() || j.value("complete", false) != true || j.value("version", 0) != kVersion ||
      j.value("kind", "") != kind)
    return std::nullopt;
  return j;
}

}  // namespace

Status write_atomic(const std::string& path, const std::string& data) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return {Errc::io, fs::path(path).parent_path().string() + ": cannot create: " + ec.message()};
  return write_file_atomic(path, {{data.data(), data.size()}});
}

std::string MeasurementCache::default_dir() {
  if (const char* e = std::getenv("TENPAK_OPTIMIZE_CACHE"); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "tenpak" / "optimize").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "tenpak" / "optimize").string();
  return "";
}

std::string MeasurementCache::path(const std::string& model_sha, const std::string& preset,
                                   const std::string& settings, const std::string& kind) const {
  return (fs::path(dir_) / model_sha / (preset + "." + settings_key(settings) + "." + kind + ".json")).string();
}

json probe_to_json(const Probe& p) {
  json j;
  j["ok"] = p.ok;
  j["error"] = p.error;
  j["disk_bytes"] = p.disk_bytes;
  j["fp16_bytes"] = p.fp16_bytes;
  j["serving_bytes"] = num(p.serving_bytes);
  j["runtime_bytes"] = num(p.runtime_bytes);
  j["local_ms_p50"] = num(p.local_ms_p50);
  j["local_ms_p95"] = num(p.local_ms_p95);
  j["local_tokens_per_s"] = num(p.local_tokens_per_s);
  j["local_peak_rss_bytes"] = num(p.local_peak_rss_bytes);
  j["local_baseline_rss_bytes"] = num(p.local_baseline_rss_bytes);
  j["local_tokens"] = p.local_tokens;
  j["recon_error"] = num(p.recon_error);
  j["linears_quantized"] = p.linears_quantized;
  j["linears_total"] = p.linears_total;
  j["sample_kl"] = p.sample_kl;
  j["sample_nll_delta"] = p.sample_nll_delta;
  j["seconds"] = p.seconds;
  return j;
}

Result<Probe> probe_from_json(const json& j) {
  try {
    Probe p;
    p.ok = j.at("ok").get<bool>();
    p.error = j.at("error").get<std::string>();
    p.disk_bytes = j.at("disk_bytes").get<uint64_t>();
    p.fp16_bytes = j.at("fp16_bytes").get<uint64_t>();
    p.serving_bytes = get(j, "serving_bytes");
    p.runtime_bytes = get(j, "runtime_bytes");
    p.local_ms_p50 = get(j, "local_ms_p50");
    p.local_ms_p95 = get(j, "local_ms_p95");
    p.local_tokens_per_s = get(j, "local_tokens_per_s");
    p.local_peak_rss_bytes = j.at("local_peak_rss_bytes").get<double>();  // required: 0 would read as "not measured"
    p.local_baseline_rss_bytes = j.at("local_baseline_rss_bytes").get<double>();
    p.local_tokens = j.at("local_tokens").get<int64_t>();
    p.recon_error = get(j, "recon_error");
    p.linears_quantized = j.at("linears_quantized").get<int64_t>();
    p.linears_total = j.at("linears_total").get<int64_t>();
    p.sample_kl = j.at("sample_kl").get<std::vector<double>>();
    p.sample_nll_delta = j.at("sample_nll_delta").get<std::vector<double>>();
    p.seconds = get(j, "seconds");
    return p;
  } catch (const std::exception& e) {
    return Status{Errc::corrupt, std::string("probe entry: ") + e.what()};
  }
}

json eval_to_json(const Evaluation& e) {
  return {{"ok", e.ok},         {"error", e.error},          {"windows", e.windows},   {"scored_tokens", e.scored_tokens},
          {"ppl", num(e.ppl)},  {"ref_ppl", num(e.ref_ppl)}, {"ppl_delta_pct", num(e.ppl_delta_pct)},
          {"kl_mean", num(e.kl_mean)}, {"kl_p99", num(e.kl_p99)}, {"top1", num(e.top1)}, {"seconds", e.seconds}};
}

Result<Evaluation> eval_from_json(const json& j) {
  try {
    Evaluation e;
    e.ok = j.at("ok").get<bool>();
    e.error = j.at("error").get<std::string>();
    e.windows = j.at("windows").get<int64_t>();
    e.scored_tokens = j.at("scored_tokens").get<int64_t>();
    e.ppl = get(j, "ppl");
    e.ref_ppl = get(j, "ref_ppl");
    e.ppl_delta_pct = get(j, "ppl_delta_pct");
    e.kl_mean = get(j, "kl_mean");
    e.kl_p99 = get(j, "kl_p99");
    e.top1 = get(j, "top1");
    e.seconds = get(j, "seconds");
    return e;
  } catch (const std::exception& e) {
    return Status{Errc::corrupt, std::string("evaluation entry: ") + e.what()};
  }
}

std::optional<Probe> MeasurementCache::get_probe(const std::string& sha, const std::string& preset,
                                                 const std::string& settings) const {
  if (dir_.empty()) return std::nullopt;
  auto j = read_entry(path(sha, preset, settings, "probe"), "probe");
  if (!j) return std::nullopt;
  auto p = probe_from_json((*j)["value"]);
  if (!p.ok()) return std::nullopt;
  return *p;
}

std::optional<Evaluation> MeasurementCache::get_eval(const std::string& sha, const std::string& preset,
                                                     const std::string& settings) const {
  if (dir_.empty()) return std::nullopt;
  auto j = read_entry(path(sha, preset, settings, "eval"), "eval");
  if (!j) return std::nullopt;
  auto e = eval_from_json((*j)["value"]);
  if (!e.ok()) return std::nullopt;
  return *e;
}

Status MeasurementCache::put_probe(const std::string& sha, const std::string& preset, const std::string& settings,
                                   const Probe& p) const {
  if (dir_.empty()) return Status::Ok();
  json j{{"version", kVersion}, {"kind", "probe"}, {"model_sha256", sha}, {"preset", preset},
         {"settings", settings}, {"value", probe_to_json(p)}, {"complete", true}};
  return write_atomic(path(sha, preset, settings, "probe"), j.dump(1));
}

Status MeasurementCache::put_eval(const std::string& sha, const std::string& preset, const std::string& settings,
                                  const Evaluation& e) const {
  if (dir_.empty()) return Status::Ok();
  json j{{"version", kVersion}, {"kind", "eval"}, {"model_sha256", sha}, {"preset", preset},
         {"settings", settings}, {"value", eval_to_json(e)}, {"complete", true}};
  return write_atomic(path(sha, preset, settings, "eval"), j.dump(1));
}

}  // namespace tenpak::opt
