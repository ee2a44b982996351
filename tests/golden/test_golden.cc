// Decodes the golden deltas in tests/golden: every valid output must have the
// recorded sha256, every invalid delta must fail with the recorded error
// class at the recorded step. A format or codec change that breaks files
// written before fails here.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "tenpak/delta.h"
#include "tenpak/hash.h"
#include "tenpak/lossy_info.h"
#include "lanes_codec.h"  // codec/src (private): to run the portable sub_lanes decoder too

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
INSTANTIATE_TEST_SUITE_P(Golden, GoldenValid, ::testing::Values("valid", "valid-rans", "valid-lanes", "valid-patch", "valid-words", "valid-wrans",
                                                                     "valid-wrans-ids", "valid-approx", "valid-lowrank", "valid-grouped-rc", "valid-compact",
                                                                     "valid-compact-zstd", "valid-compact-record",
                                                                     "valid-compact-record-labels"));

// A compact index (docs/FORMAT.md) holds the same records as the version-1
// index it was written from: valid-compact*/ are valid-approx/ re-indexed.
TEST(Golden, CompactIndexHasTheSameRecords) {
  auto v1 = open_delta_dir(golden() + "/valid-approx");
  ASSERT_TRUE(v1.ok()) << v1.status().message();
  const std::string want = serialize_manifest((*v1)->manifest());
  for (const char* d : {"/valid-compact", "/valid-compact-zstd"}) {
    auto c = open_delta_dir(golden() + d);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(serialize_manifest((*c)->manifest()), want) << d;
    EXPECT_LT(fs::file_size(golden() + d + "/tenpak.idx"), want.size()) << d;
  }
}

// A compact index with a lossy record (flag 4, docs/FORMAT.md "Lossy
// deltas"): the same records as valid-approx/, and the record is what
// lossy_info reads for the delta (no side file is looked for).
TEST(Golden, CompactIndexRecordIsTheLossyInfo) {
  auto v1 = open_delta_dir(golden() + "/valid-approx");
  ASSERT_TRUE(v1.ok()) << v1.status().message();
  auto c = open_delta_dir(golden() + "/valid-compact-record");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(serialize_manifest((*c)->manifest()), serialize_manifest((*v1)->manifest()));
  const Manifest& m = (*c)->manifest();
  ASSERT_FALSE(m.lossy_record.empty());
  EXPECT_TRUE((*v1)->manifest().lossy_record.empty());
  auto li = load_lossy_info(golden() + "/valid-compact-record", m);
  ASSERT_TRUE(li.ok()) << li.status().message();
  ASSERT_TRUE(li->has_value());
  EXPECT_TRUE((*li)->in_index);
  EXPECT_EQ((*li)->method, "golden:1");
  EXPECT_DOUBLE_EQ((*li)->ppl_ratio, 1.00567);
  EXPECT_DOUBLE_EQ((*li)->kl_mean, 0.00510234);
  EXPECT_EQ((*li)->scored_tokens, 510u);
  // Written again, the index is byte for byte the golden one.
  auto again = serialize_manifest_compact(m, false);
  ASSERT_TRUE(again.ok());
  std::ifstream f(golden() + "/valid-compact-record/tenpak.idx", std::ios::binary);
  EXPECT_EQ(*again, std::string((std::istreambuf_iterator<char>(f)), {}));
}

// The record's optional qat_label_weight (docs/FORMAT.md, "Lossy deltas"):
// read from the index, shown in the summary line; valid-compact-record/,
// written before the field, reads as weight 0 and says nothing of labels.
TEST(Golden, CompactIndexRecordCarriesTheLabelWeight) {
  auto c = open_delta_dir(golden() + "/valid-compact-record-labels");
  ASSERT_TRUE(c.ok()) << c.status().message();
  auto li = load_lossy_info(golden() + "/valid-compact-record-labels", (*c)->manifest());
  ASSERT_TRUE(li.ok()) << li.status().message();
  ASSERT_TRUE(li->has_value());
  EXPECT_DOUBLE_EQ((*li)->qat_label_weight, 0.25);
  EXPECT_DOUBLE_EQ((*li)->ppl_ratio, 0.99647);
  EXPECT_NE(lossy_summary_line(**li).find("next tokens at weight 0.25"), std::string::npos) << lossy_summary_line(**li);
  auto old = open_delta_dir(golden() + "/valid-compact-record");
  ASSERT_TRUE(old.ok()) << old.status().message();
  auto lo = load_lossy_info(golden() + "/valid-compact-record", (*old)->manifest());
  ASSERT_TRUE(lo.ok() && lo->has_value());
  EXPECT_EQ((*lo)->qat_label_weight, 0.0);
  EXPECT_EQ(lossy_summary_line(**lo).find("next tokens"), std::string::npos);
  auto again = serialize_manifest_compact((*c)->manifest(), false);
  ASSERT_TRUE(again.ok());
  std::ifstream f(golden() + "/valid-compact-record-labels/tenpak.idx", std::ios::binary);
  EXPECT_EQ(*again, std::string((std::istreambuf_iterator<char>(f)), {}));
}

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
  for (const char* d : {"/valid", "/valid-rans", "/valid-lanes", "/valid-patch", "/valid-words", "/valid-approx", "/valid-lowrank"}) {
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
  EXPECT_GE(n, 13);
}

