// Helpers shared by the tenpak subcommands: exit codes, progress bars,
// human-readable sizes, JSON output.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "tenpak/status.h"

namespace CLI {
class App;
class Validator;
}

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
  kUnavailable = 7,  // an origin (base, delta) unreachable or not serving: refused, 404, 503; retry later
  kTargetNotMet = 8,  // nothing meets the constraints (optimize; delta build --lossy --max-kld/--max-ppl-delta)
};
int exit_code(const Status& s);
// Prints "tenpak: error: <message>" to stderr and returns the exit code.
int fail(const Status& s);
// Parses the command line into `app`, whose subcommand callbacks run and
// set `rc`; returns rc, 0 for --help and --version, kUsage for a command
// line CLI11 refuses (after its message), kError for an exception a
// command let out (after its message). main() of tenpak and tenpak-ml.
int run(CLI::App& app, int argc, char** argv, const int& rc);

std::string human_bytes(double b);

// A check for floating-point options: the value must be a finite number.
// CLI11's PositiveNumber, NonNegativeNumber and Range let "nan" through
// (every comparison with NaN is false), where a NaN target or rate would
// silently mean no target or a training that diverges. Chain it:
// opt->check(CLI::PositiveNumber)->check(cli::finite_number()).
const CLI::Validator& finite_number();

// The directory to download a remote input into: the parent of `near` (the
// output path: a download is as large as its input), or, with `near` empty
// (an estimate, which writes no output), the temporary directory ($TMPDIR,
// else /tmp). An error, not an exception, where there is none: a TMPDIR
// that is not a directory, a relative path under a removed working directory.
Result<std::string> download_parent(const std::string& near);

// The text of a --json output or of a JSON line: j.dump(indent) (-1: one
// line), with bytes of strings that are not UTF-8 (a path, a name or a
// message from the user's input) written as U+FFFD, where dump's default
// throws and would end the command after its work is done.
std::string json_text(const nlohmann::json& j, int indent);
std::string json_text(const nlohmann::ordered_json& j, int indent);

// The malloc policy of the commands that rebuild or encode frames (mount,
// delta build/apply/verify). A fresh page costs a page fault on first
// touch, 20-50 us on virtual machines (5-15 ms per MiB), and every frame
// needs a few MiB of scratch (payload, base range, coder state) on
// whichever thread runs it, often freed by another. One heap for all
// threads, no per-allocation mmap and no trimming: memory freed after one
// frame is reused, already faulted in, by the next one on any thread.
// `prefault` bytes of that heap are touched now, so the first frames do not
// pay either. Call before threads start.
void tune_malloc_for_rebuilds(size_t prefault = 0);

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
