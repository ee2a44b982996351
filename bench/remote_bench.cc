// remote_bench: rebuilds a fine-tune from a delta and a base served over
// HTTP, optionally through the LMDB block cache, and reports time, bytes
// fetched, bytes needed and peak memory as one JSON line. Driven by
// bench/remote_bench.sh, which runs curl side by side.
//
//   remote_bench rebuild DELTA_URL BASE_URL [--cache DIR] [--threads N]
//       rebuild every file in memory (every frame xxh3 and file sha256 checked)
//   remote_bench warm-base|fetch-base DELTA_URL BASE_URL [--cache DIR] [--threads N]
//       read every base file the delta uses (through the cache: fills it;
//       without: raw HTTP transport throughput), N threads (default 4)
//   remote_bench readers|readers-fetch DELTA_URL BASE_URL [--cache DIR] [--readers 8]
//       N threads each rebuild every frame (same files, same order, started
//       together); reports bytes fetched against bytes needed. readers-fetch
//       makes the same reads without decoding (fetch dedup without the CPU).
//   remote_bench needed DELTA BASE
//       only opens the delta (paths or URLs) and reports needed_bytes: what a
//       reader of the whole model must fetch at least (the mount benchmark's
//       denominator for case 4)
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tenpak/cache.h"
#include "tenpak/cached_source.h"
#include "tenpak/delta.h"
#include "tenpak/http_source.h"
#include "tenpak/open_source.h"

using namespace tenpak;

namespace {

struct Opened {
  std::unique_ptr<DeltaReader> r;
  std::vector<BlockSource*> bases;  // by base file index (null when unused), cached when a cache is given
  BlockSource* data = nullptr;       // tenpak.dat (cached when a cache is given)
  uint64_t index_bytes = 0;
};

Result<Opened> open_remote(const std::string& delta, const std::string& base, std::shared_ptr<BlockCache> cache) {
  Opened o;
  auto wrap = [&](std::unique_ptr<BlockSource> s, std::string id) -> std::unique_ptr<BlockSource> {
    if (!cache) return s;
    if (id.empty()) id = source_identity(*s);
    return wrap_with_cache(std::move(s), cache, id);
  };
  auto idx = open_source(join_location(delta, kIndexFile));
  if (!idx.ok()) return idx.status();
  o.index_bytes = (*idx)->size();
  auto dat = open_source(join_location(delta, kDataFile));
  if (!dat.ok()) return dat.status();
  auto dsrc = wrap(std::move(*dat), "");
  o.data = dsrc.get();
  auto r = DeltaReader::open(wrap(std::move(*idx), ""), std::move(dsrc), delta);
  if (!r.ok()) return r.status();
  o.r = std::move(*r);
  const Manifest& m = o.r->manifest();
  std::vector<bool> used(m.base_files.size());
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) used[f.base_file] = true;
  o.bases.resize(m.base_files.size());
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    if (!used[i]) continue;
    SourceOptions so;
    so.expected_size = m.base_files[i].size;
    auto b = open_source(join_location(base, m.base_files[i].name), so);
    if (!b.ok()) return b.status();
    auto src = wrap(std::move(*b), hex(m.base_files[i].sha256));
    o.bases[i] = src.get();
    TP_RETURN_IF_ERROR(o.r->set_base(i, std::move(src)));
  }
  return o;
}

// Bytes of the union of [a, b) ranges.
uint64_t union_bytes(std::vector<std::pair<uint64_t, uint64_t>> v) {
  std::sort(v.begin(), v.end());
  uint64_t total = 0, cur_a = 0, cur_b = 0;
  bool open = false;
  for (auto [a, b] : v) {
    if (open && a <= cur_b) {
      cur_b = std::max(cur_b, b);
      continue;
    }
    if (open) total += cur_b - cur_a;
    cur_a = a, cur_b = b, open = true;
  }
  if (open) total += cur_b - cur_a;
  return total;
}

// What a reader of the whole model must fetch at least: the index, every
// frame payload, the union of the base ranges the frames use.
uint64_t bytes_needed(const Opened& o) {
  const Manifest& m = o.r->manifest();
  std::vector<std::pair<uint64_t, uint64_t>> data;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> base;
  for (auto& f : m.frames) {
    if (f.data_len) data.emplace_back(f.data_offset, f.data_offset + f.data_len);
    if (f.base_file != kNoBase && f.base_len) base[f.base_file].emplace_back(f.base_offset, f.base_offset + f.base_len);
  }
  uint64_t n = o.index_bytes + union_bytes(data);
  for (auto& [i, v] : base) n += union_bytes(v);
  return n;
}

long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Peak anonymous and file-backed resident memory, sampled every 20 ms. The
// LMDB cache is read through a shared mmap: its pages count as RssFile
// (page cache shared with every process, reclaimable), not as RssAnon.
class MemSampler {
 public:
  MemSampler() : t_([this] {
    while (!stop_) {
      sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }) {}
  ~MemSampler() { finish(); }
  void finish() {
    if (t_.joinable()) {
      stop_ = true;
      t_.join();
      sample();
    }
  }
  long anon_kib() const { return anon_; }
  long file_kib() const { return file_; }

 private:
  void sample() {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long v;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "RssAnon: %ld", &v) == 1) anon_ = std::max(anon_.load(), v);
      if (std::sscanf(line, "RssFile: %ld", &v) == 1) file_ = std::max(file_.load(), v);
    }
    std::fclose(f);
  }
  std::atomic<bool> stop_{false};
  std::atomic<long> anon_{0}, file_{0};
  std::thread t_;
};

