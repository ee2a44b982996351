// tenpak-ml's commands, one registration function per area; each adds its
// subcommands to `app` and stores the exit code in `rc` (exit codes: cli_util.h).
#pragma once
#include <CLI/CLI.hpp>

namespace tenpak::ml {
// Declare each area's function here, e.g.
//   void add_model_commands(CLI::App& app, int& rc);  // convert, eval, generate (cmd_model.cc)
void add_model_commands(CLI::App& app, int& rc);  // convert, eval, generate (cmd_model.cc)
void add_router_commands(CLI::App& app, int& rc);  // router train (cmd_router_train.cc)
void add_quant_commands(CLI::App& app, int& rc);   // quantize, presets (cmd_quant.cc)
void add_fixture_ft_commands(CLI::App& app, int& rc);  // fixture stories-ft (cmd_fixture_ft.cc)
// fixture llama-gen (cmd_fixture_gen.cc); after add_fixture_ft_commands (it adds to that "fixture").
void add_fixture_gen_commands(CLI::App& app, int& rc);
void add_delta_lossy_commands(CLI::App& app, int& rc);  // delta build --lossy (cmd_delta_lossy.cc)
void add_optimize_commands(CLI::App& app, int& rc);    // optimize (cmd_optimize.cc)
}  // namespace tenpak::ml
