// Mount::open (fs/include/tenpak/mount.h): a mount built from its options
// serves the fine-tune's bytes; bases attached from --base or the recorded
// location, a single base file, wrong and missing bases refused with their
// own codes; catalogs; the metrics exporter. Pairs are made by `tenpak
// fixture` + `tenpak delta build` (env TENPAK_BIN). No FUSE session.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tenpak/base_attach.h"
#include "tenpak/mount.h"
#include "tenpak/stats_text.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

std::string g_dir;

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

class Env : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* bin = std::getenv("TENPAK_BIN");
    ASSERT_NE(bin, nullptr) << "TENPAK_BIN not set";
    g_dir = dir_.path;
    std::string b = bin;
    auto run = [](const std::string& c) { ASSERT_EQ(std::system((c + " >/dev/null").c_str()), 0) << c; };
    run(b + " fixture bf16 " + g_dir + "/pair --size-mb 3");
    run(b + " delta build " + g_dir + "/pair/base " + g_dir + "/pair/finetune -o " + g_dir + "/cat/org/a");
    run(b + " delta build " + g_dir + "/pair/base " + g_dir + "/pair/finetune -o " + g_dir + "/cat/org/b");
  }

 private:
  tenpak::fakes::TempDir dir_{"mount"};
};

MountOptions options(const std::string& source) {
  MountOptions o;
  o.source = source;
  o.persistent_cache = false;
  o.fs.prefetch_workers = 0;
  o.log = [](const std::string&) {};
  return o;
}

// Every file of the fine-tune read through `mfs` at `dir` equals the original.
void expect_served(ModelFs& mfs, const std::string& dir) {
  uint64_t parent = ModelFs::kRootIno;
  for (auto& comp : fs::path(dir)) {
    if (comp.empty()) continue;
    auto a = mfs.lookup(parent, comp.string());
    ASSERT_TRUE(a.has_value()) << dir;
    parent = a->ino;
  }
  for (auto& e : fs::directory_iterator(g_dir + "/pair/finetune")) {
    std::string want = slurp(e.path().string());
    auto a = mfs.lookup(parent, e.path().filename().string());
    ASSERT_TRUE(a.has_value()) << e.path();
    std::string got(want.size(), '\0');
    auto n = mfs.read(a->ino, 0, got.size(), reinterpret_cast<uint8_t*>(got.data()));
    ASSERT_TRUE(n.ok()) << n.status().to_string();
    EXPECT_EQ(got, want) << e.path();
  }
}

}  // namespace

TEST(Mount, OpensADeltaWithItsRecordedBase) {
  auto m = Mount::open(options(g_dir + "/cat/org/a"));
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->models(), 1u);
  EXPECT_GT((*m)->files(), 0u);
  expect_served((*m)->fs(), "");
  EXPECT_EQ((*m)->metrics_port(), -1);
}

TEST(Mount, CatalogOfDeltasWithABaseGivenAndMetrics) {
  MountOptions o = options(g_dir + "/cat");
  o.base = g_dir + "/pair/base";
  o.metrics_port = 0;
  auto m = Mount::open(o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->models(), 2u);
  expect_served((*m)->fs(), "org/a");
  expect_served((*m)->fs(), "org/b");
  EXPECT_GT((*m)->metrics_port(), 0);
  std::string p = (*m)->prometheus();
  EXPECT_NE(p.find("tenpak_fs_reads_total "), std::string::npos);
  EXPECT_NE(p.find("tenpak_fs_rebuild_latency_seconds_count"), std::string::npos);
}

