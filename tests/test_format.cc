#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tenpak/format.h"
#include "tenpak/out_file.h"
#include "tenpak/safetensors.h"
#include "test_util.h"

using namespace tenpak;

namespace {

Manifest sample() {
  Manifest m;
  m.base_locations = {"http://127.0.0.1:8080/base", "org/base@main"};
  m.base_files.push_back({"model.safetensors", 4096, {}});
  OutFile f;
  f.name = "sub/model.safetensors";
  f.size = 3000;
  f.first_frame = 0;
  f.frame_count = 2;
  m.out_files.push_back(f);
  Frame a;
  a.file = 0; a.out_offset = 0; a.out_len = 1000; a.codec = Codec::zstd; a.data_len = 10;
  Frame b;
  b.file = 0; b.out_offset = 1000; b.out_len = 2000; b.codec = Codec::sub_planes; b.dtype = DType::BF16;
  b.base_dtype = DType::BF16; b.base_file = 0; b.base_offset = 96; b.base_len = 2000; b.data_offset = 10; b.data_len = 20;
  m.frames = {a, b};
  return m;
}

}  // namespace

TEST(Format, RoundTrip) {
  Manifest m = sample();
  std::string s = serialize_manifest(m);
  auto p = parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->out_files[0].name, "sub/model.safetensors");
  EXPECT_EQ(p->frames[1].codec, Codec::sub_planes);
  EXPECT_EQ(p->frames[1].base_offset, 96u);
  EXPECT_EQ(p->base_locations, m.base_locations);
  EXPECT_EQ(serialize_manifest(*p), s);
}

TEST(Format, RejectsDamage) {
  std::string s = serialize_manifest(sample());
  auto parse = [](const std::string& b) { return parse_manifest(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "idx"); };
  // Every single-byte flip is caught (checksum or structure).
  for (size_t i = 0; i < s.size(); ++i) {
    std::string d = s;
    d[i] ^= 0x10;
    EXPECT_FALSE(parse(d).ok()) << "flip at " << i;
  }
  // Every truncation is caught.
  for (size_t n = 0; n < s.size(); ++n) EXPECT_FALSE(parse(s.substr(0, n)).ok()) << "truncated to " << n;
  // A future version is refused by name.
  std::string v = s;
  v[8] = 2;
  auto r = parse(v);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("version 2"), std::string::npos);
  EXPECT_EQ(r.status().code(), Errc::unsupported);
}

TEST(Format, RejectsUnsafeNames) {
  for (const char* bad : {"../etc/passwd", "/abs", "a//b", "a/./b", "a/../../b", "", "x/.."}) {
    Manifest m = sample();
    m.out_files[0].name = bad;
    std::string s = serialize_manifest(m);
    auto p = parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx");
    EXPECT_FALSE(p.ok()) << bad;
  }
  EXPECT_TRUE(is_safe_relative_path("a/b.safetensors"));
}

