// codec_bench: delta size, build and rebuild throughput and rebuild memory of
// TenPak side by side with generic tools, in one run.
//
// Pairs: the three real YOLOv5n fine-tunes (skipped when the data folder is
// absent) and generated LLM-like BF16 and FP32 pairs (`tenpak fixture`).
// Columns (fraction of the fine-tune's size, smaller is better):
//   zstd -19, zstd -19 --patch-from=base, xdelta3 -9 (the CLIs, one thread),
//   XOR with the base split into byte planes then zstd -19 (ZipLLM/BitX,
//   implemented here with libzstd), TenPak default, TenPak without sub_ctx.
// Throughput: MB of fine-tune per second on one core (build in process with
// threads = 1; rebuild by `tenpak delta apply -j1` in a child process, whose
// peak RSS is taken from wait4), plus single-thread decode speed per codec.
#include <algorithm>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tenpak/delta.h"
#include "tenpak/model.h"
#include "xor_baseline.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

struct Args {
  std::string tenpak = "tenpak";
  std::string data = "../shared/data/yolov5n";
  std::string work;
  unsigned size_mb = 64;
  bool generated = true;
  std::vector<std::string> fixtures;  // generated pair kinds (default bf16, fp32)
};

// --no-lowrank: build without codec 12 (the before/after comparison of docs/BENCHMARKS.md).
bool g_allow_lowrank = true;


double seconds(const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; }
// CPU time (user + system) this process has used so far.
double cpu_now() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

std::string shq(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// Runs a shell command, returns the number of bytes it wrote to stdout (-1 on failure).
long long stdout_bytes(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[1 << 16];
  long long n = 0;
  size_t r;
  while ((r = std::fread(buf, 1, sizeof buf, p)) > 0) n += static_cast<long long>(r);
  int st = ::pclose(p);
  return (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? n : -1;
}

struct ChildResult {
  int status = -1;
  long max_rss_kb = 0;
  double cpu_s = 0;  // user + system time of the child
  std::string out;
};

// Runs argv in a child (fork + exec: a fresh address space, so ru_maxrss is
// the child's own peak RSS), capturing stdout.
ChildResult run_child(const std::vector<std::string>& argv) {
  ChildResult res;
  int fd[2];
  if (::pipe(fd) != 0) return res;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd[1], 1);
    ::close(fd[0]);
    ::close(fd[1]);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    ::_exit(127);
  }
  ::close(fd[1]);
  char buf[4096];
  ssize_t r;
  while ((r = ::read(fd[0], buf, sizeof buf)) > 0) res.out.append(buf, static_cast<size_t>(r));
  ::close(fd[0]);
  struct rusage ru {};
  int st = 0;
  ::wait4(pid, &st, 0, &ru);
  res.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  res.max_rss_kb = ru.ru_maxrss;
  res.cpu_s = seconds(ru.ru_utime) + seconds(ru.ru_stime);
  return res;
}

// The files of a model: relative name -> path (a single file maps to its own name).
std::map<std::string, std::string> files_of(const std::string& p) {
  std::map<std::string, std::string> m;
  if (fs::is_regular_file(p)) {
    m[fs::path(p).filename().string()] = p;
    return m;
  }
  for (auto& e : fs::recursive_directory_iterator(p))
    if (e.is_regular_file()) m[fs::relative(e.path(), p).string()] = e.path().string();
  return m;
}

// The base file a fine-tune file is compared with: same name, or the only base file.
std::string base_for(const std::map<std::string, std::string>& base, const std::string& name) {
  if (auto it = base.find(name); it != base.end()) return it->second;
  if (base.size() == 1) return base.begin()->second;
  return {};
}

// The XOR/byte-plane baseline (bench/xor_baseline.h), the fine-tune loaded
// as `delta build` serves it by default.
Result<uint64_t> xor_planes_size(const std::string& base_path, const std::string& ft_path) {
  auto base = load_model(base_path, LoadOptions{false});
  if (!base.ok()) return base.status();
  auto ft = load_model(ft_path, LoadOptions{});
  if (!ft.ok()) return ft.status();
  return bench::xor_planes_size(*base, *ft);
}

