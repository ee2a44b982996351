// Remote origins against real loopback servers: nginx (a correct CDN) and
// fault_server.py (a broken one). Generated model pairs come from the tenpak
// binary (TENPAK_BIN): two fine-tunes (bf16, frozen) of one base.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "../test_util.h"
#include "servers.h"
#include "tenpak/base_attach.h"
#include "tenpak/cache.h"
#include "tenpak/cached_source.h"
#include "tenpak/delta.h"
#include "tenpak/http_source.h"
#include "tenpak/metrics.h"
#include "tenpak/open_source.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

std::string g_root, g_work;  // served files / scratch, made once per process

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// One-time data: root/a/{base,finetune,delta}, root/b/{...}, root/blob.
class Env : public ::testing::Environment {
 public:
  void SetUp() override {
    g_work = tptest::temp_dir("remote");
    g_root = g_work + "/www";
    fs::create_directories(g_root);
    const char* bin = std::getenv("TENPAK_BIN");
    ASSERT_TRUE(bin) << "TENPAK_BIN not set";
    for (auto [dir, kind] : {std::pair{"a", "bf16"}, std::pair{"b", "frozen"}}) {
      std::string d = g_root + "/" + dir;
      ASSERT_EQ(run(std::string(bin) + " fixture " + kind + " " + d + " --size-mb 6 --seed 7"), 0);
      ASSERT_EQ(run(std::string(bin) + " delta build " + d + "/base " + d + "/finetune -o " + d + "/delta"), 0);
    }
    ASSERT_EQ(tptest::read_file(g_root + "/a/base/model.safetensors"), tptest::read_file(g_root + "/b/base/model.safetensors"))
        << "fixtures bf16 and frozen no longer share their base";
    std::string blob(3 << 20, '\0');
    std::mt19937_64 g(1);
    for (auto& c : blob) c = static_cast<char>(g());
    tptest::write_file(g_root + "/blob", blob);
  }
  void TearDown() override {
    if (!g_work.empty()) fs::remove_all(g_work);
  }
};
::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new Env);

std::string fault_script() { return std::string(TENPAK_SOURCE_DIR) + "/tests/remote/fault_server.py"; }

HttpOptions fast_opts() {
  HttpOptions o;
  o.backoff_initial_ms = 5;
  o.backoff_max_ms = 50;
  o.low_speed_limit = 16384;  // the fault server's stalls come after 1 KiB
  o.low_speed_time_s = 1;
  o.attempts_per_mirror = 4;
  o.connect_timeout_ms = 2000;
  return o;
}

uint64_t bytes_of(const std::string& url) { return fetch_stats(url).bytes; }

// Opens the delta at `dir_url` and its base at `base_url` (a directory URL),
// each file wrapped with `cache` when given (base blocks keyed by the sha256
// the delta records, delta files by their HTTP validator).
Result<std::unique_ptr<DeltaReader>> open_remote(const std::string& dir_url, const std::string& base_url,
                                                 std::shared_ptr<BlockCache> cache, std::vector<CachedSource*>* wrappers = nullptr,
                                                 const HttpOptions& http = {}) {
  SourceOptions so;
  so.http = http;
  auto wrap = [&](std::unique_ptr<BlockSource> s, std::string id) -> std::unique_ptr<BlockSource> {
    if (!cache) return s;
    if (id.empty()) id = source_identity(*s);
    auto w = wrap_with_cache(std::move(s), cache, id);
    if (wrappers) wrappers->push_back(w.get());
    return w;
  };
  auto idx = open_source(join_location(dir_url, kIndexFile), so);
  if (!idx.ok()) return idx.status();
  auto dat = open_source(join_location(dir_url, kDataFile), so);
  if (!dat.ok()) return dat.status();
  auto r = DeltaReader::open(wrap(std::move(*idx), ""), wrap(std::move(*dat), ""), dir_url);
  if (!r.ok()) return r;
  const Manifest& m = (*r)->manifest();
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    SourceOptions bo = so;
    bo.expected_size = m.base_files[i].size;
    auto b = open_source(join_location(base_url, m.base_files[i].name), bo);
    if (!b.ok()) return b.status();
    Status st = (*r)->set_base(i, wrap(std::move(*b), hex(m.base_files[i].sha256)));
    if (!st.ok()) return st;
  }
  return r;
}

// ---- nginx -------------------------------------------------------------------

class NginxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    ng_ = new tptest::Nginx();
    if (!ng_->start(g_root, g_work + "/nginx", &err)) {
      delete ng_;
      ng_ = nullptr;
      skip_ = err;
    }
  }
  static void TearDownTestSuite() {
    delete ng_;
    ng_ = nullptr;
  }
  void SetUp() override {
    if (!ng_) GTEST_SKIP() << skip_;
  }
  static inline tptest::Nginx* ng_ = nullptr;
  static inline std::string skip_;
};

TEST_F(NginxTest, RangeReadsMatchLocalBytes) {
  auto src = open_source(ng_->url() + "/blob");
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  std::string local = tptest::read_file(g_root + "/blob");
  ASSERT_EQ((*src)->size(), local.size());
  std::mt19937_64 g(3);
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::mt19937_64 r(t);
      for (int i = 0; i < 50; ++i) {
        uint64_t off = r() % local.size();
        size_t len = 1 + r() % std::min<uint64_t>(300000, local.size() - off);
        std::vector<uint8_t> buf(len);
        Status st = (*src)->read(off, len, buf.data());
        if (!st.ok() || std::memcmp(buf.data(), local.data() + off, len) != 0) bad++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  std::vector<uint8_t> b(10);
  EXPECT_FALSE((*src)->read(local.size() - 5, 10, b.data()).ok());  // past the end
  // Plain http: HTTP/1.1 (the control for Http2.NegotiatedOverTlsWithCorrectReads).
  FetchStats st = fetch_stats(ng_->url() + "/blob");
  EXPECT_GT(st.requests, 0u);
  EXPECT_EQ(st.http2_responses, 0u);
}

TEST_F(NginxTest, OpenErrorsNameTheUrl) {
  auto r = open_source(ng_->url() + "/no/such/file");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(ng_->url() + "/no/such/file"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("404"), std::string::npos) << r.status().message();
  SourceOptions so;
  so.expected_size = 12345;
  auto m = open_source(ng_->url() + "/blob", so);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Errc::mismatch) << m.status().message();
}

TEST_F(NginxTest, DeltaAndBaseRebuiltOverHttp) {
  auto r = open_remote(ng_->url() + "/a/delta", ng_->url() + "/a/base", nullptr);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ApplyOptions ao;
  ao.threads = 4;
  auto n = apply_delta(**r, "", ao);  // checks every frame xxh3 and every file sha256
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  for (auto& of : (*r)->manifest().out_files) {
    std::string orig = tptest::read_file(g_root + "/a/finetune/" + of.name);
    EXPECT_EQ(hex(sha256(orig.data(), orig.size())), hex(of.sha256)) << of.name;
  }
}

// A remote base keeps the code its download got (README's exit codes): a
// base URL whose files answer 404 is not_found (exit 2), as a delta URL's
// index or a download's 404 is; attach_base turned it into unavailable (7,
// "try again later"). The base found there attaches.
TEST_F(NginxTest, RemoteBaseNotFoundIsNotFound) {
  auto r = open_remote(ng_->url() + "/a/delta", ng_->url() + "/a/base", nullptr);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const std::string missing = ng_->url() + "/no/such/base";
  Status st = attach_base(**r, missing);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Errc::not_found) << st.to_string();
  EXPECT_NE(st.message().find(missing), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("404"), std::string::npos) << st.message();
  EXPECT_TRUE(attach_base(**r, ng_->url() + "/a/base").ok());
}

