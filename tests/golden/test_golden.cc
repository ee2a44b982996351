// Decodes the golden deltas in tests/golden: every valid output must have the
// recorded sha256, every invalid delta must fail with the recorded error
// class at the recorded step. A format or codec change that breaks files
// written before fails here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tenpak/delta.h"
#include "tenpak/hash.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

std::string golden() {
  const char* d = std::getenv("TENPAK_GOLDEN");
  return d ? d : "tests/golden";
}

// Opens `dir`, attaches the golden base (sha256 checked) and rebuilds every
// output file frame by frame. Returns the first error with the step that
// produced it ("open", "base", "read"); on success fills name -> sha256.
Status decode_all(const std::string& dir, std::string& step, std::map<std::string, std::string>& sha) {
  step = "open";
  auto r = open_delta_dir(dir);
  if (!r.ok()) return r.status();
  step = "base";
  TP_RETURN_IF_ERROR(attach_local_base(**r, golden() + "/base", true));
  step = "read";
  const Manifest& m = (*r)->manifest();
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi) {
    const OutFile& of = m.out_files[fi];
    std::vector<uint8_t> out(of.size);
    for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k)
      TP_RETURN_IF_ERROR((*r)->read_frame(k, out.data() + m.frames[k].out_offset));
    sha[of.name] = hex(sha256(out.data(), out.size()));
  }
  return Status::Ok();
}

std::vector<std::string> lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> v;
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) v.push_back(l);
  return v;
}

}  // namespace

class GoldenValid : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Golden, GoldenValid, ::testing::Values("valid", "valid-rans"));

TEST_P(GoldenValid, DecodesToRecordedSha256) {
  const std::string dir = golden() + "/" + GetParam();
  auto exp = lines(dir + "/expected.txt");
  ASSERT_FALSE(exp.empty()) << dir << "/expected.txt missing";
  ASSERT_EQ(exp[0], "ok");
  std::string step;
  std::map<std::string, std::string> sha;
  Status st = decode_all(dir, step, sha);
  ASSERT_TRUE(st.ok()) << step << ": " << st.message();
  ASSERT_EQ(sha.size(), exp.size() - 1);
  for (size_t i = 1; i < exp.size(); ++i) {
    std::istringstream in(exp[i]);
    std::string h, name;
    in >> h >> name;
    ASSERT_TRUE(sha.count(name)) << name;
    EXPECT_EQ(sha[name], h) << name;
  }
}

TEST(Golden, EveryCodecIsCovered) {
  std::set<int> seen;
  for (const char* d : {"/valid", "/valid-rans"}) {
    auto r = open_delta_dir(golden() + d);
    ASSERT_TRUE(r.ok()) << r.status().message();
    for (auto& f : (*r)->manifest().frames) seen.insert(static_cast<int>(f.codec));
  }
  for (int c = 0; c <= kMaxCodec; ++c) EXPECT_TRUE(seen.count(c)) << "no golden frame for codec " << codec_name(static_cast<Codec>(c));
}

TEST(Golden, InvalidDeltasFailWithTheRecordedError) {
  int n = 0;
  for (auto& e : fs::directory_iterator(golden() + "/invalid")) {
    auto exp = lines((e.path() / "expected.txt").string());
    ASSERT_EQ(exp.size(), 1u) << e.path();
    std::istringstream in(exp[0]);
    std::string word, cls, want_step;
    in >> word >> cls >> want_step;
    ASSERT_EQ(word, "error") << e.path();
    std::string step;
    std::map<std::string, std::string> sha;
    Status st = decode_all(e.path().string(), step, sha);
    EXPECT_FALSE(st.ok()) << e.path() << " decoded";
    EXPECT_EQ(std::string(errc_name(st.code())), cls) << e.path() << ": " << st.message();
    EXPECT_EQ(step, want_step) << e.path() << ": " << st.message();
    ++n;
  }
  EXPECT_GE(n, 8);
}
