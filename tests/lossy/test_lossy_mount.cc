// The recorded quality of a lossy delta where people look for it: the record
// (codec/include/tenpak/lossy_info.h) in the compact index, or in deltas
// written before it the side file, is read by the mount, locally and over
// HTTP (the side file through the same kind of source as the index), and
// shown in stats.json; a delta without either is served with its quality
// "unknown"; a side file of another delta is refused. The lossy delta is made here
// without libtorch: the lossless delta of a small generated pair with one
// matrix's frames re-encoded as codec 11 (sign method), as tenpak-ml does.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sys/wait.h>

#include "servers.h"
#include "temp_dir.h"
#include "tenpak/approx_codec.h"
#include "tenpak/delta.h"
#include "tenpak/frame_codec.h"
#include "tenpak/hash.h"
#include "tenpak/lossy_info.h"
#include "tenpak/mount.h"
#include "tenpak/safetensors.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace tenpak;

namespace {

constexpr int kRows = 256, kCols = 512;  // 512 KiB of F32: more than one frame (first frame 64 KiB)
const char* kName = "model.layers.0.mlp.down_proj.weight";

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}
void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

void write_model(const std::string& dir, const std::vector<float>& w) {
  fs::create_directories(dir);
  std::string h = json({{kName, {{"dtype", "F32"}, {"shape", {kRows, kCols}}, {"data_offsets", {0, w.size() * 4}}}}}).dump();
  while ((8 + h.size()) % 8) h += ' ';
  std::string s(8, '\0');
  uint64_t n = h.size();
  std::memcpy(s.data(), &n, 8);
  s += h;
  s.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
  spit(dir + "/model.safetensors", s);
  spit(dir + "/config.json", "{\"model_type\": \"llama\"}\n");
}

// A lossy delta at `out`: the lossless delta of base/ft with the matrix's
// frames replaced by codec 11 (sign of the change, scale mean |change|).
void make_lossy_delta(const std::string& base, const std::string& ft, const std::vector<float>& d, const std::string& out) {
  const std::string tmp = out + ".lossless";
  BuildOptions bo;
  bo.threads = 1;
  auto built = build_delta(base, ft, tmp, bo);
  ASSERT_TRUE(built.ok()) << built.status().to_string();
  auto rd = open_delta_dir(tmp);
  ASSERT_TRUE(rd.ok()) << rd.status().to_string();
  Manifest m = (*rd)->manifest();
  const std::string dat = slurp(tmp + "/" + kDataFile);
  ApproxTensor a;
  a.method = ApproxMethod::sign;
  a.rows = kRows;
  a.cols = kCols;
  double s = 0;
  for (float x : d) s += std::fabs(x);
  a.scale = static_cast<float>(s / d.size());
  for (float x : d) a.negative.push_back(x < 0);
  auto h = read_safetensors_header(ft + "/model.safetensors");
  ASSERT_TRUE(h.ok());
  const uint64_t begin = h->tensors[0].begin;
  const std::string base_file = slurp(base + "/model.safetensors");
  std::string nd;
  uint32_t replaced = 0, fi_model = 0;
  for (uint32_t fi = 0; fi < m.out_files.size(); ++fi)
    if (m.out_files[fi].name == "model.safetensors") fi_model = fi;
  const OutFile& mf = m.out_files[fi_model];
  for (uint32_t k = 0; k < m.frames.size(); ++k) {
    Frame& f = m.frames[k];
    const uint64_t off = f.data_offset;
    f.data_offset = nd.size();
    const bool mine = k >= mf.first_frame && k < mf.first_frame + mf.frame_count && f.out_offset >= begin &&
                      f.base_file != kNoBase && m.base_files[f.base_file].name == "model.safetensors" &&
                      codec_needs_base(f.codec);
    if (!mine) {
      nd.append(dat, off, f.data_len);
      continue;
    }
    auto p = encode_approx_frame(a, (f.out_offset - begin) / 4, f.out_len / 4, 3);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    f.codec = Codec::approx;
    f.data_len = static_cast<uint32_t>(p->size());
    nd += *p;
    std::vector<uint8_t> o(f.out_len);
    ASSERT_TRUE(decode_frame(f, reinterpret_cast<const uint8_t*>(p->data()),
                             reinterpret_cast<const uint8_t*>(base_file.data()) + f.base_offset, o.data())
                    .ok());
    f.hash = xxh128(o.data(), o.size());
    ++replaced;
  }
  ASSERT_GT(replaced, 1u) << "the matrix should span several frames";
  fs::create_directories(out);
  spit(out + "/" + kDataFile, nd);
  spit(out + "/" + kIndexFile, serialize_manifest(m));
  // The rebuilt file's own sha256, through a reader of the new delta.
  auto r2 = open_delta_dir(out);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  ASSERT_TRUE(attach_local_base(**r2, base, false).ok());
  const OutFile& of = m.out_files[fi_model];
  Sha256Hasher sh;
  for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
    std::vector<uint8_t> b(m.frames[k].out_len);
    ASSERT_TRUE((*r2)->read_frame(k, b.data()).ok());
    sh.update(b.data(), b.size());
  }
  m.out_files[fi_model].sha256 = sh.finish();
  spit(out + "/" + kIndexFile, serialize_manifest(m));
  json rebuilt = json::array();
  for (auto& f : m.out_files) rebuilt.push_back({{"name", f.name}, {"sha256", hex(f.sha256)}});
  json side = {{"format", "tenpak.lossy"},
               {"version", 1},
               {"lossy", true},
               {"method", "bitdelta"},
               {"quality",
                {{"eval_text", "held-out.txt"}, {"scored_tokens", 4096}, {"ppl_ratio", 1.0123}, {"ppl_delta_pct", 1.23},
                 {"kl_mean", 0.0456}, {"top1_agreement", 0.987}}},
               {"rebuilt", rebuilt}};
  spit(out + "/" + kLossyFile, side.dump(2));
  fs::remove_all(tmp);
}

