// `tenpak stats` as text, generated from the counter table (fs_counters(),
// tenpak/model_fs.h) that also generates stats.json and the tenpak_fs_*
// Prometheus metrics: a counter added to the table shows in all three.
//
//   auto t = fs_stats_text(slurp(mp + "/.tenpak/stats.json"));
//   if (!t.ok()) return fail(t.status());   // Errc::corrupt: not our stats
//   std::cout << *t;
#pragma once
#include <string>
#include <string_view>

#include "tenpak/status.h"

namespace tenpak {

// The counters of a stats.json document, one line per group of the table
// in the order the table first names it ("mount": the top-level counters),
// "  group   key value, key value, ..."; a key that names bytes
// ("bytes_served", "spent_bytes") or is "limit" is a byte count (shown in
// KiB/MiB/GiB). A counter the document lacks (a daemon of another
// version) is left out; the persistent_cache group shows only when the
// document says it is enabled. Errc::corrupt when the document is not a
// JSON object or a counter is not an unsigned integer.
Result<std::string> fs_stats_text(std::string_view stats_json);

// Bytes as "12 B", "1.50 KiB", "3.25 MiB", ... (binary units, 2 decimals).
std::string fs_human_bytes(double bytes);

}  // namespace tenpak
