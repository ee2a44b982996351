// tenpak-ml: the offline model tools that need libtorch. Normally run
// through `tenpak COMMAND ...` (tools/ml_dispatch.h), which passes its
// arguments here unchanged.
#include <CLI/CLI.hpp>

#include "cli_util.h"
#include "ml_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"TenPak offline model tools (libtorch): runtime, quantization, router training"};
  app.name("tenpak");
  app.require_subcommand(1);
  app.set_version_flag("--version", "tenpak 0.1.0 (tenpak-ml)");
  int rc = 0;
  // One call per area (ml_commands.h), e.g. tenpak::ml::add_model_commands(app, rc);
  tenpak::ml::add_model_commands(app, rc);
  tenpak::ml::add_router_commands(app, rc);
  tenpak::ml::add_quant_commands(app, rc);
  tenpak::ml::add_fixture_ft_commands(app, rc);
  tenpak::ml::add_fixture_gen_commands(app, rc);
  tenpak::ml::add_delta_lossy_commands(app, rc);
  tenpak::ml::add_optimize_commands(app, rc);
  return tenpak::cli::run(app, argc, argv, rc);
}