// The record a delta built since the record moved into the index carries:
// no rebuilt list (the index's own files), numbers unlike the side file's.
const char* kRecord =
    "{\"format\":\"tenpak.lossy\",\"version\":1,\"lossy\":true,\"method\":\"gptqmix:0.0625\",\"embeddings\":true,"
    "\"quality\":{\"eval_text\":\"held-out-2.txt\",\"scored_tokens\":16320,\"ppl_ratio\":1.00567,"
    "\"ppl_delta_pct\":0.567,\"kl_mean\":0.0051,\"top1_agreement\":0.932}}";

// The delta at `from` (index and data) with its index rewritten compact and
// carrying `record`, at `out`.
void with_record(const std::string& from, const std::string& record, const std::string& out) {
  fs::create_directories(out);
  const std::string idx = slurp(from + "/" + kIndexFile);
  auto m = parse_manifest(reinterpret_cast<const uint8_t*>(idx.data()), idx.size(), from);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  m->lossy_record = record;
  auto c = serialize_manifest_compact(*m, true);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  spit(out + "/" + kIndexFile, *c);
  fs::copy_file(from + "/" + kDataFile, out + "/" + kDataFile);
}

class LossyMount : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fakes::TempDir("lossy-mount");
    std::mt19937 g(7);
    std::normal_distribution<float> n(0, 0.05f);
    std::vector<float> b(kRows * kCols), f(b.size()), d(b.size());
    for (size_t i = 0; i < b.size(); ++i) {
      b[i] = n(g);
      d[i] = n(g) * 0.1f;
      f[i] = b[i] + d[i];
    }
    write_model(*dir_ / "base", b);
    write_model(*dir_ / "ft", f);
    make_lossy_delta(*dir_ / "base", *dir_ / "ft", d, *dir_ / "www/lossy");
    // The same delta without its side file.
    fs::create_directories(*dir_ / "www/bare");
    for (auto* n : {kIndexFile, kDataFile}) fs::copy_file(*dir_ / ("www/lossy/" + std::string(n)), *dir_ / ("www/bare/" + std::string(n)));
    // The same delta with its record in the index, and beside it a side file
    // of another delta, which a reader must not look at.
    with_record(*dir_ / "www/lossy", kRecord, *dir_ / "www/inidx");
    json other = json::parse(slurp(*dir_ / "www/lossy/tenpak.lossy.json"));
    other["rebuilt"][0]["sha256"] = std::string(64, '0');
    spit(*dir_ / "www/inidx/tenpak.lossy.json", other.dump());
  }
  static void TearDownTestSuite() { delete dir_; }

  static MountOptions options(const std::string& source) {
    MountOptions o;
    o.source = source;
    o.base = *dir_ / "base";
    o.persistent_cache = false;
    o.fs.prefetch_workers = 0;
    o.log = [](const std::string&) {};
    return o;
  }
  // stats.json's "lossy" list, after checking the served file is the rebuilt one the side file names.
  static json lossy_of(Mount& mt) {
    auto a = mt.fs().lookup(ModelFs::kRootIno, "model.safetensors");
    EXPECT_TRUE(a.has_value());
    if (!a) return {};
    std::vector<uint8_t> buf(a->size);
    auto n = mt.fs().read(a->ino, 0, buf.size(), buf.data());
    EXPECT_TRUE(n.ok());
    json side = json::parse(slurp(*dir_ / "www/lossy/tenpak.lossy.json"));
    for (auto& r : side["rebuilt"])
      if (r["name"] == "model.safetensors") EXPECT_EQ(hex(sha256(buf.data(), buf.size())), r["sha256"].get<std::string>());
    EXPECT_NE(std::string(buf.begin(), buf.end()), slurp(*dir_ / "ft/model.safetensors")) << "served bytes are lossy";
    json j = json::parse(mt.fs().stats_json());
    return j.contains("lossy") ? j["lossy"] : json();
  }
  static fakes::TempDir* dir_;
};
fakes::TempDir* LossyMount::dir_ = nullptr;