TEST(Format, RejectsFramesThatDoNotTile) {
  Manifest m = sample();
  m.frames[1].out_offset = 999;
  std::string s = serialize_manifest(m);
  EXPECT_FALSE(parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx").ok());
  m = sample();
  m.frames[1].base_offset = 4000;  // past the base file
  s = serialize_manifest(m);
  EXPECT_FALSE(parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx").ok());
  m = sample();
  m.out_files[0].size = 3001;
  s = serialize_manifest(m);
  EXPECT_FALSE(parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx").ok());
}

// The compact index (flags 1 and 3) reads back as the same records, raw and
// zstd, and its integrity checks hold as version 1's do.
TEST(Format, CompactIndexRoundTrip) {
  Manifest m = sample();
  m.frames[0].hash[3] = 7;
  m.frames[1].hash[15] = 9;
  m.out_files[0].sha256[0] = 1;
  const std::string v1 = serialize_manifest(m);
  auto parse = [](const std::string& b) { return parse_manifest(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "idx"); };
  for (bool z : {false, true}) {
    auto c = serialize_manifest_compact(m, z);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_LT(c->size(), v1.size());
    uint32_t flags;
    std::memcpy(&flags, c->data() + 12, 4);
    EXPECT_TRUE(flags == kIndexCompact || (z && flags == (kIndexCompact | kIndexBodyZstd)));
    auto p = parse(*c);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_EQ(serialize_manifest(*p), v1);
    ASSERT_TRUE(check_index_head(reinterpret_cast<const uint8_t*>(c->data()), kIndexHeadSize, c->size(), "idx").ok());
    for (size_t i = 0; i < c->size(); ++i) {
      std::string d = *c;
      d[i] ^= 0x10;
      EXPECT_FALSE(parse(d).ok()) << "flip at " << i;
    }
    for (size_t n = 0; n < c->size(); ++n) EXPECT_FALSE(parse(c->substr(0, n)).ok()) << "truncated to " << n;
  }
}

// No compact form for an index whose records are not in the order the
// compact layout implies (docs/FORMAT.md): refused, not silently reordered.
TEST(Format, CompactIndexNeedsFileOrder) {
  Manifest m = sample();
  m.out_files[0].first_frame = 1;
  m.out_files[0].frame_count = 1;
  EXPECT_FALSE(serialize_manifest_compact(m).ok());
  m = sample();
  m.frames[0].base_offset = 5;  // a base range without a base file
  EXPECT_FALSE(serialize_manifest_compact(m).ok());
}

// ---- safetensors parser ----------------------------------------------------

namespace {
Result<SafetensorsHeader> parse_st(const std::string& f) {
  auto n = safetensors_header_len(reinterpret_cast<const uint8_t*>(f.data()), f.size(), "x.safetensors");
  if (!n.ok()) return n.status();
  return parse_safetensors_header(f.data() + 8, *n, f.size(), "x.safetensors");
}
std::string with_header(const std::string& json, size_t data_len) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  std::memcpy(s.data(), &n, 8);
  return s + json + std::string(data_len, '\0');
}
}  // namespace

TEST(Safetensors, ParsesValid) {
  std::string f = tptest::make_st({{"b", DType::F32, {2}, std::string(8, 'x')}, {"a", DType::BF16, {3}, std::string(6, 'y')}});
  auto h = parse_st(f);
  ASSERT_TRUE(h.ok()) << h.status().message();
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[0].name, "b");
  EXPECT_EQ(h->tensors[1].end, f.size());
  EXPECT_EQ(h->data_start % 8, 0u);
}

TEST(Safetensors, RejectsBadFiles) {
  struct Case { std::string file; const char* expect; };
  std::string big(8, '\0');
  uint64_t huge = 200ull * 1000 * 1000;
  std::memcpy(big.data(), &huge, 8);
  big += std::string(64, ' ');
  std::string past(8, '\0');
  uint64_t n = 1000;
  std::memcpy(past.data(), &n, 8);
  past += "{}";
  std::vector<Case> cases = {
      {"abc", "shorter than 8"},
      {past, "past the end"},
      {big, "100 MB"},
      {with_header("{not json", 0), "not valid JSON"},
      {with_header("[1,2]", 0), "not a JSON object"},
      {with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlap"},
      {with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "out of range"},
      {with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "does not match"},
      {with_header(R"({"a":{"dtype":"Q4","shape":[8],"data_offsets":[0,8]}})", 8), "unsupported dtype"},
      {with_header(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "needs dtype"},
  };
  for (auto& c : cases) {
    auto h = parse_st(c.file);
    ASSERT_FALSE(h.ok()) << c.expect;
    EXPECT_NE(h.status().message().find(c.expect), std::string::npos) << h.status().message();
    EXPECT_NE(h.status().message().find("x.safetensors"), std::string::npos);
  }
}

// write_safetensors_file: the bytes of each tensor in the order given after
// make_safetensors_header's header (default metadata {"format": "pt"}), byte
// lengths from shape and dtype, and nothing left under the name on failure.
TEST(Safetensors, WriteFileStoresTensorsInOrder) {
  const std::string dir = tptest::temp_dir("st-write");
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  const std::vector<uint16_t> b = {0x3f80, 0xbf80, 0x4000};
  const int32_t c = 42;
  const std::vector<SafetensorsTensor> ts = {
      {"z.weight", DType::F32, {2, 3}, a.data()}, {"a.bias", DType::BF16, {3}, b.data()},
      {"scalar", DType::I32, {}, &c}, {"empty", DType::F16, {0, 4}, nullptr}};
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(write_safetensors_file(path, ts).ok());
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<TensorInfo> infos = {{"z.weight", DType::F32, {2, 3}, 0, 24},
                                   {"a.bias", DType::BF16, {3}, 0, 6},
                                   {"scalar", DType::I32, {}, 0, 4},
                                   {"empty", DType::F16, {0, 4}, 0, 0}};
  std::string want = make_safetensors_header(infos, {{"format", "pt"}});
  EXPECT_NE(want.find(R"("__metadata__":{"format":"pt"})"), std::string::npos);
  want.append(reinterpret_cast<const char*>(a.data()), 24);
  want.append(reinterpret_cast<const char*>(b.data()), 6);
  want.append(reinterpret_cast<const char*>(&c), 4);
  EXPECT_EQ(bytes, want);
  auto h = read_safetensors_header(path);
  ASSERT_TRUE(h.ok()) << h.status().message();
  ASSERT_EQ(h->tensors.size(), 4u);
  EXPECT_EQ(h->tensors[0].name, "z.weight");
  EXPECT_EQ(h->tensors[2].end, bytes.size());
  // Metadata as given; an unwritable path is an error naming the file, with no file left.
  ASSERT_TRUE(write_safetensors_file(dir + "/plain.safetensors", {ts[2]}, {}).ok());
  auto p = read_safetensors_header(dir + "/plain.safetensors");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->tensors.size(), 1u);
  const std::string bad = dir + "/missing/model.safetensors";
  Status st = write_safetensors_file(bad, ts);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir + "/missing/"), std::string::npos) << st.message();
  EXPECT_FALSE(std::filesystem::exists(dir + "/missing"));
  std::filesystem::remove_all(dir);
}

