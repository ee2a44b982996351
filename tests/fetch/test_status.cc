// Errors as values (common/include/tenpak/status.h): codes are numbered and
// stable, each has its name, TP_ASSIGN_OR_RETURN passes errors up and values
// on; a local file that is not there is not_found, not io; an HTTP status or
// a transfer failure gets one code whoever asked (fetch/http_source.h).
#include <gtest/gtest.h>

#include "temp_dir.h"
#include "tenpak/block_source.h"
#include "tenpak/curl_api.h"
#include "tenpak/http_source.h"
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

// HttpSource and the listing GET of `tenpak dataset build` (tools/cmd_dataset.cc)
// both go through fetch_cause_of_http_status / fetch_cause_of_curl and
// errc_of_fetch_cause: README's exit codes, 2 for a 4xx (not_found), 7 for an
// origin that does not serve now (unavailable), 1 for an answer that is not
// one (io).
TEST(Status, EveryHttpStatusAndTransferFailureHasOneCode) {
  const std::pair<long, Errc> statuses[] = {
      {400, Errc::not_found},   {401, Errc::not_found},   {403, Errc::not_found},   {404, Errc::not_found},
      {410, Errc::not_found},   {416, Errc::not_found},   {451, Errc::not_found},   {429, Errc::unavailable},
      {500, Errc::unavailable}, {502, Errc::unavailable}, {503, Errc::unavailable}, {599, Errc::unavailable},
      {300, Errc::io},          {304, Errc::io},          {200, Errc::io},          {101, Errc::io}};
  for (auto [code, want] : statuses)
    EXPECT_EQ(errc_of_fetch_cause(fetch_cause_of_http_status(code)), want) << "HTTP " << code;
  const std::pair<CURLcode, Errc> failures[] = {
      {CURLE_COULDNT_CONNECT, Errc::unavailable}, {CURLE_COULDNT_RESOLVE_HOST, Errc::unavailable},
      {CURLE_OPERATION_TIMEDOUT, Errc::unavailable}, {CURLE_RECV_ERROR, Errc::unavailable},
      {CURLE_GOT_NOTHING, Errc::unavailable}, {CURLE_PARTIAL_FILE, Errc::unavailable},
      {CURLE_WRITE_ERROR, Errc::io}};
  for (auto [rc, want] : failures)
    EXPECT_EQ(errc_of_fetch_cause(fetch_cause_of_curl(rc)), want) << "CURLcode " << rc;
  EXPECT_EQ(errc_of_fetch_cause(FetchCause::changed), Errc::mismatch);
}