// HTTP/2 when offered: nginx with TLS (a certificate made here by the
// openssl CLI) and http2. libcurl negotiates h2 by ALPN; every response
// must come over HTTP/2 and every byte must be right. Skipped when nginx
// lacks the http_v2 module or openssl is missing.
TEST(Http2, NegotiatedOverTlsWithCorrectReads) {
  std::string bin = tptest::find_nginx();
  if (bin.empty()) GTEST_SKIP() << "nginx not installed (package nginx-light)";
  if (!tptest::nginx_has_http2(bin)) GTEST_SKIP() << bin << " has no http_v2 module";
  if (run("openssl version") != 0) GTEST_SKIP() << "no openssl CLI";
  std::string dir = g_work + "/h2";
  fs::create_directories(dir);
  ASSERT_EQ(run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
                " -keyout " + dir + "/key.pem -out " + dir + "/cert.pem"),
            0);
  tptest::Nginx ng;
  std::string err;
  ASSERT_TRUE(ng.start(g_root, dir + "/nginx", &err, dir + "/cert.pem", dir + "/key.pem")) << err;
  ASSERT_EQ(ng.url().rfind("https://", 0), 0u);
  HttpOptions http;
  http.ca_file = dir + "/cert.pem";
  SourceOptions so;
  so.http = http;
  // Ranges of a 3 MiB file from 4 threads at once (a connection each).
  std::string url = ng.url() + "/blob", blob = tptest::read_file(g_root + "/blob");
  auto src = open_source(url, so);
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  ASSERT_EQ((*src)->size(), blob.size());
  std::string got(blob.size(), '\0');
  const size_t chunk = 100000;  // not a power of two: ranges cross every boundary
  std::vector<std::thread> ts;
  std::vector<Status> sts(4);
  for (size_t t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (size_t off = t * chunk; off < blob.size() && sts[t].ok(); off += 4 * chunk)
        sts[t] = (*src)->read(off, std::min(chunk, blob.size() - off), reinterpret_cast<uint8_t*>(got.data() + off));
    });
  for (auto& th : ts) th.join();
  for (auto& st : sts) ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(got == blob) << "wrong bytes over HTTP/2";
  FetchStats fsx = fetch_stats(url);
  EXPECT_GT(fsx.requests, 4u);
  EXPECT_EQ(fsx.http2_responses, fsx.requests) << "not every response came over HTTP/2";
  // Exported per origin like the other fetch counters.
  std::string prom = render_prometheus({});
  EXPECT_NE(prom.find("# TYPE tenpak_fetch_http2_responses_total counter\n"), std::string::npos);
  EXPECT_NE(prom.find("tenpak_fetch_http2_responses_total{origin=\"" + url + "\"} " + std::to_string(fsx.http2_responses) +
                      "\n"),
            std::string::npos)
      << prom;
  // A delta and its base over https + h2: rebuilt with every hash checked.
  auto r = open_remote(ng.url() + "/b/delta", ng.url() + "/b/base", nullptr, nullptr, http);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto n = apply_delta(**r, "", ApplyOptions{});
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  EXPECT_GT(fetch_stats(ng.url() + "/b/delta/" + kDataFile).http2_responses, 0u);
  // Without the certificate trusted: a clear TLS error, no bytes served.
  SourceOptions untrusted;
  untrusted.http.attempts_per_mirror = 1;
  auto bad = open_source(ng.url() + "/a/delta/" + kIndexFile, untrusted);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("certificate"), std::string::npos) << bad.status().message();
}

TEST_F(NginxTest, CacheSecondPassFetchesNothingAndSecondFineTuneNoBase) {
  std::string cdir = g_work + "/cache-nginx";
  fs::remove_all(cdir);  // empty at the start, also when the test is repeated (--gtest_repeat)
  auto cache = open_lmdb_cache(cdir, 256 << 20);
  ASSERT_TRUE(cache->usable());
  const std::string base = ng_->url() + "/a/base/model.safetensors";
  auto all_bytes = [] { return fetch_stats_total().bytes; };
  ApplyOptions ao;
  ao.threads = 4;
  {
    auto r = open_remote(ng_->url() + "/a/delta", ng_->url() + "/a/base", cache);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(apply_delta(**r, "", ao).ok());
  }
  uint64_t base_after_first = bytes_of(base);
  EXPECT_GT(base_after_first, 0u);
  // Second pass of the same model, through a fresh cache handle (as another process would).
  cache.reset();
  cache = open_lmdb_cache(cdir, 256 << 20);
  uint64_t before = all_bytes();
  {
    auto r = open_remote(ng_->url() + "/a/delta", ng_->url() + "/a/base", cache);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto n = apply_delta(**r, "", ao);
    ASSERT_TRUE(n.ok()) << n.status().to_string();
  }
  EXPECT_EQ(all_bytes() - before, 0u) << "a fully cached model must fetch no bytes";
  // A second fine-tune of the same base (base served at its own URL, same
  // content): its delta is fetched, the base is not.
  const std::string base_b = ng_->url() + "/b/base/model.safetensors";
  uint64_t b_delta_before = bytes_of(ng_->url() + "/b/delta/tenpak.dat");
  {
    auto r = open_remote(ng_->url() + "/b/delta", ng_->url() + "/b/base", cache);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto n = apply_delta(**r, "", ao);
    ASSERT_TRUE(n.ok()) << n.status().to_string();
  }
  EXPECT_EQ(bytes_of(base_b), 0u) << "the base was already cached by the first fine-tune";
  EXPECT_GT(bytes_of(ng_->url() + "/b/delta/tenpak.dat"), b_delta_before);
  CacheStats cs = cache->stats();
  EXPECT_GT(cs.hits, 0u);
  EXPECT_EQ(cs.corrupt_dropped, 0u);
}

