// The commands that need libtorch (model runtime, quantization, router
// training) live in the sibling executable `tenpak-ml`, so that libtorch is
// never linked into `tenpak`, which is also the mount daemon. `tenpak`
// lists them in its --help and hands each, with its arguments unchanged,
// to tenpak-ml (exec, same process id, same exit code).
#pragma once
#include <CLI/CLI.hpp>

namespace tenpak::cli {

// Remembers the process's arguments; main() calls it first.
void set_process_args(int argc, char** argv);

// Adds `name` to `parent` as a command carried out by tenpak-ml: every
// argument after it (--help included) goes to tenpak-ml unparsed.
CLI::App* add_ml_command(CLI::App& parent, const std::string& name, const std::string& description, int& rc);

// Replaces this process with tenpak-ml, run with the arguments that follow
// the program name. Returns only on failure, with the exit code to use
// (kRefused when tenpak-ml was not built: libtorch missing).
int exec_ml();

}  // namespace tenpak::cli
