#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace tenpak::cli {
// Each adds its subcommands to `app`; the callback stores the exit code in `rc`.
void add_delta_commands(CLI::App& app, int& rc);
void add_fixture_commands(CLI::App& app, int& rc);
void add_mount_commands(CLI::App& app, int& rc);  // mount, unmount, stats
void add_cache_commands(CLI::App& app, int& rc);  // cache stats, cache clear
// dataset build|apply|verify|inspect|estimate, delta compress, delta-dataset compress (after add_delta_commands).
void add_dataset_commands(CLI::App& app, int& rc);
// Shared with cmd_dataset.cc: the delta commands' apply/verify (out empty) and inspect.
int run_delta_apply(const std::string& delta, const std::string& base, const std::string& out, bool json, unsigned threads);
int run_delta_inspect(const std::string& delta, bool json, unsigned threads);
void add_router_commands(CLI::App& app, int& rc);  // route, router eval, router train (tenpak-ml)
// convert, eval, generate, quantize, presets, ...: handed to tenpak-ml (ml_commands.cc).
void add_ml_commands(CLI::App& app, int& rc);
}  // namespace tenpak::cli
