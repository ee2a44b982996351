#include "cli_util.h"

#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tenpak/open_source.h"

namespace tenpak::cli {

int exit_code(const Status& s) {
  switch (s.code()) {
    case Errc::ok: return kOk;
    case Errc::io: return kError;
    case Errc::corrupt: return kCorrupt;
    case Errc::invalid: return kUsage;
    case Errc::mismatch: return kMismatch;
    case Errc::no_space: return kNoSpace;
    case Errc::exists: return kRefused;
    case Errc::unsupported: return kRefused;
    case Errc::unavailable: return kUnavailable;
    case Errc::not_found: return kUsage;  // README: 2 = usage error or input not found
    case Errc::cancelled: return kError;
  }
  return kError;
}

int run(CLI::App& app, int argc, char** argv, const int& rc) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsage;
  } catch (const std::exception& e) {
    // A command that throws (a std::filesystem call without an error_code,
    // a library's exception) ends with its message and exit 1, not with
    // std::terminate's abort (exit 134 and a core file).
    std::fprintf(stderr, "tenpak: error: %s\n", redact_urls(e.what()).c_str());
    return kError;
  }
  return rc;
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}
std::string json_text(const nlohmann::ordered_json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

int fail(const Status& s) {
  std::fprintf(stderr, "tenpak: error: %s\n", redact_urls(s.message()).c_str());
  return exit_code(s);
}

Result<std::string> download_parent(const std::string& near) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (near.empty()) {
    const fs::path t = fs::temp_directory_path(ec);
    if (ec) return Status{Errc::io, "no temporary directory to download into (TMPDIR): " + ec.message()};
    return t.string();
  }
  const fs::path p = fs::absolute(fs::path(near), ec);
  if (ec) return Status{Errc::io, near + ": no directory to download next to: " + ec.message()};
  return p.parent_path().string();
}

const CLI::Validator& finite_number() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(d)) return "Value " + s + " is not a finite number";
        return {};
      },
      "FINITE");
  return v;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) { b /= 1024; ++i; }
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.2f %s" : "%.0f %s", b, u[i]);
  return buf;
}

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()), last_() {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done, uint64_t total) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double frac = total ? static_cast<double>(done) / total : 1.0;
  int width = 30, fill = static_cast<int>(frac * width);
  std::string bar(fill, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%-10s [%s] %5.1f%% %s/s   ", label_.c_str(), bar.c_str(), frac * 100,
               human_bytes(secs > 0 ? done / secs : 0).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (tty_ && drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

void tune_malloc_for_rebuilds(size_t prefault) {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (prefault == 0) return;
  if (auto* p = static_cast<volatile char*>(std::malloc(prefault))) {
    for (size_t i = 0; i < prefault; i += 4096) p[i] = 0;  // volatile: not optimised away
    std::free(const_cast<char*>(p));
  }
}

}  // namespace tenpak::cli
