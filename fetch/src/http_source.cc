// HTTP(S) BlockSource on libcurl. See http_source.h for the contract.
//
// Design: one pool of easy handles per source (a handle keeps its connection
// alive between requests, so a pool gives connection reuse and as many
// requests in flight as threads reading); one process-wide share handle for
// DNS and TLS sessions. Every request is a single "Range: bytes=a-b" GET
// whose response is checked before a byte of it is accepted.
#include "tenpak/http_source.h"
#include "tenpak/open_source.h"

#include "tenpak/curl_api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

namespace tenpak {

const char* fetch_cause_name(FetchCause c) {
  switch (c) {
    case FetchCause::connect: return "connect";
    case FetchCause::timeout: return "timeout";
    case FetchCause::reset: return "reset";
    case FetchCause::http_5xx: return "http_5xx";
    case FetchCause::http_4xx: return "http_4xx";
    case FetchCause::bad_response: return "bad_response";
    case FetchCause::changed: return "changed";
    case FetchCause::other: break;
    case FetchCause::count_: break;
  }
  return "other";
}

namespace {

// ---- counters --------------------------------------------------------------

struct Counters {
  std::atomic<uint64_t> bytes{0}, requests{0}, retries{0}, http2{0};
  std::atomic<uint64_t> errors[static_cast<int>(FetchCause::count_)] = {};
  std::atomic<uint64_t> buckets[kFetchLatencyBucketCount] = {};
  std::atomic<uint64_t> lat_count{0}, lat_sum_us{0};

