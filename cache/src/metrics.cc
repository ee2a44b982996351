#include "tenpak/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "tenpak/block_source.h"
#include "tenpak/http_source.h"

namespace tenpak {
namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

void metric(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

// One row per counter of a layer's stats: its metric, type and help. The
// exporter's per-origin and per-cache metrics are generated from these
// tables (a counter is added here once).
template <class Stats>
struct CounterRow {
  const char* name;
  const char* type;
  const char* help;
  uint64_t Stats::*field;
};

constexpr CounterRow<FetchStats> kFetchCounters[] = {
    {"tenpak_fetch_bytes_total", "counter", "Body bytes received from the origin.", &FetchStats::bytes},
    {"tenpak_fetch_requests_total", "counter", "HTTP requests sent to the origin.", &FetchStats::requests},
    {"tenpak_fetch_retries_total", "counter", "Requests repeated after a failure.", &FetchStats::retries},
    {"tenpak_fetch_http2_responses_total", "counter", "Requests answered over HTTP/2.", &FetchStats::http2_responses},
};

constexpr CounterRow<CacheStats> kCacheCounters[] = {
    {"tenpak_cache_hits_total", "counter", "Cache lookups answered.", &CacheStats::hits},
    {"tenpak_cache_misses_total", "counter", "Cache lookups not answered.", &CacheStats::misses},
    {"tenpak_cache_puts_total", "counter", "Values stored.", &CacheStats::puts},
    {"tenpak_cache_evictions_total", "counter", "Values evicted (LRU).", &CacheStats::evictions},
    {"tenpak_cache_corrupt_dropped_total", "counter", "Values that failed their checksum, dropped.",
     &CacheStats::corrupt_dropped},
    {"tenpak_cache_errors_total", "counter", "Backend errors turned into misses.", &CacheStats::errors},
    {"tenpak_cache_quarantined_total", "counter",
     "Damaged environments set aside (the cache started empty or went on without).", &CacheStats::quarantined},
    {"tenpak_cache_bytes", "gauge", "Bytes of values stored.", &CacheStats::bytes_used},
    {"tenpak_cache_limit_bytes", "gauge", "Size limit.", &CacheStats::bytes_limit},
};

}  // namespace

std::string render_prometheus(const std::vector<std::pair<std::string, const BlockCache*>>& caches, const std::string& extra) {
  std::ostringstream o;
  auto origins = fetch_stats_all();
  for (const auto& row : kFetchCounters) {
    metric(o, row.name, row.type, row.help);
    for (auto& [url, s] : origins) o << row.name << "{origin=\"" << esc(url) << "\"} " << s.*row.field << "\n";
  }
  metric(o, "tenpak_fetch_errors_total", "counter", "Failed requests by cause.");
  for (auto& [url, s] : origins)
    for (int c = 0; c < static_cast<int>(FetchCause::count_); ++c)
      o << "tenpak_fetch_errors_total{origin=\"" << esc(url) << "\",cause=\"" << fetch_cause_name(static_cast<FetchCause>(c))
        << "\"} " << s.errors[c] << "\n";
  metric(o, "tenpak_fetch_latency_seconds", "histogram", "Latency of origin requests.");
  for (auto& [url, s] : origins) {
    for (size_t i = 0; i < kFetchLatencyBucketCount; ++i)
      o << "tenpak_fetch_latency_seconds_bucket{origin=\"" << esc(url) << "\",le=\"" << kFetchLatencyBuckets[i] << "\"} "
        << s.latency_buckets[i] << "\n";
    o << "tenpak_fetch_latency_seconds_bucket{origin=\"" << esc(url) << "\",le=\"+Inf\"} " << s.latency_count << "\n";
    o << "tenpak_fetch_latency_seconds_sum{origin=\"" << esc(url) << "\"} " << s.latency_sum_s << "\n";
    o << "tenpak_fetch_latency_seconds_count{origin=\"" << esc(url) << "\"} " << s.latency_count << "\n";
  }
  const LocalReadStats lr = local_read_stats();
  // The role label came with the delta data counts (before it, the two
  // series {path=...} summed base files and delta data files).
  metric(o, "tenpak_local_read_bytes_total", "counter",
         "Bytes read from local files that bypass the page cache when cold, by role (base: model base files, "
         "delta_data: delta data files) and path: O_DIRECT from storage, or from the page cache (all pages there).");
  for (const auto& [role, n] : {std::pair<const char*, LocalReadCounts>{"base", lr.base}, {"delta_data", lr.delta_data}}) {
    o << "tenpak_local_read_bytes_total{role=\"" << role << "\",path=\"direct\"} " << n.direct_bytes << "\n";
    o << "tenpak_local_read_bytes_total{role=\"" << role << "\",path=\"page_cache\"} " << n.page_cache_bytes << "\n";
  }
  std::vector<std::pair<std::string, CacheStats>> cs;
  for (auto& [n, c] : caches)
    if (c) cs.emplace_back(n, c->stats());
  for (const auto& row : kCacheCounters) {
    metric(o, row.name, row.type, row.help);
    for (auto& [n, s] : cs) o << row.name << "{cache=\"" << esc(n) << "\"} " << s.*row.field << "\n";
  }
  o << extra;
  return o.str();
}

std::string render_prometheus_histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                                        const std::vector<uint64_t>& cumulative, double sum, uint64_t count) {
  std::ostringstream o;
  metric(o, name.c_str(), "histogram", help.c_str());
  char num[40];
  for (size_t i = 0; i < bounds.size(); ++i) {
    // The shortest form that reads back as the same double ("0.00025", "1").
    for (int prec = 1; prec <= 17; ++prec) {
      std::snprintf(num, sizeof num, "%.*g", prec, bounds[i]);
      if (std::strtod(num, nullptr) == bounds[i]) break;
    }
    o << name << "_bucket{le=\"" << num << "\"} " << (i < cumulative.size() ? cumulative[i] : count) << "\n";
  }
  o << name << "_bucket{le=\"+Inf\"} " << count << "\n";
  std::snprintf(num, sizeof num, "%.9g", sum);
  o << name << "_sum " << num << "\n" << name << "_count " << count << "\n";
  return o.str();
}

