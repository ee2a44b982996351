// tenpak: one executable, subcommands per concern.
#include <CLI/CLI.hpp>

#include "cli_util.h"
#include "commands.h"
#include "ml_dispatch.h"

int main(int argc, char** argv) {
  CLI::App app{"TenPak: store fine-tuned models as compact deltas against their base and serve them back"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tenpak 0.1.0 (delta format v1)");
  tenpak::cli::set_process_args(argc, argv);
  int rc = 0;
  tenpak::cli::add_delta_commands(app, rc);
  tenpak::cli::add_dataset_commands(app, rc);
  tenpak::cli::add_fixture_commands(app, rc);
  tenpak::cli::add_cache_commands(app, rc);
  tenpak::cli::add_mount_commands(app, rc);
  tenpak::cli::add_router_commands(app, rc);
  // Offline model tools, carried out by tenpak-ml (libtorch; see ml_dispatch.h).
  tenpak::cli::add_ml_commands(app, rc);
  return tenpak::cli::run(app, argc, argv, rc);
}
