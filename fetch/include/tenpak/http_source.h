// HTTP(S) origins: a BlockSource that reads byte ranges with libcurl.
//
// Contract (on top of BlockSource's): every response is checked. A range
// request must get 206 with exactly the Content-Range asked for, the total
// size seen at open, and exactly `len` body bytes; a 200 (server ignoring
// the range), a 416 or a wrong length is an error, never served. Transient
// failures (connect errors, resets, truncated bodies, 5xx/429, stalls below
// the low-speed limit, malformed responses) are retried with exponential
// backoff and jitter, then the next mirror is tried. A changed origin (total
// size or ETag no longer what was seen at open, or not the size the caller
// expects) is refused: TenPak never mixes two versions of a file.
// Secrets (the bearer token) are never put in messages or logs.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/block_source.h"
#include "tenpak/status.h"

namespace tenpak {

struct HttpOptions {
  long connect_timeout_ms = 10000;
  // A transfer slower than low_speed_limit bytes/s for low_speed_time_s
  // seconds is a stall: aborted and retried.
  long low_speed_limit = 1024;
  long low_speed_time_s = 10;
  long request_timeout_s = 300;  // whole request, last resort
  // A range request must finish within range_base_ms + its length at
  // min_rate bytes/s (1 MiB: 2 + 16 s): an origin trickling above the stall
  // threshold (say 2 KiB/s) is cut off, counted as a timeout, and the range
  // asked of the next mirror (a slow mirror is not retried while others
  // remain). 0: no minimum rate.
  long min_rate = 64 * 1024;
  long range_base_ms = 2000;
  // All attempts of one read(), over every mirror, end within this: then the
  // read fails with Errc::unavailable (a timeout: exit 7; EIO in a mount),
  // counted as a timeout. 0: no deadline.
  long read_deadline_s = 60;
  int attempts_per_mirror = 5;   // tries of one request on one mirror
  int backoff_initial_ms = 100;  // doubled per retry, with +-50% jitter
  int backoff_max_ms = 5000;
  // Sent as "Authorization: Bearer ..." (hub downloads). Not followed across
  // redirects to other hosts (libcurl's default), never logged.
  std::string bearer_token;
  // When set, an origin of any other size is refused at open (Errc::mismatch).
  std::optional<uint64_t> expected_size;
  // PEM file of the CA certificates to trust for https, instead of the
  // system's (a private CDN, tests). Empty: $CURL_CA_BUNDLE when set, as for
  // the curl tool; else the system store.
  std::string ca_file;
};

// Why a request failed; counted per origin.
enum class FetchCause : int {
  connect = 0,    // could not connect / resolve
  timeout,        // stall (low-speed limit) or request timeout
  reset,          // connection reset, empty reply, truncated body
  http_5xx,       // 5xx or 429
  http_4xx,       // 401, 403, 404, 410 and other 4xx
  bad_response,   // 200 to a range request, wrong Content-Range, wrong length
  changed,        // size or ETag differs from what was seen or expected
  other,
  count_
};
const char* fetch_cause_name(FetchCause c);
// What a failed libcurl call (its CURLcode) means.
FetchCause fetch_cause_of_curl(int curl_code);
// What an HTTP status other than the one asked for means: 5xx and 429
// (too many requests) http_5xx, any other 4xx http_4xx, the rest (a 3xx not
// followed, a 200 to a range request) bad_response. HttpSource refines it
// where a range request gives a status its own meaning (416: changed).
FetchCause fetch_cause_of_http_status(long code);
// The one mapping from why an origin failed (after the retries) to a code,
// for every caller of libcurl, so that every command exits alike (README's
// exit codes): an origin that cannot be reached or does not serve now
// (connection refused, DNS failure, timeout, reset, 5xx / 429) is
// unavailable (exit 7: try again later); a 4xx is not_found (exit 2); a size
// or ETag that changed is mismatch (3); an answer that is not what was asked
// (no range support, no Content-Length) and the rest are io (1).
Errc errc_of_fetch_cause(FetchCause c);

// Latency buckets (upper bounds, seconds) of the request histogram.
constexpr double kFetchLatencyBuckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30};
constexpr size_t kFetchLatencyBucketCount = sizeof(kFetchLatencyBuckets) / sizeof(double);

struct FetchStats {
  uint64_t bytes = 0;       // body bytes received (accepted or not)
  uint64_t requests = 0;    // HTTP requests sent (probes included)
  uint64_t retries = 0;     // requests repeated after a failure
  uint64_t http2_responses = 0;  // requests answered over HTTP/2 (negotiated by ALPN on https)
  uint64_t errors[static_cast<int>(FetchCause::count_)] = {};
  uint64_t latency_buckets[kFetchLatencyBucketCount] = {};  // cumulative counts, Prometheus style
  uint64_t latency_count = 0;
  double latency_sum_s = 0;
};

// Counters of every origin this process has talked to, keyed by the origin
// URL (one file of one mirror, query string removed). Live for the process.
std::vector<std::pair<std::string, FetchStats>> fetch_stats_all();
// Counters of one origin URL (zeros when never used).
FetchStats fetch_stats(const std::string& url);
// Sum over every origin.
FetchStats fetch_stats_total();

// An HTTP origin file with one or more mirrors (the same file at several
// URLs, most preferred first). Probes the size (HEAD, falling back to a
// 0-0 range request) at open: 404/401/403 there is a clear error naming the
// URL. Thread-safe; keeps a pool of connections so concurrent reads are in
// flight at once and connections are reused; HTTP/2 when the server offers it.
class HttpSource : public BlockSource {
 public:
  // The ETag seen at open on the mirror that answered ("" if none).
  virtual const std::string& etag() const = 0;
  // A string that changes when the origin file changes: URL, size, ETag.
  virtual std::string validator() const = 0;
};

Result<std::unique_ptr<HttpSource>> open_http_source(const std::vector<std::string>& mirror_urls,
                                                     const HttpOptions& opt = {});

}  // namespace tenpak