TEST_F(NginxTest, MetricsExporterServesCounters) {
  auto cache = make_memory_cache(1 << 20);
  auto ex = MetricsExporter::start(0, [&] { return render_prometheus({{"mem", cache.get()}}, "tenpak_test_extra 1\n"); });
  ASSERT_TRUE(ex.ok()) << ex.status().to_string();
  auto src = open_source(ng_->url() + "/blob");
  ASSERT_TRUE(src.ok());
  std::vector<uint8_t> b(100);
  ASSERT_TRUE((*src)->read(0, 100, b.data()).ok());
  // Scrape it with our own HTTP client (a full GET: 200, not a range).
  std::string url = "http://127.0.0.1:" + std::to_string((*ex)->port()) + "/metrics";
  std::string out = g_work + "/metrics.txt";
  ASSERT_EQ(run("curl -sf -o " + out + " " + url), 0);
  std::string text = tptest::read_file(out);
  EXPECT_NE(text.find("tenpak_fetch_bytes_total{origin=\"" + ng_->url() + "/blob\"}"), std::string::npos);
  // Plain http: HTTP/1.1, so no HTTP/2 response; the counter is exported anyway.
  EXPECT_NE(text.find("tenpak_fetch_http2_responses_total{origin=\"" + ng_->url() + "/blob\"} 0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tenpak_cache_hits_total{cache=\"mem\"} 0"), std::string::npos);
  EXPECT_NE(text.find("tenpak_fetch_latency_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("tenpak_test_extra 1"), std::string::npos);
  EXPECT_NE(run("curl -sf -o /dev/null http://127.0.0.1:" + std::to_string((*ex)->port()) + "/other"), 0);
}

// ---- fault injection -----------------------------------------------------------

class FaultTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    fs_ = new tptest::FaultServer();
    fs::create_directories(g_work + "/fault");
    if (!fs_->start(fault_script(), g_root, g_work + "/fault", &err)) {
      delete fs_;
      fs_ = nullptr;
      skip_ = err;
    }
  }
  static void TearDownTestSuite() {
    delete fs_;
    fs_ = nullptr;
  }
  void SetUp() override {
    if (!fs_) GTEST_FAIL() << skip_;
  }
  std::string url(const std::string& mode, const std::string& n, const std::string& file = "blob") {
    return fs_->url() + "/f/" + mode + "-" + n + "-t" + std::to_string(tag_++) + "/" + file;
  }
  static inline tptest::FaultServer* fs_ = nullptr;
  static inline std::string skip_;
  static inline int tag_ = 0;
};

TEST_F(FaultTest, TransientFaultsAreHiddenByRetries) {
  std::string local = tptest::read_file(g_root + "/blob");
  for (std::string mode : {"500", "reset", "trunc", "shortlen", "badrange", "full200", "stall"}) {
    SCOPED_TRACE(mode);
    std::string u = url(mode, "2");
    auto src = open_http_source({u}, fast_opts());
    ASSERT_TRUE(src.ok()) << src.status().to_string();
    std::vector<uint8_t> buf(200000);
    Status st = (*src)->read(1000, buf.size(), buf.data());
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(std::memcmp(buf.data(), local.data() + 1000, buf.size()), 0);
    // Two faulty responses: two retries, or one when libcurl itself retried
    // a request that died on a reused connection (it does so for resets).
    FetchStats s = fetch_stats(u);
    EXPECT_GE(s.retries, mode == "reset" ? 1u : 2u);
    EXPECT_LE(s.retries, 2u);
    uint64_t errs = 0;
    for (auto e : s.errors) errs += e;
    EXPECT_EQ(errs, s.retries);
  }
}

TEST_F(FaultTest, PersistentFaultsGiveClearErrors) {
  HttpOptions o = fast_opts();
  o.attempts_per_mirror = 2;
  for (std::string mode : {"500", "reset", "trunc", "badrange", "full200", "shortlen", "stall"}) {
    SCOPED_TRACE(mode);
    std::string u = url(mode, "inf");
    auto src = open_http_source({u}, o);
    ASSERT_TRUE(src.ok());
    std::vector<uint8_t> buf(50000);
    Status st = (*src)->read(0, buf.size(), buf.data());
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find(u), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("2 attempts"), std::string::npos) << st.message();
  }
}

