// Every variable of TENPAK_TEST_ENV (tests/CMakeLists.txt) reaches a gtest
// discovered by tenpak_discover_tests. Regression test: the ENVIRONMENT list
// given through gtest_discover_tests(... PROPERTIES ...) was split, and only
// TENPAK_BIN arrived. Meaningful under ctest only (run directly, it fails).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

TEST(TestEnv, TenpakBinIsTheTenpakExecutable) {
  std::string bin = env("TENPAK_BIN");
  ASSERT_FALSE(bin.empty()) << "TENPAK_BIN not set";
  EXPECT_EQ(bin.find(';'), std::string::npos) << "a whole list in one variable: " << bin;
  EXPECT_EQ(access(bin.c_str(), X_OK), 0) << bin << " is not executable";
}

TEST(TestEnv, TenpakSharedIsSetToo) {
  std::string shared = env("TENPAK_SHARED");
  ASSERT_FALSE(shared.empty()) << "TENPAK_SHARED not set: only the first ENVIRONMENT entry reached the test";
  EXPECT_EQ(shared.find(';'), std::string::npos) << shared;
  EXPECT_EQ(shared.substr(shared.size() >= 7 ? shared.size() - 7 : 0), "/shared") << shared;
}

}  // namespace