void expect_recorded(const json& l) {
  ASSERT_TRUE(l.is_array()) << l;
  ASSERT_EQ(l.size(), 1u) << l;
  EXPECT_EQ(l[0]["model"], "/");
  EXPECT_EQ(l[0]["method"], "bitdelta");
  EXPECT_DOUBLE_EQ(l[0]["ppl_ratio"].get<double>(), 1.0123);
  EXPECT_DOUBLE_EQ(l[0]["kl_mean"].get<double>(), 0.0456);
  EXPECT_DOUBLE_EQ(l[0]["top1_agreement"].get<double>(), 0.987);
  EXPECT_EQ(l[0]["scored_tokens"], 4096);
  EXPECT_EQ(l[0]["eval_text"], "held-out.txt");
}

TEST_F(LossyMount, LocalDeltaStatsShowTheRecordedQuality) {
  auto mt = Mount::open(options(*dir_ / "www/lossy"));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  expect_recorded(lossy_of(**mt));
}

TEST_F(LossyMount, RemoteDeltaStatsShowTheRecordedQuality) {
  tptest::Nginx ng;
  std::string err;
  if (!ng.start(*dir_ / "www", *dir_ / "nginx", &err)) GTEST_SKIP() << err;
  auto mt = Mount::open(options(ng.url() + "/lossy"));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  expect_recorded(lossy_of(**mt));
  // Without a side file on the server: served, quality unknown.
  auto bare = Mount::open(options(ng.url() + "/bare"));
  ASSERT_TRUE(bare.ok()) << bare.status().to_string();
  json l = lossy_of(**bare);
  ASSERT_EQ(l.size(), 1u) << l;
  EXPECT_EQ(l[0]["quality"], "unknown");
  EXPECT_FALSE(l[0].contains("method"));
}

TEST_F(LossyMount, ALossyDeltaWithoutSideFileIsServedWithQualityUnknown) {
  auto mt = Mount::open(options(*dir_ / "www/bare"));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  json l = lossy_of(**mt);
  ASSERT_EQ(l.size(), 1u) << l;
  EXPECT_EQ(l[0]["quality"], "unknown");
}

TEST_F(LossyMount, ASideFileOfAnotherDeltaIsRefused) {
  const std::string d = *dir_ / "other";
  fs::create_directories(d);
  for (auto* n : {kIndexFile, kDataFile}) fs::copy_file(*dir_ / ("www/lossy/" + std::string(n)), d + "/" + n);
  json side = json::parse(slurp(*dir_ / "www/lossy/tenpak.lossy.json"));
  side["rebuilt"][0]["sha256"] = std::string(64, '0');
  spit(d + "/tenpak.lossy.json", side.dump());
  auto mt = Mount::open(options(d));
  ASSERT_FALSE(mt.ok());
  EXPECT_EQ(mt.status().code(), Errc::corrupt);
  EXPECT_NE(mt.status().message().find("sha256 differs"), std::string::npos) << mt.status().message();
}