struct MetricsExporter::Thread {
  std::thread t;
};

Result<std::unique_ptr<MetricsExporter>> MetricsExporter::start(uint16_t port, std::function<std::string()> render) {
  std::unique_ptr<MetricsExporter> ex(new MetricsExporter());
  ex->render_ = std::move(render);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status{Errc::io, std::string("metrics: socket: ") + std::strerror(errno)};
  ex->listen_fd_ = fd;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0)
    return Status{Errc::io, "metrics: cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno)};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ex->port_ = ntohs(a.sin_port);
  if (::pipe2(ex->wake_, O_CLOEXEC) != 0) return Status{Errc::io, std::string("metrics: pipe: ") + std::strerror(errno)};
  ex->thread_ = std::make_unique<Thread>();
  ex->thread_->t = std::thread([p = ex.get()] { p->serve(); });
  return ex;
}

MetricsExporter::~MetricsExporter() {
  if (thread_ && thread_->t.joinable()) {
    char c = 'q';
    [[maybe_unused]] ssize_t r = ::write(wake_[1], &c, 1);
    thread_->t.join();
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
}

// One request per connection, answered in order; a slow client can delay
// the next scrape by at most the 2 s receive timeout.
void MetricsExporter::serve() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{2, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string req;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    bool ok = req.rfind("GET /metrics ", 0) == 0 || req.rfind("GET /metrics?", 0) == 0;
    std::string body = ok ? render_() : "not found\n";
    std::string resp = std::string(ok ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 404 Not Found\r\n") +
                       (ok ? "Content-Type: text/plain; version=0.0.4\r\n" : "Content-Type: text/plain\r\n") +
                       "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    size_t off = 0;
    while (off < resp.size()) {
      ssize_t n = ::send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(c);
  }
}

}  // namespace tenpak