struct Row {
  std::string name;
  uint64_t ft_bytes = 0;
  long long zstd = -1, patch = -1, xdelta = -1;
  uint64_t xorp = 0;
  uint64_t tp = 0, tp_fast = 0;
  // Wall-clock MB/s (one thread) and MB per CPU-second (robust to a loaded machine).
  double build_mbs = 0, build_fast_mbs = 0, rebuild_mbs = 0, rebuild_fast_mbs = 0;
  double build_cpu = 0, build_fast_cpu = 0, rebuild_cpu = 0, rebuild_fast_cpu = 0;
  long rss_kb = 0, rss_fast_kb = 0;
  std::map<std::string, std::pair<uint64_t, double>> per_codec;  // bytes, seconds (default delta)
};

// Builds in process on one thread; returns delta bytes and MB/s.
bool tenpak_build(const std::string& base, const std::string& ft, const std::string& out, bool ctx, uint64_t& bytes,
                  double& mbs, double& cpu_mbs, uint64_t& ft_bytes) {
  BuildOptions o;
  o.threads = 1;
  o.allow_ctx = ctx;
  o.allow_lowrank = g_allow_lowrank;
  fs::remove_all(out);
  const double c0 = cpu_now();
  auto r = build_delta(base, ft, out, o);
  const double cpu = cpu_now() - c0;
  if (!r.ok()) {
    std::fprintf(stderr, "build failed: %s\n", r.status().message().c_str());
    return false;
  }
  bytes = r->delta_bytes;
  ft_bytes = r->finetune_bytes;
  mbs = r->finetune_bytes / 1e6 / r->seconds;
  cpu_mbs = r->finetune_bytes / 1e6 / cpu;
  return true;
}

// Rebuilds to disk with the CLI on one thread; wall MB/s from its own timing
// (after the base sha256 check); MB per CPU-second and peak RSS of the whole
// process (base check included).
bool tenpak_rebuild(const Args& a, const std::string& delta, const std::string& base, const std::string& out,
                    uint64_t ft_bytes, double& mbs, double& cpu_mbs, long& rss_kb) {
  fs::remove_all(out);
  ChildResult c = run_child({a.tenpak, "delta", "apply", delta, "--base", base, "-o", out, "-j1", "--json"});
  fs::remove_all(out);
  if (c.status != 0) {
    std::fprintf(stderr, "apply failed (exit %d)\n", c.status);
    return false;
  }
  auto j = nlohmann::json::parse(c.out, nullptr, false);
  if (j.is_discarded() || !j.contains("seconds")) return false;
  mbs = ft_bytes / 1e6 / j["seconds"].get<double>();
  cpu_mbs = ft_bytes / 1e6 / c.cpu_s;
  rss_kb = c.max_rss_kb;
  return true;
}

// CPU time of the calling thread (precise; not inflated by other processes).
double thread_cpu() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec / 1e9;
}

// Decodes every frame once, single thread, CPU time per codec.
void per_codec(const std::string& delta, const std::string& base, Row& row) {
  auto r = open_delta_dir(delta);
  if (!r.ok() || !attach_local_base(**r, base, false).ok()) return;
  std::vector<uint8_t> buf(kMaxFrameOut);
  const Manifest& m = (*r)->manifest();
  for (uint32_t k = 0; k < m.frames.size(); ++k) {
    double t0 = thread_cpu();
    if (!(*r)->read_frame(k, buf.data()).ok()) return;
    auto& pc = row.per_codec[codec_name(m.frames[k].codec)];
    pc.first += m.frames[k].out_len;
    pc.second += thread_cpu() - t0;
  }
}

