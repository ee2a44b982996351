// tenpak cache stats|clear: look at and empty the shared block cache.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "tenpak/cache.h"

namespace tenpak::cli {

void add_cache_commands(CLI::App& app, int& rc) {
  static std::string dir;
  static bool json = false;
  auto* c = app.add_subcommand("cache", "The shared block cache (default: $TENPAK_CACHE_DIR, $XDG_CACHE_HOME/tenpak, ~/.cache/tenpak)");
  c->require_subcommand(1);
  auto* s = c->add_subcommand("stats", "Entries and bytes held by the cache");
  s->add_option("--cache-dir", dir, "Cache directory");
  s->add_flag("--json", json, "Print a JSON object");
  s->callback([&] {
    std::string d = dir.empty() ? default_cache_dir() : dir;
    auto info = inspect_lmdb_cache(d);
    if (!info.ok()) {
      if (json && info.status().code() == Errc::corrupt)  // damaged: say so to scripts too (exit 4)
        std::printf("%s\n",
                    json_text(nlohmann::json({{"dir", d}, {"damaged", true}, {"problem", info.status().message()}}), -1)
                        .c_str());
      rc = fail(info.status());
      return;
    }
    if (json) {
      nlohmann::json j = {{"dir", d}, {"entries", info->entries}, {"bytes_used", info->bytes_used}, {"file_bytes", info->file_bytes}};
      std::printf("%s\n", json_text(j, -1).c_str());
    } else {
      std::printf("cache %s: %llu entries, %s of values, data file %s\n", d.c_str(), (unsigned long long)info->entries,
                  human_bytes(static_cast<double>(info->bytes_used)).c_str(),
                  human_bytes(static_cast<double>(info->file_bytes)).c_str());
    }
    rc = kOk;
  });
  auto* cl = c->add_subcommand("clear", "Drop every entry (safe while mounts use the cache)");
  cl->add_option("--cache-dir", dir, "Cache directory");
  cl->callback([&] {
    std::string d = dir.empty() ? default_cache_dir() : dir;
    Status st = clear_lmdb_cache(d);
    rc = st.ok() ? kOk : fail(st);
    if (st.ok()) std::printf("cleared %s\n", d.c_str());
  });
}

}  // namespace tenpak::cli
