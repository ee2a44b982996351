// sha256 of local files, remembered across runs (see block_source.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tenpak/block_source.h"

namespace tenpak {
namespace {

namespace fs = std::filesystem;

std::string cache_dir() {
  if (const char* d = std::getenv("TENPAK_HASH_CACHE"); d && *d) return std::string(d) == "off" ? "" : d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/tenpak/sha256";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/tenpak/sha256";
  return "";
}

// The identity a cached hash is valid for: any write to the file changes
// its ctime (and mtime), a replaced file has another inode.
std::string identity(const struct stat& st, const std::string& real) {
  std::ostringstream o;
  o << "tenpak-sha256-v1 " << st.st_dev << " " << st.st_ino << " " << st.st_size << " " << st.st_mtim.tv_sec << "."
    << st.st_mtim.tv_nsec << " " << st.st_ctim.tv_sec << "." << st.st_ctim.tv_nsec << " " << real;
  return o.str();
}

bool parse_hex(const std::string& s, Sha256& out) {
  if (s.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    unsigned v;
    if (std::sscanf(s.c_str() + 2 * i, "%2x", &v) != 1) return false;
    out[i] = static_cast<uint8_t>(v);
  }
  return hex(out) == s;  // rejects upper case and stray characters
}

bool same_file_state(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// Keeps the cache small: past kMaxEntries entries, drops those whose file
// is gone or changed, then the oldest. Best effort, errors ignored.
constexpr size_t kMaxEntries = 512;
void prune(const std::string& dir) {
  std::error_code ec;
  std::vector<std::pair<fs::file_time_type, fs::path>> entries;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().extension() == ".txt") entries.emplace_back(it->last_write_time(ec), it->path());
  if (entries.size() <= kMaxEntries) return;
  std::vector<std::pair<fs::file_time_type, fs::path>> live;
  for (auto& [t, p] : entries) {
    std::ifstream in(p);
    std::string key;
    std::getline(in, key);
    // The key's fields: tag dev ino size mtime ctime path (the path may hold spaces).
    size_t at = 0;
    for (int i = 0; i < 6 && at != std::string::npos; ++i) at = key.find(' ', at == 0 ? 0 : at + 1);
    struct stat st;
    const bool ok = at != std::string::npos && ::stat(key.c_str() + at + 1, &st) == 0 &&
                    identity(st, key.substr(at + 1)) == key;
    if (ok) live.emplace_back(t, p);
    else fs::remove(p, ec);
  }
  if (live.size() <= kMaxEntries / 2) return;
  std::sort(live.begin(), live.end());
  for (size_t i = 0; i + kMaxEntries / 2 < live.size(); ++i) fs::remove(live[i].second, ec);
}

}  // namespace

Result<Sha256> sha256_of_local_file(const std::string& path, const std::function<void(uint64_t)>& on_bytes,
                                    bool* from_cache, const LocalFileOptions& local) {
  if (from_cache) *from_cache = false;
  auto src = open_local_file(path, local);
  if (!src.ok()) return src.status();
  struct stat before;
  if (::stat(path.c_str(), &before) != 0) return Status{Errc::io, path + ": cannot stat: " + std::strerror(errno)};
  std::error_code ec;
  const std::string real = fs::weakly_canonical(fs::absolute(path, ec), ec).string();
  const std::string dir = cache_dir();
  const std::string key = identity(before, real);
  // One entry file per path: "<identity>\n<sha256 hex>\n".
  const std::string entry = dir.empty() ? "" : dir + "/" + std::to_string(xxh64(real.data(), real.size())) + ".txt";
  if (!entry.empty()) {
    std::ifstream in(entry);
    std::string k, h;
    Sha256 cached;
    if (std::getline(in, k) && std::getline(in, h) && k == key && parse_hex(h, cached)) {
      if (from_cache) *from_cache = true;
      if (on_bytes) on_bytes(before.st_size);
      return cached;
    }
  }
  auto got = sha256_of(**src, on_bytes);
  if (!got.ok()) return got;
  // Stored only when the file did not change while it was read; a cache
  // that cannot be written is skipped (it is an optimisation only).
  struct stat after;
  if (!entry.empty() && ::stat(path.c_str(), &after) == 0 && same_file_state(before, after)) {
    fs::create_directories(dir, ec);
    const std::string tmp = entry + ".tmp-" + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << key << "\n" << hex(*got) << "\n";
      out.close();
      if (!out) {
        fs::remove(tmp, ec);
        return got;
      }
    }
    fs::rename(tmp, entry, ec);
    if (ec) fs::remove(tmp, ec);
    prune(dir);
  }
  return got;
}

}  // namespace tenpak
