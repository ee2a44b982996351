// Cache keys, the in-memory and null caches, defaults.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tenpak/cache.h"

namespace tenpak {

std::string frame_cache_key(const Xxh128& h) { return "f:" + hex(h); }

std::string block_cache_key(std::string_view identity, size_t block, uint64_t index) {
  return "b:" + std::string(identity) + ":" + std::to_string(block) + ":" + std::to_string(index);
}

namespace {

class NullCache final : public BlockCache {
 public:
  explicit NullCache(std::string why) : why_(std::move(why)) {}
  bool get(std::string_view, size_t, uint8_t*) override {
    misses_.fetch_add(1);
    return false;
  }
  void put(std::string_view, const uint8_t*, size_t) override {}
  CacheStats stats() const override {
    CacheStats s;
    s.misses = misses_.load();
    return s;
  }
  bool usable() const override { return false; }
  std::string describe() const override { return "none (" + why_ + ")"; }

 private:
  std::string why_;
  std::atomic<uint64_t> misses_{0};
};

// LRU in memory: a list (front = most recent) and a map into it.
class MemoryCache final : public BlockCache {
 public:
  explicit MemoryCache(uint64_t limit) : limit_(limit) {}
  bool contains(std::string_view key) override {
    std::lock_guard<std::mutex> g(mu_);
    return map_.count(std::string(key)) > 0;
  }
  bool get(std::string_view key, size_t len, uint8_t* out) override {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(std::string(key));
    if (it == map_.end() || it->second->second.size() != len) {
      ++s_.misses;
      return false;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    std::copy(it->second->second.begin(), it->second->second.end(), out);
    ++s_.hits;
    return true;
  }
  void put(std::string_view key, const uint8_t* data, size_t len) override {
    std::lock_guard<std::mutex> g(mu_);
    if (len > limit_) return;
    erase_locked(std::string(key));
    while (s_.bytes_used + len > limit_ && !lru_.empty()) {
      erase_locked(lru_.back().first);
      ++s_.evictions;
    }
    lru_.emplace_front(std::string(key), std::vector<uint8_t>(data, data + len));
    map_[lru_.front().first] = lru_.begin();
    s_.bytes_used += len;
    ++s_.puts;
  }
  void erase(std::string_view key) override {
    std::lock_guard<std::mutex> g(mu_);
    erase_locked(std::string(key));
  }
  CacheStats stats() const override {
    std::lock_guard<std::mutex> g(mu_);
    CacheStats s = s_;
    s.bytes_limit = limit_;
    return s;
  }
  std::string describe() const override { return "memory"; }

 private:
  void erase_locked(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    s_.bytes_used -= it->second->second.size();
    lru_.erase(it->second);
    map_.erase(it);
  }
  using Entry = std::pair<std::string, std::vector<uint8_t>>;
  uint64_t limit_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
  CacheStats s_;
};

}  // namespace

std::shared_ptr<BlockCache> make_memory_cache(uint64_t size_limit) { return std::make_shared<MemoryCache>(size_limit); }
std::shared_ptr<BlockCache> make_null_cache(std::string why) { return std::make_shared<NullCache>(std::move(why)); }

std::string default_cache_dir() {
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v && *v ? v : "";
  };
  if (auto d = env("TENPAK_CACHE_DIR"); !d.empty()) return d;
  if (auto d = env("XDG_CACHE_HOME"); !d.empty()) return d + "/tenpak";
  if (auto d = env("HOME"); !d.empty()) return d + "/.cache/tenpak";
  return "/tmp/tenpak-cache-" + std::to_string(::getuid());
}

Result<uint64_t> parse_size(const std::string& s) {
  size_t pos = 0;
  double v;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    return Status{Errc::invalid, "'" + s + "' is not a size (e.g. 20G, 512M)"};
  }
  std::string unit = s.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'I') unit.pop_back();
  double mult = unit.empty() ? 1 : unit == "K" ? 1024.0 : unit == "M" ? 1048576.0 : unit == "G" ? 1073741824.0
                                 : unit == "T" ? 1099511627776.0 : -1;
  if (mult < 0 || !(v >= 0) || !std::isfinite(v * mult) || v * mult > 1.8e19)
    return Status{Errc::invalid, "'" + s + "' is not a size (e.g. 20G, 512M)"};
  return static_cast<uint64_t>(v * mult);
}

}  // namespace tenpak
