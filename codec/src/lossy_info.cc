// The side file of a lossy delta (docs/FORMAT.md, "Lossy deltas").
#include "tenpak/lossy_info.h"

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "tenpak/hash.h"
#include "tenpak/open_source.h"

namespace tenpak {

Result<LossyInfo> parse_lossy_info(std::string_view text, const Manifest& m, const std::string& what, bool in_index) {
  using json = nlohmann::json;
  auto bad = [&](const std::string& why) { return Status{Errc::corrupt, what + ": " + why}; };
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not JSON");
  if (!j.contains("format") || !j["format"].is_string() || j["format"].get<std::string>() != "tenpak.lossy")
    return bad("format is not \"tenpak.lossy\"");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != 1)
    return bad("unknown version (this reader knows 1)");
  if (!j.contains("quality") || !j["quality"].is_object() || !j.contains("method") || !j["method"].is_string())
    return bad("method or quality missing");
  // In the index the rebuilt files are the index's own (its checksum covers
  // both); a side file names them, so that it cannot describe another delta.
  const bool listed = j.contains("rebuilt");
  if (listed ? !j["rebuilt"].is_array() : !in_index) return bad("rebuilt missing");
  std::map<std::string, std::string> sha;
  for (auto& r : listed ? j["rebuilt"] : json::array()) {
    if (!r.is_object() || !r.contains("name") || !r.contains("sha256") || !r["name"].is_string() || !r["sha256"].is_string())
      return bad("a rebuilt entry without name and sha256");
    if (!sha.emplace(r["name"].get<std::string>(), r["sha256"].get<std::string>()).second)
      return bad("a file is listed twice in rebuilt");
  }
  if (listed && sha.size() != m.out_files.size()) return bad("does not list the index's output files");
  for (auto& of : m.out_files) {
    if (!listed) break;
    auto it = sha.find(of.name);
    if (it == sha.end() || it->second != hex(of.sha256))
      return bad(of.name + ": sha256 differs from the index (the side file belongs to another delta)");
  }
  // Optional; a record without it (every record before it existed, and a
  // delta not trained on labels) reads as weight 0.
  double label_weight = 0;
  if (j.contains("qat_label_weight")) {
    const json& w = j["qat_label_weight"];
    if (!w.is_number() || !(w.get<double>() >= 0 && w.get<double>() <= 1))
      return bad("qat_label_weight is not a number in [0, 1]");
    label_weight = w.get<double>();
  }
  const json& q = j["quality"];
  auto num = [](const json& o, const char* k) { return o.contains(k) && o[k].is_number() ? o[k].get<double>() : 0.0; };
  auto count = [](const json& o, const char* k) {
    return o.contains(k) && o[k].is_number_unsigned() ? o[k].get<uint64_t>() : uint64_t{0};
  };
  LossyInfo li;
  li.method = j["method"].get<std::string>();
  li.eval_text = q.contains("eval_text") && q["eval_text"].is_string() ? q["eval_text"].get<std::string>() : "?";
  li.ppl_ratio = num(q, "ppl_ratio");
  li.ppl_delta_pct = num(q, "ppl_delta_pct");
  li.kl_mean = num(q, "kl_mean");
  li.top1_agreement = num(q, "top1_agreement");
  li.scored_tokens = count(q, "scored_tokens");
  li.delta_bytes = count(j, "delta_bytes");
  li.finetune_bytes = count(j, "finetune_bytes");
  li.qat_label_weight = label_weight;
  li.in_index = in_index;
  li.json.assign(text.begin(), text.end());
  return li;
}

Result<LossyInfo> read_lossy_info(BlockSource& src, const Manifest& m) {
  const uint64_t n = src.size();
  if (n > kMaxLossyFileBytes)
    return Status{Errc::corrupt, src.name() + ": " + std::to_string(n) + " bytes, more than a side file may have (" +
                                     std::to_string(kMaxLossyFileBytes) + ")"};
  std::vector<uint8_t> buf(n);
  if (n) TP_RETURN_IF_ERROR(src.read(0, n, buf.data()));
  return parse_lossy_info(std::string_view(reinterpret_cast<const char*>(buf.data()), n), m, src.name());
}

Result<std::optional<LossyInfo>> load_lossy_info(const std::string& delta_loc, const Manifest& m,
                                                 const WrapSource& wrap) {
  if (!m.lossy_record.empty()) {
    auto li = parse_lossy_info(m.lossy_record, m, join_location(delta_loc, kIndexFile) + ": lossy record", true);
    if (!li.ok()) return li.status();
    return std::optional<LossyInfo>(std::move(li.value()));
  }
  auto src = open_source(join_location(delta_loc, kLossyFile));
  if (!src.ok()) {
    if (src.status().code() == Errc::not_found) return std::optional<LossyInfo>();
    return src.status();
  }
  std::unique_ptr<BlockSource> s = std::move(src.value());
  if (wrap) s = wrap(std::move(s));
  auto li = read_lossy_info(*s, m);
  if (!li.ok()) return li.status();
  return std::optional<LossyInfo>(std::move(li.value()));
}

bool has_approx_frames(const Manifest& m) {
  for (auto& f : m.frames)
    if (f.codec == Codec::approx) return true;
  return false;
}

std::string lossy_summary_line(const LossyInfo& li) {
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "LOSSY delta (%s): measured against the true fine-tune on %s: perplexity ratio %.5f (%+.3f%%), KL %.4g "
                "nats, top-1 agreement %.4f",
                li.method.c_str(), li.eval_text.c_str(), li.ppl_ratio, li.ppl_delta_pct, li.kl_mean, li.top1_agreement);
  std::string line = buf;
  if (li.qat_label_weight > 0) {
    std::snprintf(buf, sizeof buf,
                  "; codes trained with the calibration text's next tokens at weight %.4g (--qat-label-weight): not a "
                  "reproduction of the fine-tune, whatever its perplexity ratio",
                  li.qat_label_weight);
    line += buf;
  }
  return line;
}

}  // namespace tenpak