  void latency(double s) {
    for (size_t i = 0; i < kFetchLatencyBucketCount; ++i)
      if (s <= kFetchLatencyBuckets[i]) buckets[i].fetch_add(1, std::memory_order_relaxed);
    lat_count.fetch_add(1, std::memory_order_relaxed);
    lat_sum_us.fetch_add(static_cast<uint64_t>(s * 1e6), std::memory_order_relaxed);
  }
  FetchStats snapshot() const {
    FetchStats s;
    s.bytes = bytes.load();
    s.requests = requests.load();
    s.retries = retries.load();
    s.http2_responses = http2.load();
    for (int i = 0; i < static_cast<int>(FetchCause::count_); ++i) s.errors[i] = errors[i].load();
    for (size_t i = 0; i < kFetchLatencyBucketCount; ++i) s.latency_buckets[i] = buckets[i].load();
    s.latency_count = lat_count.load();
    s.latency_sum_s = lat_sum_us.load() / 1e6;
    return s;
  }
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Counters>> by_url;
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: sources may outlive static destruction order
  return *r;
}

std::string strip_query(const std::string& url) {
  size_t q = url.find_first_of("?#");
  return q == std::string::npos ? url : url.substr(0, q);
}

std::shared_ptr<Counters> counters_for(const std::string& url) {
  auto& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  auto& c = r.by_url[strip_query(url)];
  if (!c) c = std::make_shared<Counters>();
  return c;
}

// ---- libcurl process-wide state --------------------------------------------

std::mutex g_share_mu[CURL_LOCK_DATA_LAST];
void share_lock(CURL*, curl_lock_data d, curl_lock_access, void*) { g_share_mu[d].lock(); }
void share_unlock(CURL*, curl_lock_data d, void*) { g_share_mu[d].unlock(); }

CURLSH* global_share() {
  static CURLSH* sh = [] {
    // load_curl() (open_http_source) ran curl_global_init.
    CURLSH* s = curl_api().share_init();
    curl_api().share_setopt(s, CURLSHOPT_LOCKFUNC, share_lock);
    curl_api().share_setopt(s, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_api().share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_api().share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return s;
  }();
  return sh;
}

// $CURL_CA_BUNDLE, as the curl tool reads it ("" when unset).
std::string env_ca_bundle() {
  const char* v = std::getenv("CURL_CA_BUNDLE");
  return v ? v : "";
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_api().easy_cleanup(c); }
};
using Easy = std::unique_ptr<CURL, EasyDeleter>;
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_api().slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// ---- one request -----------------------------------------------------------

struct Response {
  long code = 0;                 // status of the last response (after redirects)
  bool have_range = false;       // a Content-Range header was seen
  uint64_t range_first = 0, range_last = 0;
  std::optional<uint64_t> range_total;  // "*" -> nullopt
  std::string etag;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// "bytes a-b/total" or "bytes */total".
bool parse_content_range(const std::string& v, Response& r) {
  if (v.rfind("bytes ", 0) != 0) return false;
  std::string s = v.substr(6);
  size_t slash = s.find('/');
  if (slash == std::string::npos) return false;
  std::string range = s.substr(0, slash), total = s.substr(slash + 1);
  try {
    if (total != "*") r.range_total = std::stoull(total);
    if (range != "*") {
      size_t dash = range.find('-');
      if (dash == std::string::npos) return false;
      r.range_first = std::stoull(range.substr(0, dash));
      r.range_last = std::stoull(range.substr(dash + 1));
    }
  } catch (...) {
    return false;
  }
  r.have_range = range != "*";
  return true;
}

size_t on_header(char* p, size_t sz, size_t n, void* ud) {
  auto* r = static_cast<Response*>(ud);
  std::string line(p, sz * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (redirects, 100-continue): forget the previous one's headers
    *r = Response{};
    return sz * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string::npos) return sz * n;
  std::string key = lower(trim(line.substr(0, colon))), val = trim(line.substr(colon + 1));
  if (key == "content-range") {
    if (!parse_content_range(val, *r)) r->have_range = false, r->range_total.reset(), r->range_first = 1, r->range_last = 0;
  } else if (key == "etag") {
    r->etag = val;
  }
  return sz * n;
}

struct Sink {
  CURL* easy = nullptr;
  uint8_t* dst = nullptr;
  uint64_t offset = 0;
  size_t len = 0, got = 0;
  const Response* resp = nullptr;
  bool checked = false;
  std::string refused;  // why the body was refused before accepting it
  FetchCause refused_cause = FetchCause::bad_response;
  Counters* counters = nullptr;
};

size_t on_body(char* p, size_t sz, size_t n, void* ud) {
  auto* s = static_cast<Sink*>(ud);
  size_t bytes = sz * n;
  s->counters->bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (!s->checked) {  // check status and Content-Range before taking any byte
    s->checked = true;
    long code = 0;
    curl_api().easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
    const Response& r = *s->resp;
    if (code != 206) {
      s->refused = "HTTP " + std::to_string(code) + (code == 200 ? " (the server ignored the range request)" : "");
      s->refused_cause = fetch_cause_of_http_status(code);
      return 0;
    }
    if (!r.have_range || r.range_first != s->offset || r.range_last != s->offset + s->len - 1) {
      s->refused = "206 with Content-Range " +
                   (r.have_range ? std::to_string(r.range_first) + "-" + std::to_string(r.range_last) : std::string("missing")) +
                   ", asked for " + std::to_string(s->offset) + "-" + std::to_string(s->offset + s->len - 1);
      return 0;
    }
  }
  if (bytes > s->len - s->got) {
    s->refused = "response body longer than the " + std::to_string(s->len) + " bytes asked for";
    return 0;
  }
  std::memcpy(s->dst + s->got, p, bytes);
  s->got += bytes;
  return bytes;
}

struct Outcome {
  bool ok = false;
  bool fatal = false;  // retrying this mirror cannot help
  FetchCause cause = FetchCause::other;
  std::string msg;
};

FetchCause classify_curl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return FetchCause::connect;
    case CURLE_OPERATION_TIMEDOUT: return FetchCause::timeout;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return FetchCause::reset;
    default: return FetchCause::other;
  }
}

// ---- the source ------------------------------------------------------------

struct Mirror {
  std::string url;    // as given, credentials included: for libcurl only
  std::string shown;  // redacted (redact_urls): for names, messages, labels
  std::shared_ptr<Counters> counters;
  std::mutex mu;          // guards etag / probed
  bool probed = false;
  std::string etag;
};

class HttpSourceImpl final : public HttpSource {
 public:
  HttpSourceImpl(std::vector<std::string> urls, HttpOptions opt) : opt_(std::move(opt)) {
    for (auto& u : urls) {
      auto m = std::make_unique<Mirror>();
      m->url = u;
      m->shown = redact_urls(u);
      m->counters = counters_for(m->shown);
      mirrors_.push_back(std::move(m));
    }
    if (!opt_.bearer_token.empty()) {
      // The token lives only in this header list; messages use URLs only.
      headers_.reset(curl_api().slist_append(nullptr, ("Authorization: Bearer " + opt_.bearer_token).c_str()));
    }
  }

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return mirrors_[preferred_.load()]->shown; }
  // A transfer in progress sees the flag in its progress callback (libcurl
  // calls it at least about once a second, even on a stalled connection)
  // and is aborted; retries and back-off sleeps check it too.
  void cancel() override { cancelled_ = true; }
  const std::string& etag() const override { return etag_; }
  std::string validator() const override {
    return strip_query(mirrors_[0]->shown) + "|" + std::to_string(size_) + "|" + etag_;
  }