void expect_index_record(const json& l) {
  ASSERT_TRUE(l.is_array()) << l;
  ASSERT_EQ(l.size(), 1u) << l;
  EXPECT_EQ(l[0]["method"], "gptqmix:0.0625");
  EXPECT_DOUBLE_EQ(l[0]["ppl_ratio"].get<double>(), 1.00567);
  EXPECT_DOUBLE_EQ(l[0]["kl_mean"].get<double>(), 0.0051);
  EXPECT_EQ(l[0]["scored_tokens"], 16320);
  EXPECT_EQ(l[0]["eval_text"], "held-out-2.txt");
}

TEST_F(LossyMount, TheRecordInTheIndexIsShownAndNoSideFileIsRead) {
  auto mt = Mount::open(options(*dir_ / "www/inidx"));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  expect_index_record(lossy_of(**mt));
  tptest::Nginx ng;
  std::string err;
  if (!ng.start(*dir_ / "www", *dir_ / "nginx2", &err)) GTEST_SKIP() << err;
  auto rm = Mount::open(options(ng.url() + "/inidx"));
  ASSERT_TRUE(rm.ok()) << rm.status().to_string();
  expect_index_record(lossy_of(**rm));
}

TEST_F(LossyMount, ABadRecordInTheIndexIsRefused) {
  const std::string d = *dir_ / "badrec";
  with_record(*dir_ / "www/lossy", json({{"format", "tenpak.lossy"}, {"version", 2}, {"method", "x"}, {"quality", json::object()}}).dump(), d);
  auto mt = Mount::open(options(d));
  ASSERT_FALSE(mt.ok());
  EXPECT_EQ(mt.status().code(), Errc::corrupt);
  EXPECT_NE(mt.status().message().find("lossy record"), std::string::npos) << mt.status().message();
}

// A catalog whose lossy model sits in a directory whose name is not UTF-8:
// stats.json (read through the file system, i.e. from a FUSE read) names it
// with U+FFFD. dump() threw type_error 316 there, which would end the daemon.
TEST_F(LossyMount, StatsNameAModelDirectoryThatIsNotUtf8) {
  const std::string cat = *dir_ / "catalog";
  const std::string model = cat + "/m\xff";
  fs::create_directories(model);
  for (auto* n : {kIndexFile, kDataFile}) fs::copy_file(*dir_ / ("www/inidx/" + std::string(n)), model + "/" + n);
  auto mt = Mount::open(options(cat));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  std::string text;
  ASSERT_NO_THROW(text = (*mt)->fs().stats_json());
  json j = json::parse(text);
  ASSERT_TRUE(j.contains("lossy")) << text;
  EXPECT_EQ(j["lossy"][0]["model"], "m\xef\xbf\xbd");
  EXPECT_EQ(j["lossy"][0]["method"], "gptqmix:0.0625");  // kRecord, in the index
}

// The fields a reader does not need (docs/FORMAT.md, "Lossy deltas": all but
// format, version, method and quality) may have any type: `delta inspect`
// and `delta verify` show them as unknown instead of failing on them (they
// threw nlohmann's type_error, uncaught: abort, exit 134).
TEST_F(LossyMount, TheCliShowsARecordWithOddlyTypedNumbers) {
  const char* bin = std::getenv("TENPAK_BIN");
  if (!bin || !*bin) GTEST_SKIP() << "TENPAK_BIN not set (run under ctest)";
  const std::string d = *dir_ / "oddrec";
  with_record(*dir_ / "www/lossy", json({{"format", "tenpak.lossy"}, {"version", 1}, {"method", "x"},
                                         {"quality", {{"ppl_ratio", "high"}, {"kl_mean", {1, 2}}, {"eval_text", 5},
                                                      {"top1_agreement", nullptr}}}}).dump(), d);
  const std::string base = *dir_ / "base";
  for (const std::string args : {"delta inspect " + d, "delta inspect --json " + d,
                                 "delta verify --base " + base + " " + d}) {
    const std::string cmd = std::string(bin) + " " + args + " > " + d + "/out.txt 2>&1";
    const int st = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(st)) << args;
    EXPECT_EQ(WEXITSTATUS(st), 0) << args << ": " << slurp(d + "/out.txt");
    if (args.find("--json") == std::string::npos)
      EXPECT_NE(slurp(d + "/out.txt").find("LOSSY delta (x)"), std::string::npos) << args << ": " << slurp(d + "/out.txt");
  }
}

