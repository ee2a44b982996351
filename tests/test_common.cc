// common/: environment switches.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tenpak/env.h"

namespace {

TEST(Common, EnvFlagIsSetNotEmptyAndNotZero) {
  const char* k = "TENPAK_TEST_ENV_FLAG_X";
  ::unsetenv(k);
  EXPECT_FALSE(tenpak::env_flag(k));
  ::setenv(k, "", 1);
  EXPECT_FALSE(tenpak::env_flag(k));
  ::setenv(k, "0", 1);
  EXPECT_FALSE(tenpak::env_flag(k));
  for (const char* on : {"1", "yes", "00", "true"}) {
    ::setenv(k, on, 1);
    EXPECT_TRUE(tenpak::env_flag(k)) << on;
  }
  ::unsetenv(k);
}

}  // namespace
