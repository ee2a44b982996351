// tenpak mount | unmount | stats: serve deltas as fine-tuned model directories.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "tenpak/env.h"
#include "tenpak/fuse_mount.h"
#include "tenpak/model_fs.h"
#include "tenpak/stats_text.h"
#include "tenpak/mount.h"
#include "tenpak/open_source.h"

namespace tenpak::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct MountArgs {
  std::string source, mountpoint, base, log;
  bool foreground = false, force_clean = false, no_verify_base = false, allow_other = false, json_out = false;
  bool buffered_base = false;
  unsigned cache_mb = 64, keep_served_mb = 4, prefetch_mb = 16, warm_mb = 16, workers = 2, threads = 8, readahead_kb = 4096;
  // Persistent block cache (LMDB), shared by every mount on the machine.
  std::string cache_dir, cache_size;
  bool no_cache = false;
  std::string cache_frames = "slow";  // FrameCachePolicy of rebuilt frames
  int metrics_port = -1;  // -1: no Prometheus exporter
};

// A timestamped, thread-safe log sink on a FILE (the log file or stderr).
class Logger {
 public:
  explicit Logger(FILE* f) : f_(f) {}
  void operator()(const std::string& line) {
    std::lock_guard lk(mu_);
    char ts[32];
    time_t t = time(nullptr);
    struct tm tm;
    gmtime_r(&t, &tm);
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    // Locations in lines come from the user and from deltas: never their credentials.
    std::fprintf(f_, "%s tenpak[%d]: %s\n", ts, static_cast<int>(getpid()), redact_urls(line).c_str());
    std::fflush(f_);
  }

 private:
  std::mutex mu_;
  FILE* f_;
};

// The default log of a background mount: DIR/mount<mountpoint, '/' -> '_'>.log
// in the user's state directory ($XDG_STATE_HOME/tenpak, else
// ~/.local/state/tenpak, else $XDG_RUNTIME_DIR/tenpak), never a predictable
// name in a directory others can write to (/tmp: another user could plant a
// link there and have root append to any file). DIR is created 0700 and
// must be a directory of ours, not a link.
Result<std::string> default_log_path(const std::string& mp) {
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v && *v == '/' ? v : "";
  };
  std::string dir;
  if (auto d = env("XDG_STATE_HOME"); !d.empty()) dir = d + "/tenpak";
  else if (auto h = env("HOME"); !h.empty()) dir = h + "/.local/state/tenpak";
  else if (auto r = env("XDG_RUNTIME_DIR"); !r.empty()) dir = r + "/tenpak";
  else return Status{Errc::invalid, "no state directory for the mount log (HOME unset): give --log FILE"};
  std::error_code ec;
  fs::create_directories(fs::path(dir).parent_path(), ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status{Errc::io, dir + ": cannot create the log directory: " + std::strerror(errno)};
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
    return Status{Errc::unsupported, dir + ": not a directory of this user (a link?); give --log FILE"};
  std::string s = mp;
  for (char& c : s)
    if (c == '/') c = '_';
  if (s.size() > 200) s = s.substr(0, 160) + "-" + hex(xxh128(mp.data(), mp.size())).substr(0, 16);
  return dir + "/mount" + s + ".log";
}

// Opens a log for appending without following a link in its last
// component, created 0600 if absent; refuses anything but a regular file
// of this user (a FIFO, a device, another user's file).
Result<int> open_log(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
  if (fd < 0)
    return Status{errno == ELOOP ? Errc::unsupported : Errc::io,
                  path + ": cannot open the log file: " + (errno == ELOOP ? std::string("it is a symbolic link") : std::strerror(errno))};
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
    ::close(fd);
    return Status{Errc::unsupported, path + ": not a regular file of this user; refused as the log"};
  }
  ::fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);  // blocking writes from here
  return fd;
}