// invalid/unknown-codec must name a codec no reader knows. It once stored
// kMaxCodec + 1 of its day (8), which later became sub_rans: the case then
// passed only because that frame lacks the base codec 8 needs. Reads the raw
// codec byte of frame 0 (the frame table is the last nfr * 64 bytes before the
// 8-byte checksum, docs/FORMAT.md) so that it fails again if kMaxCodec reaches it.
TEST(Golden, UnknownCodecIsStillUnknown) {
  std::ifstream f(golden() + "/invalid/unknown-codec/tenpak.idx", std::ios::binary);
  std::string idx((std::istreambuf_iterator<char>(f)), {});
  ASSERT_GE(idx.size(), 36u + 64 + 8);
  uint32_t nfr;
  std::memcpy(&nfr, &idx[24], 4);
  ASSERT_GE(nfr, 1u);
  ASSERT_GE(idx.size(), 36u + 8 + size_t{64} * nfr);
  const uint8_t codec = static_cast<uint8_t>(idx[idx.size() - 8 - size_t{64} * nfr + 28]);
  EXPECT_GT(codec, kMaxCodec);
}

// read_frame takes the AVX-512 sub_lanes decoder where the CPU has it, so the
// tests above may never run the portable one: decode every codec-9 golden
// frame with both. Valid frames must give the same bytes with the recorded
// frame hash; the invalid/sub_lanes-* payloads must be refused by both.
TEST(Golden, LanesBothDecodersAgree) {
  auto slurp = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  const std::string base = slurp(golden() + "/base/base.bin");
  std::vector<std::string> dirs = {golden() + "/valid-lanes"};
  for (auto& e : fs::directory_iterator(golden() + "/invalid"))
    if (e.path().filename().string().rfind("sub_lanes-", 0) == 0) dirs.push_back(e.path().string());
  ASSERT_GE(dirs.size(), 5u);
  int valid = 0, refused = 0;
  for (const std::string& dir : dirs) {
    auto r = open_delta_dir(dir);
    ASSERT_TRUE(r.ok()) << dir << ": " << r.status().message();
    const std::string dat = slurp(dir + "/tenpak.dat");
    const bool want_ok = dir == golden() + "/valid-lanes";
    bool all_ok = true;
    for (const Frame& f : (*r)->manifest().frames) {
      ASSERT_EQ(f.codec, Codec::sub_lanes) << dir;
      ASSERT_LE(f.data_offset + f.data_len, dat.size()) << dir;
      ASSERT_LE(f.base_offset + f.base_len, base.size()) << dir;
      const auto* p = reinterpret_cast<const uint8_t*>(dat.data()) + f.data_offset;
      const auto* b = reinterpret_cast<const uint8_t*>(base.data()) + f.base_offset;
      std::vector<uint8_t> scalar(f.out_len);
      const bool ok2 = lanes::decode(p, f.data_len, b, f.out_len, f.dtype, scalar.data(), lanes::Path::scalar);
      bool ok1 = true;
      for (lanes::Path path : {lanes::Path::avx512, lanes::Path::avx2}) {
        if (!lanes::path_available(path)) continue;
        std::vector<uint8_t> simd(f.out_len);
        const bool ok = lanes::decode(p, f.data_len, b, f.out_len, f.dtype, simd.data(), path);
        const char* name = path == lanes::Path::avx512 ? " (AVX-512)" : " (AVX2)";
        EXPECT_EQ(ok, ok2) << dir << " frame at " << f.out_offset << name;
        if (want_ok) {
          EXPECT_EQ(simd, scalar) << dir << " frame at " << f.out_offset << name;
        }
        ok1 = ok1 && ok;
      }
      if (want_ok) {
        EXPECT_TRUE(ok2) << dir << " frame at " << f.out_offset;
        EXPECT_TRUE(xxh128(scalar.data(), scalar.size()) == f.hash) << dir << " frame at " << f.out_offset;
        ++valid;
      }
      all_ok = all_ok && ok1 && ok2;
    }
    if (!want_ok) {
      EXPECT_FALSE(all_ok) << dir << " decoded";
      ++refused;
    }
  }
  EXPECT_GE(valid, 9);
  EXPECT_GE(refused, 4);
}