// A delta whose codes were trained with the calibration text's labels
// (--qat-label-weight) says so in its record (docs/FORMAT.md, "Lossy
// deltas"), and every reader shows it: stats.json, `tenpak stats`' source,
// `delta inspect` and `delta verify` (their summary line, and the record in
// --json). kRecord, without the field, shows none of it.
TEST_F(LossyMount, TheLabelWeightOfTheCodesTrainingIsShown) {
  const std::string d = *dir_ / "labels";
  json rec = json::parse(kRecord);
  rec["qat_label_weight"] = 0.25;
  with_record(*dir_ / "www/lossy", rec.dump(), d);
  auto mt = Mount::open(options(d));
  ASSERT_TRUE(mt.ok()) << mt.status().to_string();
  json l = lossy_of(**mt);
  expect_index_record(l);
  ASSERT_TRUE(l[0].contains("qat_label_weight")) << l;
  EXPECT_DOUBLE_EQ(l[0]["qat_label_weight"].get<double>(), 0.25);
  auto plain = Mount::open(options(*dir_ / "www/inidx"));
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  json p = lossy_of(**plain);
  ASSERT_EQ(p.size(), 1u) << p;
  EXPECT_FALSE(p[0].contains("qat_label_weight")) << p;
  const char* bin = std::getenv("TENPAK_BIN");
  if (!bin || !*bin) GTEST_SKIP() << "TENPAK_BIN not set (run under ctest)";
  const std::string base = *dir_ / "base";
  for (const std::string& dir : {d, std::string(*dir_ / "www/inidx")})
    for (const std::string args : {"delta inspect " + dir, "delta inspect --json " + dir,
                                   "delta verify --base " + base + " " + dir, "delta verify --json --base " + base + " " + dir}) {
      const std::string cmd = std::string(bin) + " " + args + " > " + d + "/../labels-out.txt 2>&1";
      const int st = std::system(cmd.c_str());
      ASSERT_TRUE(WIFEXITED(st)) << args;
      const std::string out = slurp(d + "/../labels-out.txt");
      EXPECT_EQ(WEXITSTATUS(st), 0) << args << ": " << out;
      const bool json_out = args.find("--json") != std::string::npos, with = dir == d;
      const char* want = json_out ? "\"qat_label_weight\"" : "next tokens at weight 0.25 (--qat-label-weight): not a reproduction";
      EXPECT_EQ(out.find(want) != std::string::npos, with) << args << ": " << out;
    }
}

TEST(LossyInfo, TheLabelWeightIsOptionalAndChecked) {
  Manifest m;
  const json rec = {{"format", "tenpak.lossy"}, {"version", 1}, {"method", "gptqmix:0.0625"}, {"quality", {{"kl_mean", 0.05}}}};
  auto none = parse_lossy_info(rec.dump(), m, "idx", true);  // a record written before the field
  ASSERT_TRUE(none.ok()) << none.status().to_string();
  EXPECT_EQ(none->qat_label_weight, 0.0);
  EXPECT_EQ(lossy_summary_line(*none).find("next tokens"), std::string::npos);
  for (double w : {0.0, 0.1, 1.0}) {
    json r = rec;
    r["qat_label_weight"] = w;
    auto li = parse_lossy_info(r.dump(), m, "idx", true);
    ASSERT_TRUE(li.ok()) << r.dump();
    EXPECT_DOUBLE_EQ(li->qat_label_weight, w);
    EXPECT_EQ(lossy_summary_line(*li).find("not a reproduction of the fine-tune") != std::string::npos, w > 0) << w;
  }
  for (const json& w : {json(1.5), json(-0.1), json("0.25"), json(true), json(nullptr), json::array({0.25})}) {
    json r = rec;
    r["qat_label_weight"] = w;
    auto li = parse_lossy_info(r.dump(), m, "idx: lossy record", true);
    ASSERT_FALSE(li.ok()) << r.dump();
    EXPECT_EQ(li.status().code(), Errc::corrupt);
    EXPECT_NE(li.status().message().find("idx: lossy record: qat_label_weight"), std::string::npos) << li.status().message();
  }
}