// Opens the mount (Mount::open), serves it until unmounted. `notify_fd` >= 0:
// the pipe to the waiting parent ("<exit code>\t<message>\n" once).
int serve(const MountArgs& a, int notify_fd, Logger& log) {
  bool notified = false;
  auto report = [&](int code, const std::string& msg) {
    if (notified) return;
    notified = true;
    if (notify_fd >= 0) {
      std::string line = std::to_string(code) + "\t" + msg + "\n";
      ssize_t w = write(notify_fd, line.data(), line.size());
      (void)w;
      close(notify_fd);
    } else if (code == kOk) {
      if (a.json_out) std::cout << msg << std::endl;
      else std::cerr << "tenpak: " << json::parse(msg).value("message", "") << std::endl;
    }
  };
  auto failed = [&](const Status& st) {
    log("error: " + st.message());
    int code = exit_code(st);
    if (notify_fd >= 0) report(code, st.message());
    else fail(st);
    return code;
  };
  tune_malloc_for_rebuilds(16u << 20);
  MountOptions mo;
  mo.source = a.source;
  mo.base = a.base;
  mo.verify_base = !a.no_verify_base;
  mo.buffered_base = a.buffered_base;
  mo.persistent_cache = !a.no_cache;
  mo.cache_dir = a.cache_dir;
  mo.cache_size = a.cache_size;
  mo.cache_frames = parse_frame_cache_policy(a.cache_frames).value_or(FrameCachePolicy::slow);  // checked by CLI
  mo.fs.frame_cache_bytes = static_cast<size_t>(a.cache_mb) << 20;
  mo.fs.spent_keep_bytes = static_cast<size_t>(a.keep_served_mb) << 20;
  mo.fs.prefetch_window_bytes = static_cast<size_t>(a.prefetch_mb) << 20;
  mo.fs.prefetch_workers = a.workers;
  mo.fs.warm_bytes = static_cast<uint64_t>(a.warm_mb) << 20;
  // Every read request in the log (the cache traces its fetches under the
  // same switch).
  mo.fs.trace_reads = env_flag("TENPAK_TRACE_READS");
  mo.metrics_port = a.metrics_port;
  mo.log = [&log](const std::string& l) { log(l); };
  auto mounted = Mount::open(std::move(mo));
  if (!mounted.ok()) return failed(mounted.status());
  Mount& mt = **mounted;
  MountConfig mc;
  mc.mountpoint = a.mountpoint;
  mc.fsname = "tenpak:" + redact_urls(a.source);  // /proc/mounts is world-readable
  mc.max_threads = a.threads;
  mc.readahead_kb = a.readahead_kb;
  mc.allow_other = a.allow_other;
  mc.log = [&log](const std::string& l) { log(l); };
  json info = {{"mountpoint", a.mountpoint}, {"source", redact_urls(a.source)}, {"models", mt.models()},
               {"files", mt.files()}, {"bytes", mt.bytes()}, {"pid", static_cast<int64_t>(getpid())}};
  if (notify_fd >= 0) info["log"] = a.log;
  info["message"] = "mounted " + redact_urls(a.source) + " at " + a.mountpoint + " (" + std::to_string(mt.models()) +
                    " model(s), " + std::to_string(mt.files()) + " files, " +
                    human_bytes(static_cast<double>(mt.bytes())) + "; pid " + std::to_string(getpid()) +
                    (notify_fd >= 0 ? ", log " + a.log : std::string(", Ctrl-C to unmount")) + ")";
  Status st = serve_fuse(mt.fs(), mc, [&](const Status& s) {
    if (s.ok()) {
      log(info["message"].get<std::string>());
      report(kOk, json_text(info, -1));
      mt.fs().warm_heads();
    } else {
      log("error: " + s.message());
      report(exit_code(s), s.message());
    }
  });
  if (!notified) report(st.ok() ? kError : exit_code(st), st.ok() ? "mount ended before it was ready" : st.message());
  log("unmounted " + a.mountpoint + "; final stats: " + mt.fs().stats_json());
  if (!st.ok()) {
    log("error: " + st.message());
    return exit_code(st);
  }
  return kOk;
}