int usage() {
  std::fprintf(stderr,
               "usage: remote_bench rebuild|warm-base|fetch-base|readers|readers-fetch|needed DELTA_URL BASE_URL [--cache DIR] [--cache-size BYTES]\n"
               "                    [--threads N] [--readers N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  std::string mode = argv[1], delta = argv[2], base = argv[3], cache_dir;
  uint64_t cache_size = 64ull << 30;
  unsigned threads = 0, readers = 8;
  for (int i = 4; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--cache") cache_dir = v;
    else if (k == "--cache-size") cache_size = std::stoull(v);
    else if (k == "--threads") threads = static_cast<unsigned>(std::stoul(v));
    else if (k == "--readers") readers = static_cast<unsigned>(std::stoul(v));
    else return usage();
  }
  MemSampler mem;
  std::shared_ptr<BlockCache> cache;
  if (!cache_dir.empty()) cache = open_lmdb_cache(cache_dir, cache_size);
  auto t0 = std::chrono::steady_clock::now();
  auto o = open_remote(delta, base, cache);
  if (!o.ok()) {
    std::fprintf(stderr, "remote_bench: %s\n", o.status().to_string().c_str());
    return 1;
  }
  const Manifest& m = o->r->manifest();
  uint64_t out_bytes = 0;
  for (auto& f : m.out_files) out_bytes += f.size;
  Status st;
  uint64_t served = 0;
  if (mode == "rebuild") {
    ApplyOptions ao;
    ao.threads = threads;
    auto n = apply_delta(*o->r, "", ao);
    if (!n.ok()) st = n.status();
    else served = *n;
  } else if (mode == "warm-base" || mode == "fetch-base") {
    // Every base file the delta uses, in 8 MiB reads spread over threads
    // (through the cache when one is given: warm-base fills it).
    const uint64_t chunk = 8 << 20;
    std::vector<std::pair<BlockSource*, uint64_t>> work;
    for (auto* b : o->bases)
      if (b)
        for (uint64_t off = 0; off < b->size(); off += chunk) work.emplace_back(b, off);
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> total{0};
    std::mutex mu;
    unsigned nt = threads ? threads : 4;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < nt; ++t)
      ts.emplace_back([&] {
        std::vector<uint8_t> buf(chunk);
        for (size_t i; (i = next++) < work.size();) {
          auto [b, off] = work[i];
          size_t len = static_cast<size_t>(std::min<uint64_t>(chunk, b->size() - off));
          Status s = b->read(off, len, buf.data());
          if (!s.ok()) {
            std::lock_guard<std::mutex> g(mu);
            st = s;
            return;
          }
          total += len;
        }
      });
    for (auto& t : ts) t.join();
    served = total;
  } else if (mode == "needed") {
    // Nothing to do: the JSON line below carries bytes_needed().
  } else if (mode == "readers" || mode == "readers-fetch") {
    const bool decode = mode == "readers";
    std::vector<std::thread> ts;
    std::atomic<uint64_t> total{0};
    std::atomic<bool> failed{false};
    std::vector<Status> sts(readers);
    for (unsigned t = 0; t < readers; ++t)
      ts.emplace_back([&, t] {
        std::vector<uint8_t> buf, in;
        for (uint32_t k = 0; k < m.frames.size() && !failed; ++k) {
          const Frame& f = m.frames[k];
          buf.resize(f.out_len);
          Status s;
          if (decode) {
            s = o->r->read_frame(k, buf.data());
          } else {  // the reads a rebuild makes, without the decoding (CPU)
            in.resize(std::max(f.data_len, f.base_len));
            s = o->data->read(f.data_offset, f.data_len, in.data());
            if (s.ok() && f.base_file != kNoBase) s = o->bases[f.base_file]->read(f.base_offset, f.base_len, in.data());
          }
          if (!s.ok()) {
            sts[t] = s;
            failed = true;
            return;
          }
          total += buf.size();
        }
      });
    for (auto& t : ts) t.join();
    for (auto& s : sts)
      if (!s.ok()) st = s;
    served = total;
  } else {
    return usage();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  mem.finish();
  if (!st.ok()) {
    std::fprintf(stderr, "remote_bench: %s\n", st.to_string().c_str());
    return 1;
  }
  FetchStats fs = fetch_stats_total();
  uint64_t base_fetched = 0, delta_fetched = 0;
  for (auto& [url, s] : fetch_stats_all()) (url.rfind(delta, 0) == 0 ? delta_fetched : base_fetched) += s.bytes;
  CacheStats cs = cache ? cache->stats() : CacheStats{};
  std::printf(
      "{\"mode\":\"%s\",\"seconds\":%.3f,\"model_bytes\":%llu,\"served_bytes\":%llu,\"fetched_bytes\":%llu,"
      "\"fetched_base\":%llu,\"fetched_delta\":%llu,\"needed_bytes\":%llu,\"requests\":%llu,\"retries\":%llu,"
      "\"cache_hits\":%llu,\"cache_misses\":%llu,\"peak_rss_kib\":%ld,\"peak_anon_kib\":%ld,\"peak_file_kib\":%ld}\n",
      mode.c_str(), secs, (unsigned long long)out_bytes, (unsigned long long)served,
      (unsigned long long)fs.bytes, (unsigned long long)base_fetched,
      (unsigned long long)delta_fetched, (unsigned long long)bytes_needed(*o), (unsigned long long)fs.requests,
      (unsigned long long)fs.retries, (unsigned long long)cs.hits, (unsigned long long)cs.misses, peak_rss_kib(), mem.anon_kib(), mem.file_kib());
  return 0;
}