  // Finds the size on the first mirror that answers.
  Status probe() {
    Status last;
    for (size_t i = 0; i < mirrors_.size(); ++i) {
      Mirror& m = *mirrors_[i];
      Outcome o;
      uint64_t sz = 0;
      for (int a = 0; a < opt_.attempts_per_mirror; ++a) {
        if (a > 0) backoff(a, m);
        o = probe_once(m, sz);
        if (o.ok || o.fatal) break;
      }
      if (o.ok) {
        if (opt_.expected_size && sz != *opt_.expected_size) {
          m.counters->errors[static_cast<int>(FetchCause::changed)]++;
          last = {Errc::mismatch, m.shown + ": the origin file is " + std::to_string(sz) + " bytes, expected " +
                                      std::to_string(*opt_.expected_size) +
                                      " (it changed since the delta was built; refusing to mix versions)"};
          continue;
        }
        size_ = sz;
        etag_ = m.etag;
        preferred_ = i;
        return Status::Ok();
      }
      last = {errc_of_fetch_cause(o.cause), m.shown + ": " + o.msg};
    }
    return last;
  }

  Status read(uint64_t offset, size_t len, uint8_t* dst) override {
    if (offset > size_ || len > size_ - offset)
      return {Errc::corrupt, name() + ": range " + std::to_string(offset) + "+" + std::to_string(len) +
                                 " is past the end of the file (" + std::to_string(size_) + " bytes)"};
    if (len == 0) return Status::Ok();
    std::string errors;
    // The code every mirror's failure maps to (errc_of_fetch_cause: each
    // answering 404 is not_found, each unreachable or too slow unavailable);
    // io where they differ; a changed origin is mismatch whatever the others
    // did. The read's own deadline passing is a timeout: unavailable.
    std::optional<Errc> code;
    bool changed = false;
    size_t start = preferred_.load();
    using Clock = std::chrono::steady_clock;
    const auto deadline = opt_.read_deadline_s > 0 ? Clock::now() + std::chrono::seconds(opt_.read_deadline_s) : Clock::time_point::max();
    for (size_t k = 0; k < mirrors_.size(); ++k) {
      size_t i = (start + k) % mirrors_.size();
      Mirror& m = *mirrors_[i];
      Outcome o;
      int a = 0;
      for (; a < opt_.attempts_per_mirror; ++a) {
        if (a > 0) backoff(a, m);
        if (cancelled_.load()) break;
        if (Clock::now() >= deadline) {
          m.counters->errors[static_cast<int>(FetchCause::timeout)]++;
          return {Errc::unavailable, "range " + std::to_string(offset) + "+" + std::to_string(len) + " failed: the read's deadline of " +
                                std::to_string(opt_.read_deadline_s) + " s passed" + (errors.empty() ? "" : " (" + errors + ")") +
                                (o.msg.empty() ? "" : "; last: " + m.shown + ": " + o.msg)};
        }
        o = get_once(m, offset, len, dst, deadline);
        if (o.ok || o.fatal) break;
        if (o.cause == FetchCause::timeout && k + 1 < mirrors_.size()) break;  // too slow: the next mirror first
      }
      if (!o.ok && cancelled_.load())  // also when the transfer aborted was the last attempt
        return {Errc::cancelled, name() + ": range " + std::to_string(offset) + "+" + std::to_string(len) + ": cancelled"};
      if (o.ok) {
        if (i != start) preferred_ = i;  // stay on the mirror that works
        return Status::Ok();
      }
      if (o.cause == FetchCause::changed) changed = true;
      else if (const Errc e = errc_of_fetch_cause(o.cause); !code) code = e;
      else if (*code != e) code = Errc::io;
      if (!errors.empty()) errors += "; ";
      errors += m.shown + ": " + o.msg + " (" + std::to_string(std::min(a + 1, opt_.attempts_per_mirror)) + " attempts)";
    }
    return {changed ? Errc::mismatch : code.value_or(Errc::io), "range " + std::to_string(offset) + "+" + std::to_string(len) + " failed: " + errors};
  }

