#include "tenpak/stats_text.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>
#include <nlohmann/json.hpp>

#include "tenpak/model_fs.h"

namespace tenpak {

std::string fs_human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.2f %s" : "%.0f %s", b, u[i]);
  return buf;
}

Result<std::string> fs_stats_text(std::string_view stats_json) {
  const auto j = nlohmann::json::parse(stats_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status{Errc::corrupt, "stats: not a JSON object"};
  // One line per group, in the order the table first names it.
  std::vector<std::pair<std::string, std::string>> lines;
  for (const FsCounter& c : fs_counters()) {
    const std::string group = c.group;
    const nlohmann::json* holder = &j;
    if (!group.empty()) {
      auto g = j.find(group);
      if (g == j.end()) continue;
      if (!g->is_object()) return Status{Errc::corrupt, "stats: '" + group + "' is not an object"};
      if (group == "persistent_cache" && !g->value("enabled", false)) continue;
      holder = &*g;
    }
    auto v = holder->find(c.key);
    if (v == holder->end()) continue;
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0))
      return Status{Errc::corrupt, std::string("stats: '") + c.key + "' is not a count"};
    const uint64_t n = v->get<uint64_t>();
    const std::string_view key = c.key;
    const bool bytes = key == "limit" || key.find("bytes") != std::string_view::npos;
    auto at = std::find_if(lines.begin(), lines.end(), [&](const auto& l) { return l.first == group; });
    if (at == lines.end()) {
      std::string label = group.empty() ? std::string("mount") : group;
      if (group == "persistent_cache") {
        auto f = holder->find("frames");
        if (f != holder->end() && f->is_string()) label += " (--cache-frames " + f->get<std::string>() + ")";
      }
      std::string head = "  " + label;
      head.append(label.size() < 16 ? 18 - label.size() : 2, ' ');
      lines.emplace_back(group, head);
      at = lines.end() - 1;
    } else {
      at->second += ", ";
    }
    at->second += std::string(key) + " " + (bytes ? fs_human_bytes(static_cast<double>(n)) : std::to_string(n));
  }
  std::string out;
  for (auto& l : lines) out += l.second + "\n";
  return out;
}

}  // namespace tenpak