int do_mount(MountArgs a) {
  std::error_code ec;
  a.mountpoint = fs::absolute(a.mountpoint, ec).lexically_normal().string();
  if (a.mountpoint.size() > 1 && a.mountpoint.back() == '/') a.mountpoint.pop_back();
  if (!is_remote_location(a.source)) a.source = fs::absolute(a.source, ec).lexically_normal().string();
  if (!a.base.empty() && !is_remote_location(a.base)) a.base = fs::absolute(a.base, ec).lexically_normal().string();
  if (a.force_clean && is_stale_mount(a.mountpoint)) {
    Status st = unmount_fuse(a.mountpoint, true);
    if (!st.ok()) return fail(st);
    std::cerr << "tenpak: cleaned the stale mount at " << a.mountpoint << "\n";
  }
  Status st = check_mountpoint(a.mountpoint);
  if (!st.ok()) return fail(st);
  if (a.foreground) {
    FILE* lf = stderr;
    if (!a.log.empty()) {
      auto fd = open_log(a.log);
      if (!fd.ok()) return fail(fd.status());
      lf = ::fdopen(*fd, "a");
      if (!lf) return fail(Status{Errc::io, a.log + ": cannot open the log file: " + std::strerror(errno)});
    }
    Logger log(lf);
    return serve(a, -1, log);
  }
  if (a.log.empty()) {
    auto p = default_log_path(a.mountpoint);
    if (!p.ok()) return fail(p.status());
    a.log = *p;
  } else {
    a.log = fs::absolute(a.log, ec).string();
  }
  auto lfd_or = open_log(a.log);
  if (!lfd_or.ok()) return fail(lfd_or.status());
  int lfd = *lfd_or;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return fail(Status{Errc::io, std::string("pipe: ") + std::strerror(errno)});
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return fail(Status{Errc::io, std::string("fork: ") + std::strerror(errno)});
  if (pid == 0) {
    // The daemon: detached from the terminal; everything thread- or
    // state-heavy (readers, workers, the FUSE session) is opened from here on.
    close(pfd[0]);
    setsid();
    // SIGINT and SIGTERM unmount (README). A shell starts a background job
    // ('tenpak mount ... &' in a script) with SIGINT ignored, exec keeps that,
    // and libfuse installs its handler only over SIG_DFL; that guard is for
    // the terminal's Ctrl-C, and the daemon has just left its session.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) dup2(nul, 0);
    dup2(lfd, 1);
    dup2(lfd, 2);
    if (nul > 2) close(nul);
    close(lfd);
    Logger log(stderr);
    int rc = serve(a, pfd[1], log);
    std::fflush(nullptr);
    _exit(rc);
  }
  close(pfd[1]);
  close(lfd);
  std::string msg;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pfd[0], buf, sizeof buf);
    if (n > 0) msg.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  close(pfd[0]);
  if (msg.empty()) {
    std::cerr << "tenpak: error: the mount daemon (pid " << pid << ") died before the mount was ready; see " << a.log << "\n";
    return kError;
  }
  size_t tab = msg.find('\t');
  int code = std::atoi(msg.substr(0, tab).c_str());
  std::string text = tab == std::string::npos ? msg : msg.substr(tab + 1);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (code != kOk) {
    std::cerr << "tenpak: error: " << redact_urls(text) << "\n";
    return code;
  }
  if (a.json_out) std::cout << text << "\n";
  else std::cout << json::parse(text).value("message", "") << "\n";
  return kOk;
}

// The daemon's pid from its stats file, or 0.
pid_t mount_pid(const std::string& mp) {
  std::ifstream f(mp + "/" + ModelFs::kControlDir + "/" + ModelFs::kStatsFile);
  if (!f) return 0;
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer()) return 0;
  int64_t pid = j["pid"].get<int64_t>();
  return pid > 0 && pid <= INT32_MAX ? static_cast<pid_t>(pid) : 0;
}

