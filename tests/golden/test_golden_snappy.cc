// Golden deltas of codec 10's snappy pages (tests/golden/snappy, written by
// gen_golden_snappy.cc): today's reader must rebuild every valid file (frame
// hashes and sha256) and refuse every invalid case as corrupt when reading.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tenpak/delta.h"
#include "tenpak/hash.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

std::string root() {
  const char* g = std::getenv("TENPAK_GOLDEN");
  return std::string(g ? g : "tests/golden") + "/snappy";
}
std::string read(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

Status rebuild(const std::string& dir) {
  auto r = open_delta_dir(dir);
  if (!r.ok()) return r.status();
  TP_RETURN_IF_ERROR(attach_local_base(**r, root() + "/base", true));
  auto n = apply_delta(**r, "", ApplyOptions{});
  return n.ok() ? Status::Ok() : n.status();
}

}  // namespace

TEST(GoldenSnappy, ValidFilesRebuild) {
  const std::string dir = root() + "/valid";
  ASSERT_TRUE(fs::exists(dir + "/tenpak.idx")) << dir;
  Status st = rebuild(dir);
  ASSERT_TRUE(st.ok()) << st.to_string();
  // expected.txt lists the same sha256 as the index.
  auto r = open_delta_dir(dir);
  ASSERT_TRUE(r.ok());
  std::istringstream in(read(dir + "/expected.txt"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "ok");
  size_t n = 0;
  for (auto& of : (*r)->manifest().out_files) {
    ASSERT_TRUE(std::getline(in, line));
    EXPECT_EQ(line, hex(of.sha256) + " " + of.name);
    ++n;
  }
  EXPECT_EQ(n, 4u);
}

TEST(GoldenSnappy, InvalidCasesAreRefusedAsCorrupt) {
  int n = 0;
  for (auto& e : fs::directory_iterator(root() + "/invalid")) {
    EXPECT_EQ(read(e.path().string() + "/expected.txt"), "error corrupt read\n") << e.path();
    Status st = rebuild(e.path().string());
    EXPECT_EQ(st.code(), Errc::corrupt) << e.path() << ": " << st.to_string();
    EXPECT_NE(st.message().find("frame 0"), std::string::npos) << st.message();
    ++n;
  }
  EXPECT_EQ(n, 6);
}