 private:
  Easy take_handle() {
    {
      std::lock_guard<std::mutex> g(pool_mu_);
      if (!pool_.empty()) {
        Easy e = std::move(pool_.back());
        pool_.pop_back();
        return e;
      }
    }
    return Easy(curl_api().easy_init());
  }
  void give_handle(Easy e) {
    std::lock_guard<std::mutex> g(pool_mu_);
    if (pool_.size() < 64) pool_.push_back(std::move(e));
  }

  void common_opts(CURL* c, const std::string& url, Response* resp) {
    curl_api().easy_reset(c);  // keeps the connection cache of this handle
    curl_api().easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_api().easy_setopt(c, CURLOPT_SHARE, global_share());
    curl_api().easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_api().easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);  // the hub redirects to its CDN
    curl_api().easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_api().easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    if (!ca_file_.empty()) curl_api().easy_setopt(c, CURLOPT_CAINFO, ca_file_.c_str());
    curl_api().easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, opt_.connect_timeout_ms);
    curl_api().easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, opt_.low_speed_limit);
    curl_api().easy_setopt(c, CURLOPT_LOW_SPEED_TIME, opt_.low_speed_time_s);
    curl_api().easy_setopt(c, CURLOPT_TIMEOUT, opt_.request_timeout_s);
    curl_api().easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    // Bigger receive buffer than libcurl's 16 KiB default (the curl tool
    // uses 100 KiB): fewer callbacks and syscalls per MiB.
    curl_api().easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_api().easy_setopt(c, CURLOPT_USERAGENT, "tenpak/0.1");
    if (headers_) curl_api().easy_setopt(c, CURLOPT_HTTPHEADER, headers_.get());
    curl_api().easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_api().easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_api().easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_api().easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_api().easy_setopt(c, CURLOPT_XFERINFODATA, &cancelled_);
  }

  // Non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK).
  static int on_progress(void* cancelled, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<std::atomic<bool>*>(cancelled)->load() ? 1 : 0;
  }

  void backoff(int attempt, Mirror& m) {
    if (cancelled_.load()) return;  // not a retry: read() stops
    m.counters->retries.fetch_add(1, std::memory_order_relaxed);
    double base = std::min<double>(opt_.backoff_max_ms, opt_.backoff_initial_ms * double(1u << std::min(attempt - 1, 20)));
    thread_local std::minstd_rand rng(std::random_device{}());  // jitter only; 8 bytes of TLS, not mt19937's 5 KB
    double ms = base * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000));
    while (!cancelled_.load()) {  // in slices, so that cancel() need not wait the whole pause
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) break;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
    }
  }

  Outcome fail(Mirror& m, FetchCause cause, std::string msg, bool fatal = false) {
    m.counters->errors[static_cast<int>(cause)].fetch_add(1, std::memory_order_relaxed);
    Outcome o;
    o.cause = cause;
    o.msg = std::move(msg);
    o.fatal = fatal;
    return o;
  }

  Outcome status_fail(Mirror& m, long code) {
    std::string msg = "HTTP " + std::to_string(code);
    if (code == 404 || code == 410) return fail(m, FetchCause::http_4xx, msg + " (not found)", true);
    if (code == 401 || code == 403)
      return fail(m, FetchCause::http_4xx,
                  msg + (opt_.bearer_token.empty() ? " (access denied; set HF_TOKEN for gated or private repositories)"
                                                   : " (access denied with the token given)"),
                  true);
    if (code == 416) return fail(m, FetchCause::changed, msg + " (range not satisfiable: the file shrank?)", true);
    switch (const FetchCause c = fetch_cause_of_http_status(code)) {
      case FetchCause::http_5xx: return fail(m, c, msg);
      case FetchCause::http_4xx: return fail(m, c, msg, true);
      default: return fail(m, c, msg + " (unexpected status)");
    }
  }

  // Records the ETag of a mirror the first time, then insists on it.
  bool etag_ok(Mirror& m, const std::string& etag) {
    if (etag.empty()) return true;
    std::lock_guard<std::mutex> g(m.mu);
    if (!m.probed) {
      m.probed = true;
      m.etag = etag;
      return true;
    }
    return m.etag.empty() || m.etag == etag;
  }

  // One request, counted and timed in the origin's counters.
  static CURLcode perform_counted(CURL* e, Mirror& m) {
    auto t0 = std::chrono::steady_clock::now();
    m.counters->requests++;
    CURLcode rc = curl_api().easy_perform(e);
    m.counters->latency(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    long version = 0;  // of the last response; 0 when none came
    if (curl_api().easy_getinfo(e, CURLINFO_HTTP_VERSION, &version) == CURLE_OK && version == CURL_HTTP_VERSION_2_0)
      m.counters->http2++;
    return rc;
  }

  Outcome probe_once(Mirror& m, uint64_t& size) {
    Easy e = take_handle();
    if (!e) return fail(m, FetchCause::other, "curl_easy_init failed");
    Response resp;
    common_opts(e.get(), m.url, &resp);
    curl_api().easy_setopt(e.get(), CURLOPT_NOBODY, 1L);
    CURLcode rc = perform_counted(e.get(), m);
    long code = 0;
    curl_api().easy_getinfo(e.get(), CURLINFO_RESPONSE_CODE, &code);
    curl_off_t cl = -1;
    curl_api().easy_getinfo(e.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    give_handle(std::move(e));
    if (rc != CURLE_OK) return fail(m, classify_curl(rc), std::string("HEAD failed: ") + curl_api().easy_strerror(rc));
    if (code == 405 || code == 501) return probe_by_range(m, size);  // servers without HEAD
    if (code != 200) return status_fail(m, code);
    if (cl < 0) return fail(m, FetchCause::bad_response, "HEAD response without Content-Length");
    size = static_cast<uint64_t>(cl);
    {
      std::lock_guard<std::mutex> g(m.mu);
      m.probed = true;
      m.etag = resp.etag;
    }
    return Outcome{true, false, FetchCause::other, ""};
  }

  // Size from "Content-Range: bytes 0-0/N" of a one-byte range request
  // ("bytes */0" with 416 for an empty file).
  Outcome probe_by_range(Mirror& m, uint64_t& size) {
    Easy e = take_handle();
    if (!e) return fail(m, FetchCause::other, "curl_easy_init failed");
    Response resp;
    common_opts(e.get(), m.url, &resp);
    curl_api().easy_setopt(e.get(), CURLOPT_RANGE, "0-0");
    curl_api().easy_setopt(e.get(), CURLOPT_WRITEFUNCTION, +[](char*, size_t sz, size_t n, void* ud) -> size_t {
      auto* got = static_cast<size_t*>(ud);
      *got += sz * n;
      return *got <= 1 ? sz * n : 0;  // a one-byte answer or nothing: never a whole file
    });
    size_t got = 0;
    curl_api().easy_setopt(e.get(), CURLOPT_WRITEDATA, &got);
    CURLcode rc = perform_counted(e.get(), m);
    m.counters->bytes.fetch_add(std::min<size_t>(got, 1), std::memory_order_relaxed);
    long code = 0;
    curl_api().easy_getinfo(e.get(), CURLINFO_RESPONSE_CODE, &code);
    give_handle(std::move(e));
    if (code == 416 && resp.range_total && *resp.range_total == 0) {
      size = 0;
    } else {
      if (code == 200) return fail(m, FetchCause::bad_response, "the server does not support range requests");
      if (rc != CURLE_OK) return fail(m, classify_curl(rc), std::string("range probe failed: ") + curl_api().easy_strerror(rc));
      if (code != 206) return status_fail(m, code);
      if (!resp.range_total) return fail(m, FetchCause::bad_response, "206 without the file size in Content-Range");
      size = *resp.range_total;
    }
    std::lock_guard<std::mutex> g(m.mu);
    m.probed = true;
    m.etag = resp.etag;
    return Outcome{true, false, FetchCause::other, ""};
  }

  Outcome get_once(Mirror& m, uint64_t offset, size_t len, uint8_t* dst,
                   std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
    Easy e = take_handle();
    if (!e) return fail(m, FetchCause::other, "curl_easy_init failed");
    Response resp;
    common_opts(e.get(), m.url, &resp);
    {
      // This request's time: the minimum rate for its length, the request
      // timeout, and what is left of the read's deadline, whichever is least.
      long long ms = opt_.request_timeout_s * 1000LL;
      if (opt_.min_rate > 0) ms = std::min<long long>(ms, opt_.range_base_ms + static_cast<long long>(len) * 1000 / opt_.min_rate);
      if (deadline != std::chrono::steady_clock::time_point::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        ms = std::min<long long>(ms, std::max<long long>(left, 1));
      }
      curl_api().easy_setopt(e.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(ms));
    }
    std::string range = std::to_string(offset) + "-" + std::to_string(offset + len - 1);
    curl_api().easy_setopt(e.get(), CURLOPT_RANGE, range.c_str());
    Sink sink;
    sink.easy = e.get();
    sink.dst = dst;
    sink.offset = offset;
    sink.len = len;
    sink.resp = &resp;
    sink.counters = m.counters.get();
    curl_api().easy_setopt(e.get(), CURLOPT_WRITEFUNCTION, on_body);
    curl_api().easy_setopt(e.get(), CURLOPT_WRITEDATA, &sink);
    CURLcode rc = perform_counted(e.get(), m);
    long code = 0;
    curl_api().easy_getinfo(e.get(), CURLINFO_RESPONSE_CODE, &code);
    give_handle(std::move(e));
    std::string where = "range " + range + ": ";
    if (!sink.refused.empty()) {
      if (sink.refused_cause != FetchCause::bad_response) return status_fail(m, code);
      return fail(m, FetchCause::bad_response, where + sink.refused);
    }
    if (rc != CURLE_OK) return fail(m, classify_curl(rc), where + curl_api().easy_strerror(rc));
    if (code != 206) return status_fail(m, code);
    if (!sink.checked) {  // no body at all
      return fail(m, FetchCause::reset, where + "206 without a body");
    }
    if (resp.range_total && *resp.range_total != size_)
      return fail(m, FetchCause::changed,
                  where + "the file is now " + std::to_string(*resp.range_total) + " bytes, was " + std::to_string(size_) +
                      " (origin changed; refusing to mix versions)",
                  true);
    if (!etag_ok(m, resp.etag))
      return fail(m, FetchCause::changed, where + "ETag changed to " + resp.etag + " (origin changed; refusing to mix versions)",
                  true);
    if (sink.got != len)
      return fail(m, FetchCause::reset, where + "got " + std::to_string(sink.got) + " of " + std::to_string(len) + " bytes");
    return Outcome{true, false, FetchCause::other, ""};
  }

  HttpOptions opt_;
  std::string ca_file_ = opt_.ca_file.empty() ? env_ca_bundle() : opt_.ca_file;
  std::vector<std::unique_ptr<Mirror>> mirrors_;
  Slist headers_;
  uint64_t size_ = 0;
  std::string etag_;
  std::atomic<size_t> preferred_{0};
  std::atomic<bool> cancelled_{false};
  std::mutex pool_mu_;
  std::vector<Easy> pool_;
};

}  // namespace

