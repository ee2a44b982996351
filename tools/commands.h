#pragma once
#include <CLI/CLI.hpp>

namespace tenpak::cli {
// Each adds its subcommands to `app`; the callback stores the exit code in `rc`.
void add_delta_commands(CLI::App& app, int& rc);
void add_fixture_commands(CLI::App& app, int& rc);
void add_mount_commands(CLI::App& app, int& rc);  // mount, unmount, stats
void add_cache_commands(CLI::App& app, int& rc);  // cache stats, cache clear
// convert, eval, generate, quantize, presets, ...: handed to tenpak-ml (ml_commands.cc).
void add_ml_commands(CLI::App& app, int& rc);
}  // namespace tenpak::cli
