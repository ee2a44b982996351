// cli::run (tools/cli_util.cc): the exit code of every way a command line
// ends, as README's exit codes state them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_util.h"

namespace {

using tenpak::cli::run;

// Runs `args` through an app with one subcommand `cmd` whose callback is
// `body` (it sets rc, or throws); stderr is returned in `err`.
int run_with(std::vector<std::string> args, const std::function<void(int&)>& body, std::string* err = nullptr) {
  CLI::App app{"test"};
  app.set_version_flag("--version", "1.0");
  app.require_subcommand(1);
  int rc = 0;
  CLI::App* c = app.add_subcommand("cmd", "a command");
  int n = 0;
  c->add_option("-n", n, "a number");
  c->callback([&] { body(rc); });
  args.insert(args.begin(), "tenpak");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int got = run(app, static_cast<int>(argv.size()), argv.data(), rc);
  testing::internal::GetCapturedStdout();
  const std::string e = testing::internal::GetCapturedStderr();
  if (err) *err = e;
  return got;
}

TEST(CliRun, HelpAndVersionAreZero) {
  EXPECT_EQ(run_with({"--help"}, [](int&) {}), 0);
  EXPECT_EQ(run_with({"cmd", "--help"}, [](int&) {}), 0);
  EXPECT_EQ(run_with({"--version"}, [](int&) {}), 0);
}

TEST(CliRun, RefusedCommandLinesAreUsageErrors) {
  EXPECT_EQ(run_with({}, [](int&) {}), tenpak::cli::kUsage);                      // no command
  EXPECT_EQ(run_with({"nope"}, [](int&) {}), tenpak::cli::kUsage);                // unknown command
  EXPECT_EQ(run_with({"cmd", "--bad"}, [](int&) {}), tenpak::cli::kUsage);        // unknown option
  EXPECT_EQ(run_with({"cmd", "-n", "x"}, [](int&) {}), tenpak::cli::kUsage);      // not a number
  EXPECT_EQ(run_with({"cmd", "-n"}, [](int&) {}), tenpak::cli::kUsage);           // missing value
}

TEST(CliRun, ACommandsOwnCodeIsReturned) {
  EXPECT_EQ(run_with({"cmd"}, [](int& rc) { rc = tenpak::cli::kOk; }), 0);
  EXPECT_EQ(run_with({"cmd"}, [](int& rc) { rc = tenpak::cli::kMismatch; }), tenpak::cli::kMismatch);
  EXPECT_EQ(run_with({"cmd", "-n", "3"}, [](int& rc) { rc = tenpak::cli::kTargetNotMet; }), tenpak::cli::kTargetNotMet);
}

// An exception a command lets out was std::terminate's abort (exit 134, a
// core file): `tenpak delta estimate` with TMPDIR naming no directory threw
// std::filesystem::filesystem_error from temp_directory_path().
TEST(CliRun, AnExceptionFromACommandIsAnErrorWithItsMessage) {
  std::string err;
  EXPECT_EQ(run_with({"cmd"}, [](int&) { throw std::runtime_error("boom at http://u:secret@host/x"); }, &err),
            tenpak::cli::kError);
  EXPECT_NE(err.find("tenpak: error: boom"), std::string::npos) << err;
  EXPECT_EQ(err.find("secret"), std::string::npos) << err;  // redacted like every error
  EXPECT_EQ(run_with({"cmd"}, [](int&) { (void)std::filesystem::absolute(""); }, &err), tenpak::cli::kError);
  EXPECT_NE(err.find("tenpak: error: filesystem error"), std::string::npos) << err;
  // CLI11's own refusals from a callback stay usage errors.
  EXPECT_EQ(run_with({"cmd"}, [](int&) { throw CLI::ValidationError("-n", "out of range"); }), tenpak::cli::kUsage);
}

TEST(CliDownloadParent, NextToTheOutputOrInTheTemporaryDirectory) {
  auto p = tenpak::cli::download_parent("/a/b/out");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "/a/b");
  auto t = tenpak::cli::download_parent("");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(*t, std::filesystem::temp_directory_path().string());
  // TMPDIR naming no directory: an error naming TMPDIR (temp_directory_path
  // threw here, out of `delta estimate` and `dataset estimate`).
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old ? old : "";
  setenv("TMPDIR", "/nonexistent/tenpak-no-such-dir", 1);
  auto bad = tenpak::cli::download_parent("");
  if (old) setenv("TMPDIR", saved.c_str(), 1);
  else unsetenv("TMPDIR");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), tenpak::Errc::io);
  EXPECT_NE(bad.status().message().find("TMPDIR"), std::string::npos) << bad.status().message();
}

// json_text: bytes that are not UTF-8 come out as U+FFFD (dump's default
// throws), for both JSON types, at every indent; key order kept for
// ordered_json.
TEST(CliJsonText, NotUtf8IsReplacementCharacterForBothTypes) {
  const std::string bad = std::string("a\xff\xfe") + "b";
  nlohmann::json j = {{"path", bad}};
  EXPECT_EQ(tenpak::cli::json_text(j, -1), "{\"path\":\"a\xef\xbf\xbd\xef\xbf\xbd" "b\"}");
  nlohmann::ordered_json o;
  o["z"] = bad;
  o["a"] = 1;
  EXPECT_EQ(tenpak::cli::json_text(o, -1), "{\"z\":\"a\xef\xbf\xbd\xef\xbf\xbd" "b\",\"a\":1}");
  EXPECT_EQ(tenpak::cli::json_text(o, 2), "{\n  \"z\": \"a\xef\xbf\xbd\xef\xbf\xbd" "b\",\n  \"a\": 1\n}");
  EXPECT_TRUE(nlohmann::json::accept(tenpak::cli::json_text(o, 2)));
}

// finite_number(): CLI11's number checks pass "nan" (every comparison with
// NaN is false); chained after them, NaN and infinities are usage errors.
TEST(CliFiniteNumber, NanAndInfinityAreRefusedWhereTheNumberChecksPassThem) {
  auto parse = [](const std::string& v, bool finite) {
    CLI::App app{"test"};
    double x = 0;
    auto* o = app.add_option("--x", x)->check(CLI::NonNegativeNumber);
    if (finite) o->check(tenpak::cli::finite_number());
    std::vector<std::string> args = {"t", "--x", v};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
      return true;
    } catch (const CLI::ParseError&) {
      return false;
    }
  };
  EXPECT_TRUE(parse("nan", false));  // why the check exists
  EXPECT_FALSE(parse("nan", true));
  EXPECT_FALSE(parse("-nan", true));
  EXPECT_FALSE(parse("inf", true));
  EXPECT_FALSE(parse("1e999", true));
  EXPECT_FALSE(parse("x", true));
  EXPECT_TRUE(parse("0", true));
  EXPECT_TRUE(parse("0.25", true));
  EXPECT_TRUE(parse("1e-3", true));
  EXPECT_FALSE(parse("-1", true));  // the chained NonNegativeNumber still applies
}

}  // namespace