void measure(const Args& a, const std::string& name, const std::string& base, const std::string& ft, Row& row) {
  row.name = name;
  std::fprintf(stderr, "[%s] generic tools...\n", name.c_str());
  auto bf = files_of(base), ff = files_of(ft);
  row.zstd = row.patch = row.xdelta = 0;
  for (auto& [rel, path] : ff) {
    std::string b = base_for(bf, rel);
    auto add = [](long long& acc, long long v) { acc = (acc < 0 || v < 0) ? -1 : acc + v; };
    add(row.zstd, stdout_bytes("zstd -q -19 --single-thread -c " + shq(path)));
    if (b.empty()) {
      long long z = stdout_bytes("zstd -q -19 --single-thread -c " + shq(path));
      add(row.patch, z);
      add(row.xdelta, z);
    } else {
      add(row.patch, stdout_bytes("zstd -q -19 --single-thread --long=31 --patch-from=" + shq(b) + " -c " + shq(path)));
      add(row.xdelta, stdout_bytes("xdelta3 -9 -e -c -s " + shq(b) + " " + shq(path)));
    }
  }
  auto x = xor_planes_size(base, ft);
  row.xorp = x.ok() ? *x : 0;
  std::fprintf(stderr, "[%s] tenpak build/rebuild...\n", name.c_str());
  std::string d = a.work + "/delta-" + name, dfast = a.work + "/delta-fast-" + name, out = a.work + "/out-" + name;
  if (tenpak_build(base, ft, d, true, row.tp, row.build_mbs, row.build_cpu, row.ft_bytes))
    tenpak_rebuild(a, d, base, out, row.ft_bytes, row.rebuild_mbs, row.rebuild_cpu, row.rss_kb);
  if (tenpak_build(base, ft, dfast, false, row.tp_fast, row.build_fast_mbs, row.build_fast_cpu, row.ft_bytes))
    tenpak_rebuild(a, dfast, base, out, row.ft_bytes, row.rebuild_fast_mbs, row.rebuild_fast_cpu, row.rss_fast_kb);
  per_codec(d, base, row);
  per_codec(dfast, base, row);
  fs::remove_all(d);
  fs::remove_all(dfast);
}

