// mount_read: the timed readers of bench/mount_bench.sh (one JSON line each).
//   mount_read seq FILE     sequential read(2), 1 MiB requests
//   mount_read mmap FILE    mmap MAP_SHARED, touch one byte per 4 KiB page
//   mount_read first FILE   open -> safetensors header -> first 1 MiB of the
//                           first tensor in file order (what a loader waits for),
//                           with the time split into open / header / parse / tensor.
//                           The reader's own one-time costs (paging in the JSON
//                           parser's code, faulting in the 1 MiB buffer) are paid
//                           before the clock starts: after a page-cache drop they
//                           would otherwise be charged to the file system.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

static double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s seq|mmap|first FILE\n", argv[0]);
    return 2;
  }
  std::string mode = argv[1];
  const char* path = argv[2];
  std::vector<char> tensor_buf;
  if (mode == "first") {
    // Warm-up (not timed): the parser's code and the destination buffer.
    auto warm = nlohmann::json::parse(R"({"__metadata__":{"a":"b"},"t":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})");
    for (auto& [k, v] : warm.items())
      if (k != "__metadata__") (void)v["data_offsets"][0].get<uint64_t>();
    tensor_buf.assign(1u << 20, 1);
  }
  auto t0 = Clock::now();
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    std::perror(path);
    return 1;
  }
  if (mode == "seq") {
    std::vector<char> buf(1u << 20);
    uint64_t n = 0;
    for (;;) {
      ssize_t k = read(fd, buf.data(), buf.size());
      if (k < 0) {
        std::perror("read");
        return 1;
      }
      if (k == 0) break;
      n += static_cast<uint64_t>(k);
    }
    double s = secs(t0);
    std::printf("{\"mode\":\"seq\",\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.6f}\n", (unsigned long long)n, s, n / s / 1e9);
  } else if (mode == "mmap") {
    struct stat st;
    fstat(fd, &st);
    size_t n = static_cast<size_t>(st.st_size);
    auto* p = static_cast<const volatile uint8_t*>(mmap(nullptr, n, PROT_READ, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) {
      std::perror("mmap");
      return 1;
    }
    uint8_t x = 0;
    for (size_t i = 0; i < n; i += 4096) x ^= p[i];
    munmap(const_cast<uint8_t*>(p), n);
    double s = secs(t0);
    std::printf("{\"mode\":\"mmap\",\"bytes\":%zu,\"seconds\":%.6f,\"gbps\":%.6f,\"x\":%u}\n", n, s, n / s / 1e9, x);
  } else if (mode == "first") {
    const double t_open = secs(t0);
    uint64_t hn = 0;
    if (pread(fd, &hn, 8, 0) != 8 || hn > 100000000) return 1;
    std::string h(hn, '\0');
    if (pread(fd, h.data(), hn, 8) != static_cast<ssize_t>(hn)) return 1;
    const double t_header = secs(t0);
    auto j = nlohmann::json::parse(h);
    uint64_t best = UINT64_MAX, end = 0;
    std::string name;
    for (auto& [k, v] : j.items()) {
      if (k == "__metadata__") continue;
      uint64_t b = v["data_offsets"][0], e = v["data_offsets"][1];
      if (b < best) best = b, end = e, name = k;
    }
    size_t len = static_cast<size_t>(std::min<uint64_t>(end - best, 1u << 20));
    const double t_parse = secs(t0);
    if (pread(fd, tensor_buf.data(), len, static_cast<off_t>(8 + hn + best)) != static_cast<ssize_t>(len)) return 1;
    double s = secs(t0);
    std::printf("{\"mode\":\"first\",\"tensor\":\"%s\",\"bytes\":%zu,\"ms\":%.3f,\"open_ms\":%.3f,\"header_ms\":%.3f,"
                "\"parse_ms\":%.3f,\"tensor_ms\":%.3f}\n",
                name.c_str(), len, s * 1e3, t_open * 1e3, (t_header - t_open) * 1e3, (t_parse - t_header) * 1e3,
                (s - t_parse) * 1e3);
  } else {
    return 2;
  }
  close(fd);
  return 0;
}
