// Observability: counters in Prometheus text format, and a tiny loopback
// HTTP exporter serving them on GET /metrics.
//
// Wiring in a daemon (e.g. the mount with --metrics-port PORT):
//   auto ex = MetricsExporter::start(port, [&] {
//     return render_prometheus({{"shared", cache.get()}}, my_extra_metrics());
//   });
//   if (!ex.ok()) warn(ex.status()); // keep it alive as long as the daemon
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/cache.h"
#include "tenpak/status.h"

namespace tenpak {

// Renders the fetch counters of every HTTP origin of this process
// (tenpak_fetch_*{origin="URL"}), the stats of each named cache
// (tenpak_cache_*{cache="NAME"}) and appends `extra` (already formatted).
std::string render_prometheus(const std::vector<std::pair<std::string, const BlockCache*>>& caches,
                              const std::string& extra = "");

// One histogram without labels in Prometheus text format: HELP, TYPE, a
// `NAME_bucket{le="B"}` line per upper bound in `bounds` (ascending) with its
// cumulative count, `le="+Inf"` with `count`, then `NAME_sum` and
// `NAME_count`. `cumulative` has bounds.size() entries, each <= count.
std::string render_prometheus_histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                                        const std::vector<uint64_t>& cumulative, double sum, uint64_t count);

// A thread serving GET /metrics on 127.0.0.1:port (port 0: any free port).
// Other paths get 404. Stops (and joins) when destroyed.
class MetricsExporter {
 public:
  static Result<std::unique_ptr<MetricsExporter>> start(uint16_t port, std::function<std::string()> render);
  ~MetricsExporter();
  uint16_t port() const { return port_; }

 private:
  MetricsExporter() = default;
  void serve();
  int listen_fd_ = -1, wake_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::function<std::string()> render_;
  struct Thread;
  std::unique_ptr<Thread> thread_;
};

}  // namespace tenpak