// cancel() ends a read stuck in a stall (8 s at the fault server, not seen as
// one by these options) well before the stall would, with a clear error.
TEST_F(FaultTest, CancelEndsAStalledReadSoon) {
  HttpOptions o = fast_opts();
  o.low_speed_time_s = 60;
  const std::string u = url("stall", "inf");
  auto src = open_http_source({u}, o);
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  Status st;
  std::vector<uint8_t> buf(200000);
  const uint64_t before = fetch_stats(u).requests;
  std::thread reader([&] { st = (*src)->read(0, buf.size(), buf.data()); });
  // Into the stall: the GET was sent (a cancel before it would be seen by
  // the check before the attempt, not by the transfer's callback).
  for (int i = 0; i < 200 && fetch_stats(u).requests == before; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  (*src)->cancel();
  reader.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cancelled"), std::string::npos) << st.message();
  EXPECT_LT(s, 5.0) << "the read waited for the stall to end";
  EXPECT_FALSE((*src)->read(0, 10, buf.data()).ok()) << "reads after cancel() fail too";
}

// Unmounting destroys the cached sources: a hint's fetch stuck in a stall
// must not hold that up.
TEST_F(FaultTest, DestroyingACachedSourceCancelsItsHintFetch) {
  HttpOptions o = fast_opts();
  o.low_speed_time_s = 60;
  auto http = open_http_source({url("stall", "inf")}, o);
  ASSERT_TRUE(http.ok()) << http.status().to_string();
  auto src = wrap_with_cache(std::move(http.value()), make_memory_cache(64 << 20), "id");
  src->will_need(0, 100000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the hint thread is in the stall
  const auto t0 = std::chrono::steady_clock::now();
  src.reset();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 5.0) << "destruction waited for the stalled fetch";
}

TEST_F(FaultTest, NotFoundAndUnauthorizedAtOpenNeverLeakTheToken) {
  HttpOptions o = fast_opts();
  o.bearer_token = "hf_SECRET_token_123";
  std::string u404 = url("404", "inf"), u401 = url("401", "inf");
  auto a = open_http_source({u404}, o);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find(u404), std::string::npos);
  EXPECT_NE(a.status().message().find("not found"), std::string::npos) << a.status().message();
  EXPECT_EQ(fetch_stats(u404).requests, 1u) << "404 is not retried";
  auto b = open_http_source({u401}, o);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("401"), std::string::npos);
  EXPECT_EQ(b.status().message().find("SECRET"), std::string::npos);
  o.bearer_token.clear();
  auto c = open_http_source({url("401", "inf")}, o);
  EXPECT_NE(c.status().message().find("HF_TOKEN"), std::string::npos) << c.status().message();
}

// An origin that cannot be reached or does not serve now is unavailable
// (README: exit 7, try again later) wherever libcurl's error becomes a
// Status; it was io (exit 1) at open, so `delta build` and `dataset build` of
// an unreachable URL exited 1. A 404 stays not_found (exit 2); an answer that
// is not the one asked for stays io.
TEST_F(FaultTest, UnreachableOriginIsUnavailable) {
  // Connection refused: a loopback port this test holds bound, never listening.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &alen), 0);
  const std::string refused = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/blob";
  HttpOptions o = fast_opts();
  o.attempts_per_mirror = 2;
  auto direct = open_http_source({refused}, o);
  SourceOptions so;
  so.http = o;
  auto via = open_source(refused, so);  // what every command opens a location with
  ::close(fd);
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.status().code(), Errc::unavailable) << direct.status().to_string();
  ASSERT_FALSE(via.ok());
  EXPECT_EQ(via.status().code(), Errc::unavailable) << via.status().to_string();
  EXPECT_GE(fetch_stats(refused).errors[static_cast<int>(FetchCause::connect)], 2u);

  auto nf = open_http_source({url("404", "inf")}, o);
  ASSERT_FALSE(nf.ok());
  EXPECT_EQ(nf.status().code(), Errc::not_found) << nf.status().to_string();

  // Reads: 5xx after the retries is unavailable; a 404 to the range request
  // of a file that was there when opened is not_found (exit 2, as README's
  // table says for a 4xx; it was io); a 200 to a range request is io.
  std::vector<uint8_t> buf(50000);
  for (auto [mode, code] :
       {std::pair{"500", Errc::unavailable}, std::pair{"gone", Errc::not_found}, std::pair{"full200", Errc::io}}) {
    SCOPED_TRACE(mode);
    auto src = open_http_source({url(mode, "inf")}, o);
    ASSERT_TRUE(src.ok()) << src.status().to_string();
    Status st = (*src)->read(0, buf.size(), buf.data());
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), code) << st.to_string();
  }
  // Mirrors failing for different reasons: io.
  auto mixed = open_http_source({url("gone", "inf"), url("500", "inf")}, o);
  ASSERT_TRUE(mixed.ok()) << mixed.status().to_string();
  Status st = (*mixed)->read(0, buf.size(), buf.data());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Errc::io) << st.to_string();
}

