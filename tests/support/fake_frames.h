// A FrameSource of made-up frames for tests: frame k holds `len` bytes
// (k * 31 + i) & 0xff, its hash their xxh3-128. Faults are injected per
// call: the next `fail_next` reads fail with `fail_code`, `delay_ms` slows
// every read; reads are counted per frame.
#pragma once
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tenpak/frame_source.h"

namespace tenpak::fakes {

class FakeFrames : public FrameSource {
 public:
  FakeFrames(uint32_t count, uint32_t len, std::string name = "fake", const char* codec = "zstd")
      : count_(count), len_(len), name_(std::move(name)), codec_(codec) {}
  static std::vector<uint8_t> bytes_of(uint32_t k, uint32_t len) {
    std::vector<uint8_t> b(len);
    for (uint32_t i = 0; i < len; ++i) b[i] = static_cast<uint8_t>(k * 31 + i);
    return b;
  }
  uint32_t frame_count() const override { return count_; }
  FrameDesc frame(uint32_t k) const override {
    auto b = bytes_of(k, len_);
    return {xxh128(b.data(), b.size()), len_, codec_};
  }
  Result<const uint8_t*> read(uint32_t k, uint8_t* buf, bool lent) override {
    {
      std::lock_guard lk(mu);
      reads[k]++;
    }
    total_reads++;
    if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (cancelled) return Status{Errc::io, name_ + ": cancelled"};
    for (int n = fail_next.load(); n > 0;)
      if (fail_next.compare_exchange_weak(n, n - 1)) return Status{fail_code, name_ + ": injected failure"};
    auto b = bytes_of(k, len_);
    // A lent buffer: the bytes start one alignment unit in, as a direct read would put them.
    uint8_t* at = lent ? buf + BlockSource::kReadInAlign : buf;
    std::memcpy(at, b.data(), b.size());
    return static_cast<const uint8_t*>(at);
  }
  const std::string& name() const override { return name_; }
  void cancel() override { cancelled = true; }
  uint64_t reads_of(uint32_t k) {
    std::lock_guard lk(mu);
    return reads[k];
  }

  std::atomic<int> fail_next{0}, delay_ms{0};
  Errc fail_code = Errc::io;
  std::atomic<bool> cancelled{false};
  std::atomic<uint64_t> total_reads{0};
  std::mutex mu;
  std::map<uint32_t, uint64_t> reads;

 private:
  uint32_t count_, len_;
  std::string name_;
  const char* codec_;
};

}  // namespace tenpak::fakes