int usage() {
  std::fprintf(stderr,
               "usage: codec_bench [--tenpak PATH] [--data DIR] [--size-mb N] [--no-generated] [--work DIR]\n"
               "                   [--fixture KIND]... [--no-lowrank]\n"
               "  --tenpak    the tenpak binary (for fixtures and the rebuild child)\n"
               "  --data      folder with base.safetensors and ft-*.safetensors (skipped if absent)\n"
               "  --size-mb   size of the generated BF16 and FP32 pairs (default 64)\n"
               "  --fixture   a `tenpak fixture` kind to generate (repeatable; default bf16 and fp32)\n"
               "  --no-lowrank  build without codec 12 (lowrank_lanes), for a before/after comparison\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (s == "--tenpak") a.tenpak = val();
    else if (s == "--data") a.data = val();
    else if (s == "--size-mb") a.size_mb = static_cast<unsigned>(std::stoul(val()));
    else if (s == "--work") a.work = val();
    else if (s == "--no-generated") a.generated = false;
    else if (s == "--fixture") a.fixtures.push_back(val());
    else if (s == "--no-lowrank") g_allow_lowrank = false;
    else return usage();
  }
  bool own_work = a.work.empty();
  if (own_work) {
    std::string t = (fs::temp_directory_path() / "tenpak-codec-bench-XXXXXX").string();
    a.work = ::mkdtemp(t.data());
  }
  std::vector<Row> rows;
  // Every ft-NAME.safetensors beside base.safetensors is a pair (the shared YOLOv5n fine-tunes, or any
  // other real fine-tunes of one base put in a folder the same way), in name order.
  if (fs::exists(a.data + "/base.safetensors")) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(a.data)) {
      std::string f = e.path().filename().string();
      const std::string pre = "ft-", suf = ".safetensors";
      if (f.size() > pre.size() + suf.size() && f.compare(0, pre.size(), pre) == 0 &&
          f.compare(f.size() - suf.size(), suf.size(), suf) == 0)
        names.push_back(f.substr(pre.size(), f.size() - pre.size() - suf.size()));
    }
    std::sort(names.begin(), names.end());
    std::string label = fs::weakly_canonical(fs::path(a.data)).filename().string();
    if (label.empty()) label = "data";
    for (const auto& y : names) {
      rows.emplace_back();
      measure(a, label + "/" + y, a.data + "/base.safetensors", a.data + "/ft-" + y + ".safetensors",
              rows.back());
    }
  } else {
    std::fprintf(stderr, "skipping the fine-tune pairs: %s/base.safetensors not found\n", a.data.c_str());
  }
  if (a.generated) {
    if (a.fixtures.empty()) a.fixtures = {"bf16", "fp32"};
    for (const std::string& k : a.fixtures) {
      const char* kind = k.c_str();
      std::string dir = a.work + "/fixture-" + kind;
      std::fprintf(stderr, "[%s] generating a %u MB pair...\n", kind, a.size_mb);
      ChildResult c = run_child({a.tenpak, "fixture", kind, dir, "--size-mb", std::to_string(a.size_mb)});
      if (c.status != 0) {
        std::fprintf(stderr, "fixture %s failed (exit %d)\n", kind, c.status);
        continue;
      }
      rows.emplace_back();
      measure(a, std::string("llm-") + kind + "-" + std::to_string(a.size_mb) + "MB", dir + "/base", dir + "/finetune",
              rows.back());
      fs::remove_all(dir);
    }
  }
  auto frac = [](long long v, uint64_t n) {
    char b[32];
    if (v < 0) return std::string("n/a");
    std::snprintf(b, sizeof b, "%.3f", static_cast<double>(v) / n);
    return std::string(b);
  };
  std::printf("\nDelta size as a fraction of the fine-tune (smaller is better)\n\n");
  std::printf("| pair | fine-tune | zstd -19 | zstd -19 --patch-from | xdelta3 -9 | XOR planes zstd-19 | TenPak | TenPak / XOR | TenPak no sub_ctx |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (auto& r : rows)
    std::printf("| %s | %.2f MB | %s | %s | %s | %s | **%s** | %.3f | %s |\n", r.name.c_str(), r.ft_bytes / 1e6,
                frac(r.zstd, r.ft_bytes).c_str(), frac(r.patch, r.ft_bytes).c_str(), frac(r.xdelta, r.ft_bytes).c_str(),
                frac(r.xorp, r.ft_bytes).c_str(), frac(r.tp, r.ft_bytes).c_str(),
                r.xorp ? static_cast<double>(r.tp) / r.xorp : 0.0, frac(r.tp_fast, r.ft_bytes).c_str());
  std::printf("\nThroughput on one thread: MB of fine-tune per second of wall clock / per CPU-second\n"
              "(rebuild: `tenpak delta apply -j1` to disk, CPU time and RSS of the whole process, base sha256 check included)\n\n");
  std::printf("| pair | build | rebuild | rebuild peak RSS | build, no sub_ctx | rebuild, no sub_ctx | rebuild peak RSS, no sub_ctx |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (auto& r : rows)
    std::printf("| %s | %.1f / %.1f | %.1f / %.1f | %.1f MB | %.1f / %.1f | %.1f / %.1f | %.1f MB |\n", r.name.c_str(),
                r.build_mbs, r.build_cpu, r.rebuild_mbs, r.rebuild_cpu, r.rss_kb / 1024.0, r.build_fast_mbs,
                r.build_fast_cpu, r.rebuild_fast_mbs, r.rebuild_fast_cpu, r.rss_fast_kb / 1024.0);
  std::printf("\nFrame decode speed per codec, one thread (read + decode + xxh3 check; MB of output per CPU-second)\n\n");
  std::printf("| pair | codec | MB decoded | MB/s |\n|---|---|---|---|\n");
  for (auto& r : rows)
    for (auto& [c, v] : r.per_codec)
      if (v.second > 0) std::printf("| %s | %s | %.2f | %.1f |\n", r.name.c_str(), c.c_str(), v.first / 1e6, v.first / 1e6 / v.second);
  if (own_work) fs::remove_all(a.work);
  return 0;
}