TEST_F(FaultTest, SizeFromARangeRequestWhenHeadIsRefused) {
  std::string u = url("nohead", "inf");
  auto src = open_http_source({u}, fast_opts());
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  std::string local = tptest::read_file(g_root + "/blob");
  EXPECT_EQ((*src)->size(), local.size());
  std::vector<uint8_t> buf(5000);
  ASSERT_TRUE((*src)->read(123, buf.size(), buf.data()).ok());
  EXPECT_EQ(std::memcmp(buf.data(), local.data() + 123, buf.size()), 0);
}

TEST_F(FaultTest, ChangedOriginIsRefused) {
  for (std::string mode : {"changed", "etag"}) {
    SCOPED_TRACE(mode);
    std::string u = url(mode, "inf");
    auto src = open_http_source({u}, fast_opts());
    ASSERT_TRUE(src.ok());
    std::vector<uint8_t> buf(1000);
    Status st = (*src)->read(0, buf.size(), buf.data());
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), Errc::mismatch) << st.to_string();
    EXPECT_NE(st.message().find("refusing to mix versions"), std::string::npos) << st.message();
    EXPECT_EQ(fetch_stats(u).retries, 0u) << "a changed origin is not retried";
  }
}

TEST_F(FaultTest, NextMirrorAfterPersistentFailure) {
  HttpOptions o = fast_opts();
  o.attempts_per_mirror = 2;
  std::string bad = url("500", "inf"), good = fs_->url() + "/blob";
  auto src = open_http_source({bad, good}, o);
  ASSERT_TRUE(src.ok());
  std::string local = tptest::read_file(g_root + "/blob");
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE((*src)->read(77, buf.size(), buf.data()).ok());
  EXPECT_EQ(std::memcmp(buf.data(), local.data() + 77, buf.size()), 0);
  EXPECT_EQ(fetch_stats(bad).errors[static_cast<int>(FetchCause::http_5xx)], 2u);
  // The working mirror is preferred from now on.
  uint64_t bad_req = fetch_stats(bad).requests;
  ASSERT_TRUE((*src)->read(0, buf.size(), buf.data()).ok());
  EXPECT_EQ(fetch_stats(bad).requests, bad_req);
}

// An origin trickling above the stall threshold (~4 KiB/s) no longer holds
// a read for minutes: the range request is cut off at its minimum rate and
// the next mirror asked; with no other mirror the read's deadline ends it
// (EIO in a mount). Both counted as timeouts. Before: a 64 KiB read took the
// 16 s the trickle needed, from the slow mirror.
TEST_F(FaultTest, TrickleIsCutOffByMinRateAndDeadline) {
  using Clock = std::chrono::steady_clock;
  std::string local = tptest::read_file(g_root + "/blob");
  HttpOptions o = fast_opts();
  o.low_speed_limit = 1024;  // the trickle stays above it
  o.min_rate = 64 * 1024;
  o.range_base_ms = 500;     // 64 KiB: 1.5 s
  o.read_deadline_s = 4;
  std::vector<uint8_t> buf(64 * 1024);
  {
    std::string slow = url("trickle", "inf"), good = fs_->url() + "/blob";
    auto src = open_http_source({slow, good}, o);
    ASSERT_TRUE(src.ok()) << src.status().to_string();
    auto t0 = Clock::now();
    Status st = (*src)->read(4096, buf.size(), buf.data());
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(std::memcmp(buf.data(), local.data() + 4096, buf.size()), 0);
    EXPECT_LT(s, 3.5) << "the slow mirror held the read";
    EXPECT_GE(fetch_stats(slow).errors[static_cast<int>(FetchCause::timeout)], 1u);
  }
  {
    std::string slow = url("trickle", "inf");
    auto src = open_http_source({slow}, o);
    ASSERT_TRUE(src.ok()) << src.status().to_string();
    auto t0 = Clock::now();
    Status st = (*src)->read(4096, buf.size(), buf.data());
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_FALSE(st.ok()) << "a read at 4 KiB/s must not succeed after " << s << " s";
    // A timeout: unavailable, exit 7 (README's table; it was io, exit 1).
    EXPECT_EQ(st.code(), Errc::unavailable);
    EXPECT_NE(st.message().find("deadline"), std::string::npos) << st.message();
    EXPECT_LT(s, o.read_deadline_s + 2.0);
    EXPECT_GE(fetch_stats(slow).errors[static_cast<int>(FetchCause::timeout)], 2u);
  }
}