// In the index a record may leave the rebuilt files out (they are the
// index's own); when it lists them they are checked as a side file's are.
TEST(LossyInfo, ARecordInTheIndexNeedsNoRebuiltList) {
  Manifest m;
  OutFile of;
  of.name = "a.bin";
  m.out_files.push_back(of);
  const std::string sha = hex(of.sha256);
  const json rec = {{"format", "tenpak.lossy"}, {"version", 1}, {"method", "gptqmix:0.0625"}, {"quality", {{"kl_mean", 0.005}}}};
  auto in = parse_lossy_info(rec.dump(), m, "idx", true);
  ASSERT_TRUE(in.ok()) << in.status().to_string();
  EXPECT_TRUE(in->in_index);
  EXPECT_DOUBLE_EQ(in->kl_mean, 0.005);
  auto side = parse_lossy_info(rec.dump(), m, "side", false);  // a side file must list them
  EXPECT_FALSE(side.ok());
  json listed = rec;
  listed["rebuilt"] = {{{"name", "a.bin"}, {"sha256", sha}}};
  EXPECT_TRUE(parse_lossy_info(listed.dump(), m, "idx", true).ok());
  listed["rebuilt"][0]["sha256"] = std::string(64, '1');
  EXPECT_FALSE(parse_lossy_info(listed.dump(), m, "idx", true).ok());
  for (const char* k : {"format", "version", "method", "quality"}) {
    json bad = rec;
    bad.erase(k);
    auto r = parse_lossy_info(bad.dump(), m, "idx", true);
    EXPECT_FALSE(r.ok()) << k;
  }
  // The index's record is what load_lossy_info returns; nothing is fetched.
  m.lossy_record = rec.dump();
  auto l = load_lossy_info("/nonexistent/delta", m);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->method, "gptqmix:0.0625");
}

TEST(LossyInfo, ParseRefusesWhatIsNotASideFileOfThisIndex) {
  Manifest m;
  OutFile of;
  of.name = "a.bin";
  m.out_files.push_back(of);
  const std::string sha = hex(of.sha256);
  auto ok = parse_lossy_info(json({{"format", "tenpak.lossy"}, {"version", 1}, {"method", "lowrank:8"},
                                   {"quality", {{"kl_mean", 1e-7}}}, {"rebuilt", {{{"name", "a.bin"}, {"sha256", sha}}}}})
                                 .dump(),
                             m, "x");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->method, "lowrank:8");
  EXPECT_DOUBLE_EQ(ok->kl_mean, 1e-7);
  EXPECT_EQ(ok->eval_text, "?");
  for (const std::string bad :
       {std::string("not json"), std::string("[]"),
        json({{"format", "other"}, {"version", 1}}).dump(),
        json({{"format", "tenpak.lossy"}, {"version", 2}, {"method", "x"}, {"quality", json::object()}, {"rebuilt", json::array()}}).dump(),
        json({{"format", "tenpak.lossy"}, {"version", 1}, {"method", "x"}, {"quality", json::object()}, {"rebuilt", json::array()}}).dump(),
        json({{"format", "tenpak.lossy"}, {"version", 1}, {"method", "x"}, {"quality", json::object()},
              {"rebuilt", {{{"name", "a.bin"}, {"sha256", sha}}, {{"name", "a.bin"}, {"sha256", sha}}}}}).dump()}) {
    auto r = parse_lossy_info(bad, m, "side");
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_EQ(r.status().code(), Errc::corrupt) << bad;
  }
  // No side file at a location: not an error, quality unknown.
  fakes::TempDir t("lossy-none");
  auto none = load_lossy_info(t.path, m);
  ASSERT_TRUE(none.ok()) << none.status().to_string();
  EXPECT_FALSE(none->has_value());
}

}  // namespace
