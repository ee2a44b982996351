// The catalog: parsing, serving options and their costs, recommendations.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "embedded.h"
#include "tenpak/router_catalog.h"

namespace tenpak::router {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_any(const std::string& s, std::initializer_list<const char*> l) {
  for (auto* m : l)
    if (s.find(m) != std::string::npos) return true;
  return false;
}

Result<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status{Errc::io, path + ": cannot open"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Reads a number field that must be present and within [lo, hi].
Status num(const json& o, const char* key, double lo, double hi, double& out, const std::string& where) {
  if (!o.contains(key) || !o[key].is_number())
    return {Errc::corrupt, where + ": field \"" + key + "\" must be a number"};
  out = o[key].get<double>();
  if (!(out >= lo && out <= hi))
    return {Errc::corrupt, where + ": field \"" + key + "\" = " + std::to_string(out) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"};
  return Status::Ok();
}

std::string str(const json& o, const char* key) { return o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : ""; }

}  // namespace

int prompt_category(const std::string& prompt) {
  std::string s = lower(prompt);
  if (has_any(s, {"```", "def ", "#include", "function ", "python", "javascript", "c++", "sql", "code", "program",
                  "algorithm", "compile", "return "}))
    return 2;
  bool options = has_any(prompt, {"\nA.", "\nA)"}) && has_any(prompt, {"\nB.", "\nB)"});
  size_t digits = std::count_if(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
  if (!options && (digits >= 2 || has_any(s, {"how many", "how much", "calculate", "solve", "equation", "sum of", "product of"})))
    return 1;
  if (options || has_any(s, {"which of the following", "what is the", "who was", "when did", "define "})) return 0;
  return 3;
}

std::string ServeOption::label() const {
  if (!model) return "?";
  if (!gpu) return model->name + " (API)";
  return model->name + " " + quant->name + " on " + std::to_string(gpus) + "x " + gpu->name;
}

const ModelEntry* Catalog::find_model(const std::string& name) const {
  for (auto& m : models)
    if (lower(m.name) == lower(name)) return &m;
  return nullptr;
}

std::string Catalog::model_list() const {
  std::string s;
  for (auto& m : models) s += (s.empty() ? "" : ", ") + m.name;
  return s;
}

std::vector<ServeOption> Catalog::options(const ModelEntry& m) const {
  std::vector<ServeOption> out;
  if (m.api_price_per_mtok > 0) {
    ServeOption o;
    o.model = &m;
    o.price_per_mtok = m.api_price_per_mtok;
    out.push_back(o);
    return out;
  }
  for (auto& q : quants) {
    const double weights_gb = m.params_b * q.bytes_per_param;
    for (auto& g : gpus) {
      for (int n : gpu_counts) {
        if (weights_gb * memory_overhead > g.memory_gb * n) continue;
        ServeOption o;
        o.model = &m;
        o.quant = &q;
        o.gpu = &g;
        o.gpus = n;
        o.tokens_per_s = batch * bandwidth_efficiency * g.bandwidth_gbs * n / weights_gb;
        o.price_per_mtok = g.price_per_hour * n / (o.tokens_per_s * 3600) * 1e6;
        out.push_back(o);
        break;
      }
    }
  }
  return out;
}

Result<Catalog> parse_catalog(const std::string& catalog_json, const std::string& hardware_json, const std::string& what) {
  Catalog c;
  c.source = what;
  json j = json::parse(catalog_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status{Errc::corrupt, what + ": not a JSON object"};
  if (j.value("version", 0) != 1) return Status{Errc::unsupported, what + ": catalog \"version\" must be 1"};
  json h;
  if (j.contains("hardware") && j["hardware"].is_object()) h = j["hardware"];
  else {
    h = json::parse(hardware_json, nullptr, false);
    if (h.is_discarded() || !h.is_object()) return Status{Errc::corrupt, what + ": hardware profiles: not a JSON object"};
  }
  if (!h.contains("gpus") || !h["gpus"].is_array() || h["gpus"].empty())
    return Status{Errc::corrupt, what + ": hardware profiles need a non-empty array \"gpus\""};
  for (size_t i = 0; i < h["gpus"].size(); ++i) {
    const json& g = h["gpus"][i];
    std::string where = what + ": gpus[" + std::to_string(i) + "]";
    if (!g.is_object() || str(g, "name").empty()) return Status{Errc::corrupt, where + ": needs a \"name\""};
    GpuProfile p;
    p.name = str(g, "name");
    TP_RETURN_IF_ERROR(num(g, "memory_gb", 1, 1e4, p.memory_gb, where));
    TP_RETURN_IF_ERROR(num(g, "bandwidth_gbs", 1, 1e5, p.bandwidth_gbs, where));
    TP_RETURN_IF_ERROR(num(g, "price_per_hour", 1e-6, 1e4, p.price_per_hour, where));
    p.price_source = str(g, "price_source");
    p.spec_source = str(g, "spec_source");
    p.date = str(g, "date");
    c.gpus.push_back(p);
  }
  if (j.contains("throughput_model")) {
    const json& t = j["throughput_model"];
    std::string where = what + ": throughput_model";
    TP_RETURN_IF_ERROR(num(t, "batch", 1, 1e4, c.batch, where));
    TP_RETURN_IF_ERROR(num(t, "bandwidth_efficiency", 0.01, 1, c.bandwidth_efficiency, where));
    TP_RETURN_IF_ERROR(num(t, "memory_overhead", 1, 10, c.memory_overhead, where));
    if (t.contains("gpu_counts")) {
      c.gpu_counts.clear();
      for (auto& n : t["gpu_counts"])
        if (n.is_number_integer() && n.get<int>() > 0 && n.get<int>() <= 1024) c.gpu_counts.push_back(n.get<int>());
        else return Status{Errc::corrupt, where + ": gpu_counts must be positive integers"};
      std::sort(c.gpu_counts.begin(), c.gpu_counts.end());
    }
  }
  if (!j.contains("quantizations") || !j["quantizations"].is_array() || j["quantizations"].empty())
    return Status{Errc::corrupt, what + ": needs a non-empty array \"quantizations\""};
  for (size_t i = 0; i < j["quantizations"].size(); ++i) {
    const json& q = j["quantizations"][i];
    std::string where = what + ": quantizations[" + std::to_string(i) + "]";
    if (!q.is_object() || str(q, "name").empty()) return Status{Errc::corrupt, where + ": needs a \"name\""};
    Quantization z;
    z.name = str(q, "name");
    TP_RETURN_IF_ERROR(num(q, "bytes_per_param", 0.05, 8, z.bytes_per_param, where));
    TP_RETURN_IF_ERROR(num(q, "quality_factor", 0, 1, z.quality_factor, where));
    z.source = str(q, "source");
    c.quants.push_back(z);
  }
  if (c.quants.front().name != "bf16") return Status{Errc::corrupt, what + ": the first quantization must be \"bf16\" (the reference)"};
  if (!j.contains("models") || !j["models"].is_array() || j["models"].empty())
    return Status{Errc::corrupt, what + ": needs a non-empty array \"models\""};
  for (size_t i = 0; i < j["models"].size(); ++i) {
    const json& m = j["models"][i];
    std::string where = what + ": models[" + std::to_string(i) + "]";
    if (!m.is_object() || str(m, "name").empty()) return Status{Errc::corrupt, where + ": needs a \"name\""};
    ModelEntry e;
    e.name = str(m, "name");
    e.family = str(m, "family");
    where += " (" + e.name + ")";
    if (m.contains("api_price_per_mtok")) {
      TP_RETURN_IF_ERROR(num(m, "api_price_per_mtok", 1e-6, 1e6, e.api_price_per_mtok, where));
      e.api_price_source = str(m, "api_price_source");
    } else {
      TP_RETURN_IF_ERROR(num(m, "params_b", 0.001, 1e5, e.params_b, where));
    }
    if (!m.contains("quality") || !m["quality"].is_object()) return Status{Errc::corrupt, where + ": needs an object \"quality\""};
    for (int k = 0; k < kNumCategories; ++k)
      TP_RETURN_IF_ERROR(num(m["quality"], kCategories[k], 0.001, 1, e.quality[k], where + ": quality"));
    e.quality_source = str(m, "quality_source");
    for (auto& o : c.models)
      if (lower(o.name) == lower(e.name)) return Status{Errc::corrupt, where + ": model listed twice"};
    c.models.push_back(e);
  }
  return c;
}

Result<Catalog> default_catalog() {
  return parse_catalog(embedded::catalog_json(), embedded::hardware_json(), "built-in catalog");
}

Result<Catalog> load_catalog(const std::string& path) {
  auto text = slurp(path);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, false);
  std::string hw = embedded::hardware_json();
  if (!j.is_discarded() && j.is_object() && j.contains("hardware") && j["hardware"].is_string()) {
    fs::path hp = fs::path(path).parent_path() / j["hardware"].get<std::string>();
    auto h = slurp(hp.string());
    if (!h.ok()) return Status{Errc::io, path + ": hardware profiles: " + h.status().message()};
    hw = *h;
  }
  return parse_catalog(*text, hw, path);
}

Result<Recommendation> recommend(const Catalog& cat, const std::string& requested, int category, double p_strong,
                                 double p_ref, double threshold) {
  std::string name = requested, gpu;
  if (auto at = requested.find('@'); at != std::string::npos) {
    name = requested.substr(0, at);
    gpu = requested.substr(at + 1);
  }
  const ModelEntry* m = cat.find_model(name);
  if (!m) return Status{Errc::invalid, "unknown model \"" + name + "\"; the catalog (" + cat.source + ") has: " + cat.model_list()};
  Recommendation r;
  r.category = category;
  r.p_strong = p_strong;
  r.p_ref = p_ref;
  auto opts = cat.options(*m);
  bool found = false;
  for (auto& o : opts) {
    if (o.gpu && o.quant != &cat.quants.front()) continue;
    if (!gpu.empty() && (!o.gpu || lower(o.gpu->name) != lower(gpu))) continue;
    if (!found || o.price_per_mtok < r.requested.price_per_mtok) r.requested = o;
    found = true;
  }
  if (!found) {
    std::string gl;
    for (auto& g : cat.gpus) gl += (gl.empty() ? "" : ", ") + g.name;
    if (!gpu.empty())
      return Status{Errc::invalid, m->name + " does not fit on up to " + std::to_string(cat.gpu_counts.back()) + " " + gpu +
                                       " in bf16, or no such GPU (the catalog's GPUs: " + gl + ")"};
    return Status{Errc::invalid, m->name + " fits on none of the catalog's GPUs in bf16 (" + gl + ")"};
  }
  const double q_req = m->quality[category] * (r.requested.quant ? r.requested.quant->quality_factor : 1.0);
  const double scale = p_ref > 0 ? p_strong / p_ref : 1.0;
  r.recommended = r.requested;
  r.predicted_quality = 1;
  for (auto& cm : cat.models) {
    for (auto& o : cat.options(cm)) {
      if (o.price_per_mtok >= r.requested.price_per_mtok) continue;
      double q = cm.quality[category] * (o.quant ? o.quant->quality_factor : 1.0);
      double ratio = std::min(1.0, q / q_req);
      double pred = std::clamp(1 - (1 - ratio) * scale, 0.0, 1.0);
      r.considered.emplace_back(o, pred);
      if (pred >= threshold && o.price_per_mtok < r.recommended.price_per_mtok) {
        r.recommended = o;
        r.predicted_quality = pred;
      }
    }
  }
  std::sort(r.considered.begin(), r.considered.end(), [](auto& a, auto& b) { return a.first.price_per_mtok < b.first.price_per_mtok; });
  r.saving = 1 - r.recommended.price_per_mtok / r.requested.price_per_mtok;
  return r;
}

}  // namespace tenpak::router