// Flipped bits pass HTTP (nothing there can see them) but never reach a
// caller: the frame xxh3 rejects them; a cached bad block is dropped with
// invalidate() and refetched.
TEST_F(FaultTest, FlippedBitsAreNeverServed) {
  const std::string delta = fs_->url() + "/a/delta";
  // Persistent flips, no cache: every rebuild fails, none returns bytes.
  {
    std::string tag = "f/flip-inf-t" + std::to_string(tag_++);
    auto r = open_remote(delta, fs_->url() + "/" + tag + "/a/base", nullptr, nullptr, fast_opts());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ApplyOptions ao;
    ao.threads = 2;
    auto n = apply_delta(**r, "", ao);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.status().code(), Errc::corrupt) << n.status().to_string();
  }
  // One flipped response, with a cache: the bad block lands in the cache,
  // the frame's hash check catches it, DeltaReader drops the cached copies
  // of the ranges it used and rebuilds from the origin: the right bytes, no
  // error, and the bad block invalidated.
  auto cache = make_memory_cache(64 << 20);
  std::vector<CachedSource*> w;  // idx, dat, base files
  std::string tag = "f/flip-1-t" + std::to_string(tag_++);
  auto r = open_remote(delta, fs_->url() + "/" + tag + "/a/base", cache, &w, fast_opts());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(w.size(), 2 + (*r)->manifest().base_files.size());  // idx, dat, bases
  const Manifest& m = (*r)->manifest();
  uint32_t k = 0;
  while (k < m.frames.size() && m.frames[k].base_file == kNoBase) ++k;
  ASSERT_LT(k, m.frames.size());
  const Frame& f = m.frames[k];
  std::vector<uint8_t> out(f.out_len);
  Status st = (*r)->read_frame(k, out.data());
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(xxh128(out.data(), out.size()), f.hash);
  EXPECT_GT(w[2 + f.base_file]->cache_stats().invalidated, 0u) << "the flipped block was never dropped";
  // The rest of the model rebuilds through the same reader: other blocks of
  // that first response are still bad in the cache; each is dropped when a
  // frame using it fails its hash.
  ApplyOptions ao;
  ao.threads = 2;
  auto n = apply_delta(**r, "", ao);
  EXPECT_TRUE(n.ok()) << n.status().to_string();
}

// Bare hub ids against HF_ENDPOINT = nginx, and the inputs that must stay
// local paths: every one of them names a file that the hub form would find,
// so a network try would succeed and only a local-path reading fails.
TEST_F(NginxTest, BareHubIdsAndLocalLookingPaths) {
  std::string hub_file = g_root + "/hub/org-x/name_y/resolve/main/sub/blob";
  fs::create_directories(fs::path(hub_file).parent_path());
  fs::copy_file(g_root + "/blob", hub_file, fs::copy_options::overwrite_existing);
  std::string blob = tptest::read_file(g_root + "/blob");
  std::string here = g_work + "/cwd-hub";
  fs::create_directories(here);
  struct Restore {  // the working directory and HF_ENDPOINT, also when an ASSERT returns early
    std::string cwd = fs::current_path();
    ~Restore() {
      fs::current_path(cwd);
      ::unsetenv("HF_ENDPOINT");
    }
  } restore;
  ::setenv("HF_ENDPOINT", (ng_->url() + "/hub").c_str(), 1);
  fs::current_path(here);
  auto check_reads = [&](const std::string& loc) {
    auto r = open_source(loc);
    ASSERT_TRUE(r.ok()) << loc << ": " << r.status().to_string();
    ASSERT_EQ((*r)->size(), blob.size()) << loc;
    std::string got(4096, '\0');
    ASSERT_TRUE((*r)->read(1 << 20, got.size(), reinterpret_cast<uint8_t*>(got.data())).ok()) << loc;
    EXPECT_EQ(got, blob.substr(1 << 20, got.size())) << loc;
  };
  auto check_local_missing = [&](const std::string& loc) {
    EXPECT_FALSE(parse_hub_location(loc).has_value()) << loc;
    EXPECT_FALSE(is_remote_location(loc)) << loc;
    auto r = open_source(loc);
    ASSERT_FALSE(r.ok()) << loc << " was opened";
    EXPECT_NE(r.status().message().find("No such file or directory"), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find("127.0.0.1"), std::string::npos) << "a network try: " << r.status().message();
  };
  // Nothing named org-x here: the bare id is a hub id, as is hf://.
  check_reads("org-x/name_y/sub/blob");
  check_reads("org-x/name_y@main/sub/blob");
  check_reads("hf://org-x/name_y/sub/blob");
  // Explicitly relative: local, whatever exists.
  check_local_missing("./org-x/name_y/sub/blob");
  check_local_missing("../org-x/name_y/sub/blob");
  // A local org-x/ directory: "org-x/name_y/..." is a local path with a
  // missing part; the error says how to mean the hub; hf:// still does.
  fs::create_directories(here + "/org-x");
  check_local_missing("org-x/name_y/sub/blob");
  auto r = open_source("org-x/name_y/sub/blob");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("write hf://org-x/name_y/sub/blob"), std::string::npos) << r.status().message();
  check_reads("hf://org-x/name_y/sub/blob");
  // A local file at the very path wins over the hub, as before.
  fs::create_directories(here + "/org-x/name_y/sub");
  tptest::write_file(here + "/org-x/name_y/sub/blob", "local");
  auto l = open_source("org-x/name_y/sub/blob");
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  EXPECT_EQ((*l)->size(), 5u);
}

