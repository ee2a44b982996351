// Errors as values (common/include/tenpak/status.h): codes are numbered and
// stable, each has its name, TP_ASSIGN_OR_RETURN passes errors up and values
// on; a local file that is not there is not_found, not io.
#include <gtest/gtest.h>

#include "temp_dir.h"
#include "tenpak/block_source.h"
#include "tenpak/status.h"

using namespace tenpak;

TEST(Status, CodesKeepTheirNumbersAndNames) {
  const std::pair<Errc, int> numbers[] = {{Errc::ok, 0},       {Errc::io, 1},         {Errc::corrupt, 2},
                                          {Errc::invalid, 3},  {Errc::mismatch, 4},   {Errc::no_space, 5},
                                          {Errc::exists, 6},   {Errc::unsupported, 7}, {Errc::unavailable, 8},
                                          {Errc::not_found, 9}, {Errc::cancelled, 10}};
  for (auto [e, n] : numbers) EXPECT_EQ(static_cast<int>(e), n) << errc_name(e);
  EXPECT_STREQ(errc_name(Errc::not_found), "not_found");
  EXPECT_STREQ(errc_name(Errc::cancelled), "cancelled");
  EXPECT_STREQ(errc_name(Errc::unavailable), "unavailable");
}

namespace {
Result<int> half(int x) {
  if (x % 2) return Status{Errc::invalid, "odd"};
  return x / 2;
}
Result<int> quarter(int x) {
  TP_ASSIGN_OR_RETURN(int h, half(x));
  TP_ASSIGN_OR_RETURN(h, half(h));  // an existing variable, on the same function's next line
  return h;
}
}  // namespace

TEST(Status, AssignOrReturn) {
  auto q = quarter(12);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 3);
  auto odd = quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().code(), Errc::invalid);
  EXPECT_EQ(odd.status().message(), "odd");
}

TEST(Status, AMissingLocalFileIsNotFound) {
  tenpak::fakes::TempDir d;
  auto r = open_local_file(d.path + "/nothing-here");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::not_found) << r.status().message();
}
