// The cost of syncing the LMDB block cache at every commit (CacheOptions::sync,
// MDB_NOSYNC off) against the default (no sync): N puts of one value size
// into an empty cache. Usage: lmdb_sync_bench sync|nosync VALUE_BYTES N [DIR]
// (DIR: on the disk the cache lives on; default "."). docs/BENCHMARKS.md.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>
#include "tenpak/cache.h"
int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: lmdb_sync_bench sync|nosync VALUE_BYTES N [DIR]\n");
    return 2;
  }
  bool sync = std::string(argv[1]) == "sync";
  size_t sz = std::stoul(argv[2]);
  int n = std::stoi(argv[3]);
  std::string dir = std::string(argc > 4 ? argv[4] : ".") + "/lmdb-sync-bench-" + argv[1];
  std::filesystem::remove_all(dir);
  tenpak::CacheOptions o; o.sync = sync;
  auto c = tenpak::open_lmdb_cache(dir, 4ull << 30, o);
  std::vector<uint8_t> v(sz); std::mt19937_64 g(1); for (auto& b : v) b = g();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) { v[0] = i; v[1] = i >> 8; c->put("k" + std::to_string(i), v.data(), v.size()); }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s value %zu: %d puts in %.3f s = %.0f us/put, %.0f MB/s\n", argv[1], sz, n, s, s / n * 1e6, n * sz / s / 1e6);
  c.reset(); std::filesystem::remove_all(dir);
}