TEST(Locations, HubIdsAndJoin) {
  ::setenv("HF_ENDPOINT", "http://127.0.0.1:9/", 1);
  auto h = parse_hub_location("hf://org/model@v1.0/sub/model.safetensors");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(hub_url(*h), "http://127.0.0.1:9/org/model/resolve/v1.0/sub/model.safetensors");
  auto d = parse_hub_location("org-x/name_y/config.json");  // bare, no such local path
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->revision, "main");
  EXPECT_EQ(hub_url(*d), "http://127.0.0.1:9/org-x/name_y/resolve/main/config.json");
  EXPECT_FALSE(parse_hub_location("/abs/path").has_value());
  EXPECT_FALSE(parse_hub_location("justaname").has_value());
  EXPECT_FALSE(parse_hub_location("http://x/y/z").has_value());
  EXPECT_EQ(join_location("org/name@rev", "tenpak.idx"), "org/name@rev/tenpak.idx");
  EXPECT_EQ(join_location("http://h/d/", "a/b"), "http://h/d/a/b");
  EXPECT_EQ(join_location("http://h/d?x=1", "f"), "http://h/d/f?x=1");
  EXPECT_EQ(join_location("/local/dir", "f"), "/local/dir/f");
  EXPECT_TRUE(is_remote_location("https://h/x"));
  EXPECT_TRUE(is_remote_location("hf://o/n/f"));
  EXPECT_FALSE(is_remote_location(g_root + "/blob"));
  // A local path wins over the hub form when it exists.
  std::string cwd = fs::current_path();
  fs::current_path(g_root);
  EXPECT_FALSE(parse_hub_location("a/base/model.safetensors").has_value());
  fs::current_path(cwd);
  // A hub id reaches HF_ENDPOINT (nothing listens on port 9: a clear connect error naming the URL).
  SourceOptions so;
  so.http = fast_opts();
  so.http.attempts_per_mirror = 1;
  auto r = open_source("hf://org/model/config.json", so);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("http://127.0.0.1:9/org/model/resolve/main/config.json"), std::string::npos)
      << r.status().message();
  // A bare id that is not a local path either: the message says both.
  auto bare = open_source("no-such-org/no-such-model/model.safetensors", so);
  ASSERT_FALSE(bare.ok());
  EXPECT_NE(bare.status().message().find("no such local file; as a hub id"), std::string::npos) << bare.status().message();
  ::unsetenv("HF_ENDPOINT");
}

}  // namespace

// User info in URLs is redacted in every text shown (issue 15: the mount
// message, log and Prometheus labels showed http://user:pass@...).
TEST(Locations, CredentialsAreRedacted) {
  EXPECT_EQ(redact_urls("http://u:p@h:8/x?q=1"), "http://***@h:8/x?q=1");
  EXPECT_EQ(redact_urls("base http://u:p@h/a and https://v@g/b: failed"), "base http://***@h/a and https://***@g/b: failed");
  EXPECT_EQ(redact_urls("http://h/p@q"), "http://h/p@q") << "an @ in the path is not user info";
  EXPECT_EQ(redact_urls("no url here, a@b"), "no url here, a@b");
  EXPECT_EQ(redact_urls("http://a:b@"), "http://***@");
  EXPECT_EQ(redact_urls("\"http://a:b@h\""), "\"http://***@h\"");
  // An unreachable origin's error, name and counters never carry them.
  SourceOptions so;
  so.http = fast_opts();
  so.http.attempts_per_mirror = 1;
  auto r = open_source("http://alice:s3cret@127.0.0.1:9/x", so);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("s3cret"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("http://***@127.0.0.1:9/x"), std::string::npos) << r.status().message();
  std::string prom = render_prometheus({});
  EXPECT_EQ(prom.find("s3cret"), std::string::npos);
  EXPECT_NE(prom.find("origin=\"http://***@127.0.0.1:9/x\""), std::string::npos) << "the origin's counters are labelled, redacted";
}