FetchCause fetch_cause_of_curl(int curl_code) { return classify_curl(static_cast<CURLcode>(curl_code)); }

FetchCause fetch_cause_of_http_status(long code) {
  if (code >= 500 || code == 429) return FetchCause::http_5xx;
  if (code >= 400) return FetchCause::http_4xx;
  return FetchCause::bad_response;
}

Errc errc_of_fetch_cause(FetchCause c) {
  switch (c) {
    case FetchCause::connect:
    case FetchCause::timeout:
    case FetchCause::reset:
    case FetchCause::http_5xx: return Errc::unavailable;
    case FetchCause::http_4xx: return Errc::not_found;
    case FetchCause::changed: return Errc::mismatch;
    case FetchCause::bad_response:
    case FetchCause::other:
    case FetchCause::count_: break;
  }
  return Errc::io;
}

std::vector<std::pair<std::string, FetchStats>> fetch_stats_all() {
  auto& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  std::vector<std::pair<std::string, FetchStats>> out;
  for (auto& [url, c] : r.by_url) out.emplace_back(url, c->snapshot());
  return out;
}

FetchStats fetch_stats(const std::string& url) {
  auto& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = r.by_url.find(strip_query(redact_urls(url)));
  return it == r.by_url.end() ? FetchStats{} : it->second->snapshot();
}

FetchStats fetch_stats_total() {
  FetchStats t;
  for (auto& [url, s] : fetch_stats_all()) {
    t.bytes += s.bytes;
    t.requests += s.requests;
    t.retries += s.retries;
    t.http2_responses += s.http2_responses;
    for (int i = 0; i < static_cast<int>(FetchCause::count_); ++i) t.errors[i] += s.errors[i];
    for (size_t i = 0; i < kFetchLatencyBucketCount; ++i) t.latency_buckets[i] += s.latency_buckets[i];
    t.latency_count += s.latency_count;
    t.latency_sum_s += s.latency_sum_s;
  }
  return t;
}

Result<std::unique_ptr<HttpSource>> open_http_source(const std::vector<std::string>& mirror_urls, const HttpOptions& opt) {
  if (mirror_urls.empty()) return Status{Errc::invalid, "no URL given"};
  if (auto api = load_curl(); !api.ok()) return api.status();  // curl_global_init before any handle exists
  global_share();
  auto src = std::make_unique<HttpSourceImpl>(mirror_urls, opt);
  Status st = src->probe();
  if (!st.ok()) return st;
  return std::unique_ptr<HttpSource>(std::move(src));
}

}  // namespace tenpak