int do_unmount(const std::string& mp_in, bool lazy, bool json_out) {
  std::error_code ec;
  std::string mp = fs::absolute(mp_in, ec).lexically_normal().string();
  if (mp.size() > 1 && mp.back() == '/') mp.pop_back();
  bool stale = is_stale_mount(mp);
  pid_t pid = stale ? 0 : mount_pid(mp);
  Status st = unmount_fuse(mp, lazy);
  if (!st.ok()) return fail(st);
  // Wait (bounded) for the daemon to finish, unless it still serves open
  // files of a lazily detached mount.
  bool exited = pid == 0;
  if (pid > 0 && !lazy) {
    for (int i = 0; i < 200 && !exited; ++i) {
      if (kill(pid, 0) != 0 && errno == ESRCH) exited = true;
      else std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (json_out) {
    std::cout << json_text(json{{"mountpoint", mp}, {"stale", stale}, {"lazy", lazy}, {"daemon_pid", pid},
                                {"daemon_exited", exited}},
                           -1)
              << "\n";
  } else {
    std::cout << "unmounted " << mp << (stale ? " (stale mount)" : "");
    if (pid > 0 && !exited) std::cout << (lazy ? "; daemon " : "; daemon still running: ") << pid
                                      << (lazy ? " exits when the last open file is closed" : "");
    std::cout << "\n";
  }
  return kOk;
}

int print_stats(const std::string& mp, json j);

int do_stats(const std::string& mp, bool json_out) {
  std::string path = mp + "/" + ModelFs::kControlDir + "/" + ModelFs::kStatsFile;
  std::ifstream f(path);
  if (!f) return fail(Status{Errc::invalid, mp + ": not a TenPak mount (no " + path + ")"});
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(Status{Errc::corrupt, path + ": unreadable stats"});
  if (json_out) {
    std::cout << json_text(j, 2) << "\n";
    return kOk;
  }
  // A field of the wrong type or missing (another version, a file that is
  // not ours) is a clear error, not an abort.
  try {
    return print_stats(mp, j);
  } catch (const json::exception& e) {
    return fail(Status{Errc::corrupt, path + ": malformed stats (" + e.what() + ")"});
  }
}

int print_stats(const std::string& mp, json j) {
  std::printf("mount %s (pid %lld, %llu model(s))\n", mp.c_str(), (long long)j["pid"].get<int64_t>(),
              (unsigned long long)j["models"].get<uint64_t>());
  // The counters, from the table that also generates stats.json and the
  // Prometheus metrics (tenpak/stats_text.h); then the latency histogram.
  auto text = fs_stats_text(j.dump());
  if (!text.ok()) return fail(Status{text.status().code(), mp + ": " + text.status().message()});
  std::fputs(text->c_str(), stdout);
  auto u = [&](const json& v) { return v.get<uint64_t>(); };
  if (j.contains("rebuild_latency")) {
    // Per-bucket counts from the cumulative ones, and the bucket holding the median and the 99th percentile.
    auto& rl = j["rebuild_latency"];
    uint64_t n = u(rl["count"]);
    std::string line;
    std::string p50 = "-", p99 = "-";
    uint64_t prev = 0;
    auto ms = [](double s) {
      char b[32];
      std::snprintf(b, sizeof b, "%g", s * 1e3);
      return std::string(b);
    };
    for (size_t i = 0; i <= rl["le_s"].size(); ++i) {
      bool inf = i == rl["le_s"].size();
      uint64_t cum = inf ? n : u(rl["cumulative_counts"][i]);
      std::string le = inf ? std::string("inf") : ms(rl["le_s"][i].get<double>());
      if (cum > prev) line += " <=" + le + ":" + std::to_string(cum - prev);
      if (p50 == "-" && n > 0 && cum * 2 >= n) p50 = "<=" + le;
      if (p99 == "-" && n > 0 && cum * 100 >= n * 99) p99 = "<=" + le;
      prev = cum;
    }
    std::printf("  rebuilds   %llu, mean %s ms, p50 %s ms, p99 %s ms; per bucket (ms):%s\n", (unsigned long long)n,
                n ? ms(rl["sum_s"].get<double>() / static_cast<double>(n)).c_str() : "-", p50.c_str(), p99.c_str(),
                line.empty() ? " none" : line.c_str());
  }
  if (j.contains("lossy")) {
    // Lossy models: what their side file records (docs/LOSSY.md).
    for (auto& e : j["lossy"]) {
      const std::string model = e.value("model", std::string("?"));
      if (e.contains("method")) {
        std::printf("  lossy      %s: %s, measured perplexity x%.5f (%+.3f%%), KL %.4g nats, top-1 %.4f (%llu tokens of %s)\n",
                    model.c_str(), e["method"].get<std::string>().c_str(), e.value("ppl_ratio", 0.0),
                    e.value("ppl_delta_pct", 0.0), e.value("kl_mean", 0.0), e.value("top1_agreement", 0.0),
                    (unsigned long long)e.value("scored_tokens", uint64_t{0}), e.value("eval_text", std::string("?")).c_str());
        if (const double w = e.value("qat_label_weight", 0.0); w > 0)
          std::printf("  lossy      %s: codes trained with the calibration text's next tokens at weight %.4g: not a "
                      "reproduction of the fine-tune\n",
                      model.c_str(), w);
      } else {
        std::printf("  lossy      %s: quality unknown (no tenpak.lossy.json)\n", model.c_str());
      }
    }
    if (uint64_t more = j.value("lossy_not_listed", uint64_t{0}))
      std::printf("  lossy      %llu more lossy model(s), not listed (stats.json is full)\n", (unsigned long long)more);
  }
  return kOk;
}

}  // namespace

void add_mount_commands(CLI::App& app, int& rc) {
  auto a = std::make_shared<MountArgs>();
  auto* m = app.add_subcommand("mount", "Mount a delta (or a catalog directory of deltas) as the fine-tuned model directory");
  m->add_option("SOURCE", a->source, "delta directory (path, http(s) URL or hub id), or a catalog directory whose sub-directories hold deltas")->required();
  m->add_option("MOUNTPOINT", a->mountpoint, "an existing empty directory")->required();
  m->add_option("--base", a->base, "base model (directory or single file); default: the locations recorded in the delta");
  m->add_flag("--foreground,-f", a->foreground, "stay attached (log to stderr unless --log); Ctrl-C unmounts");
  m->add_option("--log", a->log, "log file (default in background: $XDG_STATE_HOME/tenpak or ~/.local/state/tenpak/mount<mountpoint with _>.log; never a link)");
  m->add_flag("--force-clean", a->force_clean, "detach a stale mount (daemon gone) at MOUNTPOINT first");
  m->add_flag("--no-verify-base", a->no_verify_base, "check local base files by size only, not sha256");
  m->add_flag("--buffered-base", a->buffered_base,
              "read local base files through the page cache (default: base ranges not already cached are read with "
              "O_DIRECT, so a cold read does not keep the base in memory beside the fine-tune; a base shared by "
              "several models of the mount, or one on a network or FUSE file system, is always read through the page "
              "cache)");
  m->add_flag("--allow-other", a->allow_other, "let other users read the mount");
  m->add_option("--cache-mb", a->cache_mb, "in-memory frame cache (MiB)")->check(CLI::Range(4u, 65536u))->capture_default_str();
  m->add_option("--keep-served-mb", a->keep_served_mb,
                "of the frame cache (and within it), frames already read whole are kept only up to this many MiB "
                "(the kernel's page cache holds them; raise it for readers that bypass it, e.g. O_DIRECT)")
      ->check(CLI::Range(0u, 65536u))
      ->capture_default_str();
  m->add_option("--prefetch-mb", a->prefetch_mb, "prefetch window ahead of a sequential reader (MiB, capped at cache/4)")
      ->capture_default_str();
  m->add_option("--warm-mb", a->warm_mb,
                "once mounted, rebuild the head of every file (header and first tensor bytes) in the background, "
                "up to this many MiB in all (capped at cache/4; 0: off)")
      ->check(CLI::Range(0u, 65536u))
      ->capture_default_str();
  m->add_option("--workers", a->workers, "prefetch threads (0: no prefetch)")->check(CLI::Range(0u, 64u))->capture_default_str();
  m->add_option("--threads", a->threads, "FUSE request threads")->check(CLI::Range(1u, 256u))->capture_default_str();
  m->add_option("--readahead-kb", a->readahead_kb, "mount readahead set when root (0: kernel default)")->capture_default_str();
  m->add_option("--cache-dir", a->cache_dir, "persistent block cache directory (default: $TENPAK_CACHE_DIR, "
                 "$XDG_CACHE_HOME/tenpak or ~/.cache/tenpak)");
  m->add_option("--cache-size", a->cache_size, "size limit of the persistent cache, e.g. 20G, 512M (default 20G)");
  m->add_flag("--no-cache", a->no_cache, "no persistent cache: rebuild and fetch everything again");
  m->add_option("--cache-frames", a->cache_frames,
                "which rebuilt frames the persistent cache stores: slow (codecs slower to rebuild than to read back; "
                "not copy_base, store, sub_lanes), all, none. Remote base and delta blocks are cached either way, "
                "so a second mount fetches nothing; frames found in the cache are always used")
      ->check(CLI::IsMember({"slow", "all", "none"}))
      ->capture_default_str();
  m->add_option("--metrics-port", a->metrics_port, "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)")
      ->check(CLI::Range(0, 65535));
  m->add_flag("--json", a->json_out, "print the mount's description as JSON");
  m->callback([a, &rc] { rc = do_mount(*a); });

  auto mp = std::make_shared<std::string>();
  auto lazy = std::make_shared<bool>(false);
  auto uj = std::make_shared<bool>(false);
  auto* u = app.add_subcommand("unmount", "Unmount a TenPak mount (waits for its daemon to exit)");
  u->add_option("MOUNTPOINT", *mp, "the mountpoint")->required();
  u->add_flag("--lazy,-z", *lazy, "detach now even when busy; open files keep working until closed (also cleans stale mounts)");
  u->add_flag("--json", *uj, "JSON output");
  u->callback([mp, lazy, uj, &rc] { rc = do_unmount(*mp, *lazy, *uj); });

  auto smp = std::make_shared<std::string>();
  auto sj = std::make_shared<bool>(false);
  auto* s = app.add_subcommand("stats", "Counters of a running mount (bytes served, frames rebuilt, prefetch, errors, memory)");
  s->add_option("MOUNTPOINT", *smp, "the mountpoint")->required();
  s->add_flag("--json", *sj, "print the raw JSON");
  s->callback([smp, sj, &rc] { rc = do_stats(*smp, *sj); });
}

}  // namespace tenpak::cli