// A list the header cannot describe is an error naming the file and the
// tensor, with no file written: a name given twice (the JSON object would
// keep one entry and leave the other's bytes a hole, a file the safetensors
// library refuses with InvalidOffset), "__metadata__", no dtype, a byte
// length past 2^64, no data, a name that is not UTF-8.
TEST(Safetensors, WriteFileRefusesTensorsTheHeaderCannotHold) {
  const std::string dir = tptest::temp_dir("st-write-bad");
  const float v[2] = {1.0f, 2.0f};
  const std::string path = dir + "/model.safetensors";
  const std::vector<std::pair<std::vector<SafetensorsTensor>, std::string>> cases = {
      {{{"a", DType::F32, {1}, v}, {"a", DType::F32, {1}, v + 1}}, "'a': named twice"},
      {{{"__metadata__", DType::F32, {1}, v}}, "'__metadata__'"},
      {{{"u", DType::unknown, {1}, v}}, "'u': no safetensors dtype"},
      {{{"big", DType::F32, {1ull << 32, 1ull << 31}, v}}, "'big': byte length over 2^64"},
      {{{"null", DType::F32, {2}, nullptr}}, "'null': no data"},
      {{{"bad\xff", DType::F32, {1}, v}}, "cannot make the safetensors header"},
  };
  for (const auto& [ts, why] : cases) {
    Status st = write_safetensors_file(path, ts);
    EXPECT_FALSE(st.ok()) << why;
    EXPECT_EQ(st.code(), Errc::invalid) << st.message();
    EXPECT_EQ(st.message().rfind(path + ": ", 0), 0u) << st.message();
    EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
    EXPECT_TRUE(std::filesystem::is_empty(dir)) << why;
  }
  std::filesystem::remove_all(dir);
}

TEST(Format, ManyFramesRoundTrip) {
  Manifest m;
  OutFile f;
  f.name = "big.bin";
  f.frame_count = 5000;
  for (uint32_t k = 0; k < 5000; ++k) {
    Frame fr;
    fr.out_offset = k * 100ull;
    fr.out_len = 100;
    fr.data_offset = k;
    fr.data_len = 1;
    m.frames.push_back(fr);
  }
  f.size = 500000;
  m.out_files.push_back(f);
  std::string s = serialize_manifest(m);
  EXPECT_EQ(s.size(), 8 + 24 + 4 + (4 + 7 + 8 + 32 + 12) + 5000 * 64 + 8u);
  auto p = parse_manifest(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->frames.size(), 5000u);
}