TEST(Mount, WrongMissingAndSingleFileBasesAreRefused) {
  std::string single;
  for (auto& e : fs::directory_iterator(g_dir + "/pair/base"))
    if (e.path().extension() == ".safetensors") single = e.path().string();
  ASSERT_FALSE(single.empty());
  {
    // This delta needs several base files: one file cannot be its base.
    MountOptions o = options(g_dir + "/cat/org/a");
    o.base = single;
    auto m = Mount::open(o);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), Errc::mismatch);
    EXPECT_NE(m.status().message().find("give the base model directory"), std::string::npos) << m.status().message();
  }
  // Same size, other bytes: a wrong base, found by its sha256.
  const std::string wrong = g_dir + "/wrong";
  fs::create_directories(wrong);
  fs::copy(g_dir + "/pair/base", wrong, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  {
    std::fstream f(wrong + "/" + fs::path(single).filename().string(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x55');
  }
  MountOptions o = options(g_dir + "/cat/org/a");
  o.base = wrong;
  auto bad = Mount::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Errc::mismatch) << bad.status().message();
  EXPECT_NE(bad.status().message().find("wrong base"), std::string::npos);
  o.verify_base = false;  // sizes only: accepted (frames are checked when read)
  EXPECT_TRUE(Mount::open(o).ok());
  o.base = g_dir + "/no-such-base";
  auto missing = Mount::open(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found) << "a base that is not there is not a wrong base";
  EXPECT_NE(missing.status().message().find("base not found"), std::string::npos) << missing.status().message();
}

TEST(Mount, NotADeltaNorACatalog) {
  auto m = Mount::open(options(g_dir + "/pair/base"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Errc::not_found);
  EXPECT_EQ(Mount::open(options(g_dir + "/no-such-dir")).status().code(), Errc::not_found);
  EXPECT_EQ(open_delta(g_dir + "/pair", nullptr).status().code(), Errc::not_found);
  EXPECT_NE(m.status().message().find("neither a delta"), std::string::npos) << m.status().message();
}

// attach_base: the one base attachment; attach_local_base is it with apply's read hints.
TEST(AttachBase, ReportsEachVerifiedFileAndPassesSourcesThroughWrap) {
  auto r = open_delta(g_dir + "/cat/org/a", nullptr);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  BaseAttachOptions o;
  o.check_sha256 = true;
  int verified = 0, wrapped = 0;
  uint64_t last_done = 0, last_total = 0;
  o.on_verified = [&](const std::string&, uint64_t bytes, bool, double) { verified += bytes > 0; };
  o.wrap = [&](std::unique_ptr<BlockSource> s, const std::string&, const BaseFile&) {
    ++wrapped;
    return s;
  };
  o.progress = [&](uint64_t d, uint64_t t) {
    last_done = d;
    last_total = t;
  };
  ASSERT_TRUE(attach_base(**r, g_dir + "/pair/base", o).ok());
  EXPECT_GT(verified, 0);
  EXPECT_EQ(verified, wrapped);
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(last_total, 0u);
}

// The counter table generates stats.json and the exporter: every name that
// scripts and dashboards read is still there, under the same key.
TEST(FsCounters, StatsJsonAndPrometheusKeepTheirNames) {
  auto m = Mount::open(options(g_dir + "/cat/org/a"));
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const std::string j = (*m)->fs().stats_json();
  for (const char* key :
       {"\"pid\"", "\"models\"", "\"reads\"", "\"bytes_served\"", "\"frames_rebuilt\"", "\"bytes_rebuilt\"", "\"frame_cache\"",
        "\"hits\"", "\"misses\"", "\"evictions\"", "\"spent_evictions\"", "\"bytes\"", "\"spent_bytes\"", "\"limit\"",
        "\"inflight_joins\"", "\"prefetch\"", "\"issued\"", "\"wasted\"", "\"dropped\"", "\"failed\"", "\"sparse_rereads\"",
        "\"base_reads\"", "\"direct_bytes\"", "\"page_cache_bytes\"", "\"delta_data_reads\"", "\"persistent_cache\"", "\"enabled\"", "\"frames\"",
        "\"rejected\"", "\"stored\"", "\"skipped\"", "\"retries\"", "\"retried_ok\"", "\"errors\"", "\"io\"", "\"corrupt\"",
        "\"base_missing\"", "\"other\"", "\"rss_bytes\"", "\"peak_rss_bytes\"", "\"rebuild_latency\"", "\"le_s\"",
        "\"cumulative_counts\"", "\"count\"", "\"sum_s\""})
    EXPECT_NE(j.find(key), std::string::npos) << key << " missing from\n" << j;
  const std::string p = fs_prometheus((*m)->fs().stats());
  for (const char* name :
       {"tenpak_fs_reads_total ", "tenpak_fs_bytes_served_total ", "tenpak_fs_frames_rebuilt_total ",
        "tenpak_fs_bytes_rebuilt_total ", "tenpak_fs_frame_cache_hits_total ", "tenpak_fs_frame_cache_misses_total ",
        "tenpak_fs_frame_cache_evictions_total ", "tenpak_fs_frame_cache_spent_evictions_total ",
        "tenpak_fs_persistent_hits_total ", "tenpak_fs_persistent_rejected_total ", "tenpak_fs_persistent_stored_total ",
        "tenpak_fs_persistent_skipped_total ", "tenpak_fs_inflight_joins_total ", "tenpak_fs_prefetch_issued_total ",
        "tenpak_fs_prefetch_hits_total ", "tenpak_fs_sparse_rereads_total ", "tenpak_fs_retries_total ",
        "tenpak_fs_errors_total{cause=\"io\"} ", "tenpak_fs_errors_total{cause=\"corrupt\"} ",
        "tenpak_fs_errors_total{cause=\"base_missing\"} ", "tenpak_fs_errors_total{cause=\"other\"} ",
        "tenpak_fs_rss_bytes ", "# TYPE tenpak_fs_rss_bytes gauge\n",
        "# HELP tenpak_fs_errors_total read requests failed with EIO, by cause\n",
        "tenpak_fs_rebuild_latency_seconds_count "})
    EXPECT_NE(p.find(name), std::string::npos) << name << " missing from\n" << p;
  size_t helps = 0;
  for (size_t at = p.find("# HELP tenpak_fs_errors_total"); at != std::string::npos;
       at = p.find("# HELP tenpak_fs_errors_total", at + 1))
    ++helps;
  EXPECT_EQ(helps, 1u) << "one HELP per family";
  // Local reads by role (base files, delta data files) and path; the role
  // label is the one change to these series (README, "The mount").
  const std::string all = (*m)->prometheus();
  for (const char* name : {"tenpak_local_read_bytes_total{role=\"base\",path=\"direct\"} ",
                           "tenpak_local_read_bytes_total{role=\"base\",path=\"page_cache\"} ",
                           "tenpak_local_read_bytes_total{role=\"delta_data\",path=\"direct\"} ",
                           "tenpak_local_read_bytes_total{role=\"delta_data\",path=\"page_cache\"} "})
    EXPECT_NE(all.find(name), std::string::npos) << name << " missing from\n" << all;
}

// `tenpak stats` text, stats.json and the exporter are generated from one
// table: after the files are read, every row of fs_counters() shows in all
// three with the same value (the exporter's from FsStats rebuilt from
// stats.json, so that the three describe one moment).
TEST(FsCounters, TextJsonAndPrometheusShowTheSameCounters) {
  auto m = Mount::open(options(g_dir + "/cat/org/a"));
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  expect_served((*m)->fs(), "");
  const std::string js = (*m)->fs().stats_json();
  const auto j = nlohmann::json::parse(js);
  auto text = fs_stats_text(js);
  ASSERT_TRUE(text.ok()) << text.status().to_string();
  FsStats st;
  for (const FsCounter& c : fs_counters()) {
    const nlohmann::json& holder = *c.group ? j.at(c.group) : j;
    ASSERT_TRUE(holder.contains(c.key)) << c.group << "." << c.key << " missing from stats.json\n" << js;
    st.*c.field = holder.at(c.key).get<uint64_t>();
  }
  EXPECT_GT(st.reads, 0u);
  EXPECT_GT(st.bytes_served, 0u);
  EXPECT_GT(st.frames_rebuilt, 0u);
  const std::string p = fs_prometheus(st);
  for (const FsCounter& c : fs_counters()) {
    const uint64_t v = st.*c.field;
    if (c.prom) {
      const std::string line = std::string("tenpak_fs_") + c.prom + " " + std::to_string(v) + "\n";
      EXPECT_NE(p.find(line), std::string::npos) << line << "missing from\n" << p;
    }
    // The persistent cache's group is shown only when it is enabled.
    if (std::string_view(c.group) == "persistent_cache" && !j.at(c.group).value("enabled", false)) {
      EXPECT_EQ(text->find("persistent_cache"), std::string::npos) << *text;
      continue;
    }
    const std::string_view key = c.key;
    const bool bytes = key == "limit" || key.find("bytes") != std::string_view::npos;
    const std::string shown = std::string(key) + " " + (bytes ? fs_human_bytes(static_cast<double>(v)) : std::to_string(v));
    EXPECT_NE(text->find(shown), std::string::npos) << shown << " missing from\n" << *text;
  }
  // Each group on its own line, labelled by its stats.json name.
  for (const char* g : {"  mount ", "  frame_cache ", "  prefetch ", "  base_reads ", "  delta_data_reads ", "  errors "})
    EXPECT_NE(text->find(g), std::string::npos) << g << " missing from\n" << *text;
  // Not ours: a clear error, not an abort.
  EXPECT_EQ(fs_stats_text("[1]").status().code(), Errc::corrupt);
  EXPECT_EQ(fs_stats_text(R"({"reads": "many"})").status().code(), Errc::corrupt);
  EXPECT_EQ(fs_stats_text(R"({"frame_cache": 3})").status().code(), Errc::corrupt);
}

// A read that needs a base file the mount does not have fails with
// not_found and is counted as base_missing (before: `invalid`, shared with
// usage errors).
TEST(Mount, AReadNeedingAMissingBaseIsCountedAsBaseMissing) {
  auto r = open_delta(g_dir + "/cat/org/a", nullptr);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<FsModel> models;
  models.push_back({"", std::move(r.value())});
  FsOptions o;
  o.prefetch_workers = 0;
  o.retry_delay_ms = 1;
  o.log = [](const std::string&) {};
  auto mfs = ModelFs::create(std::move(models), o);
  ASSERT_TRUE(mfs.ok());
  Status failed;
  for (auto& e : fs::directory_iterator(g_dir + "/pair/finetune")) {
    auto a = (*mfs)->lookup(ModelFs::kRootIno, e.path().filename().string());
    std::string buf(a->size, '\0');
    auto n = (*mfs)->read(a->ino, 0, buf.size(), reinterpret_cast<uint8_t*>(buf.data()));
    if (!n.ok()) failed = n.status();
  }
  ASSERT_FALSE(failed.ok()) << "no file of the bf16 pair needs its base?";
  EXPECT_EQ(failed.code(), Errc::not_found) << failed.message();
  FsStats s = (*mfs)->stats();
  EXPECT_GE(s.errors_base_missing, 1u);
  EXPECT_EQ(s.errors_other, 0u);
  EXPECT_EQ(s.retries, 0u) << "a missing base does not heal by waiting";
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new Env);
  return RUN_ALL_TESTS();
}
