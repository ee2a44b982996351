#include "ml_dispatch.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "cli_util.h"

namespace tenpak::cli {

namespace {
int g_argc = 0;
char** g_argv = nullptr;
}  // namespace

void set_process_args(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
}

int exec_ml() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return fail({Errc::io, "/proc/self/exe: cannot resolve the tenpak executable: " + ec.message()});
  const std::string ml = (self.parent_path() / "tenpak-ml").string();
  if (::access(ml.c_str(), X_OK) != 0)
    return fail({Errc::unsupported, ml + ": not found; this command needs tenpak-ml, which is built only when "
                                         "libtorch is installed (scripts/bootstrap.sh installs libtorch-dev; then "
                                         "rebuild)"});
  std::vector<char*> args;
  args.push_back(const_cast<char*>(ml.c_str()));
  for (int i = 1; i < g_argc; ++i) args.push_back(g_argv[i]);
  args.push_back(nullptr);
  std::fflush(nullptr);
  ::execv(ml.c_str(), args.data());
  return fail({Errc::io, ml + ": cannot start: " + std::strerror(errno)});
}

CLI::App* add_ml_command(CLI::App& parent, const std::string& name, const std::string& description, int& rc) {
  CLI::App* sc = parent.add_subcommand(name, description + " [tenpak-ml]");
  sc->prefix_command();
  sc->set_help_flag();
  sc->callback([&rc] { rc = exec_ml(); });
  return sc;
}

}  // namespace tenpak::cli
