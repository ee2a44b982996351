// Helpers shared by the tenpak subcommands: exit codes, progress bars,
// human-readable sizes.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "tenpak/status.h"

namespace tenpak::cli {

// Exit codes (documented in README): one mapping for every subcommand.
enum Exit : int {
  kOk = 0,
  kError = 1,      // I/O or other failure
  kUsage = 2,      // bad command line
  kMismatch = 3,   // wrong base / verification failed
  kCorrupt = 4,    // corrupt input (delta, safetensors, checkpoint)
  kNoSpace = 5,    // disk full
  kRefused = 6,    // refused input (pickle asking for code, unsafe path, existing output)
};
int exit_code(const Status& s);
// Prints "tenpak: error: <message>" to stderr and returns the exit code.
int fail(const Status& s);

std::string human_bytes(double b);

// A progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  void update(uint64_t done, uint64_t total);
  void finish();

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace tenpak::cli
