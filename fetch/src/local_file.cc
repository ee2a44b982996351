#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tenpak/block_source.h"

namespace tenpak {
namespace {

// cachestat(2) (Linux 6.5): how many pages of a file range are in the page
// cache. Debian 12's headers predate it; the number is the same on every
// architecture (the unified syscall table).
constexpr long kSysCachestat = 451;
struct CachestatRange {
  uint64_t off, len;
};
struct Cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

// O_DIRECT needs offsets, lengths and buffers aligned to the device's
// logical block; 4 KiB covers 512-byte and 4 KiB devices.
constexpr uint64_t kDirectAlign = 4096;

// The reading thread's buffer for direct reads. It grows to the largest
// range read (a frame's base range: about a frame) and stays, so a thread
// reuses the same pages instead of faulting fresh ones in for every read.
struct DirectBuf {
  uint8_t* p = nullptr;
  size_t cap = 0;
  ~DirectBuf() { std::free(p); }
  uint8_t* get(size_t n) {
    if (n > cap) {
      std::free(p);
      cap = (n + (256u << 10) - 1) & ~size_t((256u << 10) - 1);
      p = static_cast<uint8_t*>(std::aligned_alloc(kDirectAlign, cap));
      if (!p) cap = 0;
    }
    return p;
  }
};

class LocalFile final : public BlockSource {
 public:
  LocalFile(int fd, int direct_fd, uint64_t size, std::string path, const LocalFileOptions& opt)
      : fd_(fd), direct_fd_(direct_fd), size_(size), path_(std::move(path)), opt_(opt) {}
  ~LocalFile() override {
    ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
  }
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return path_; }
  Status read(uint64_t offset, size_t len, uint8_t* dst) override {
    if (offset > size_ || len > size_ - offset)
      return {Errc::corrupt, path_ + ": range " + std::to_string(offset) + "+" + std::to_string(len) +
                                 " is past the end of the file (" + std::to_string(size_) + " bytes)"};
    if (len == 0) return Status::Ok();
    last_end_.store(offset + len, std::memory_order_relaxed);
    if (direct_fd_ >= 0 && !all_cached(offset, len)) return read_direct(offset, len, dst);
    return read_buffered(offset, len, dst);
  }
  // A range near the end of the last read belongs to a sequential stream:
  // the kernel's readahead already fetches it ahead of us, and forcing it in
  // (pages without readahead marks) would stop that readahead. Otherwise
  // the kernel starts reading the range into the page cache and returns.
  void will_need(uint64_t offset, size_t len) override {
    if (direct_fd_ >= 0) return;  // the point is not to fill the page cache
    constexpr uint64_t kNear = 8u << 20;
    const uint64_t last = last_end_.load(std::memory_order_relaxed);
    if (offset >= size_ || (!opt_.hint_always && offset + kNear >= last && offset <= last + kNear)) return;
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
  }

 private:
  Status read_buffered(uint64_t offset, size_t len, uint8_t* dst) {
    size_t done = 0;
    while (done < len) {
      ssize_t r = ::pread(fd_, dst + done, len - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return {Errc::io, path_ + ": read failed: " + std::strerror(errno)};
      }
      if (r == 0) return {Errc::corrupt, path_ + ": file shrank while reading"};
      done += static_cast<size_t>(r);
    }
    return Status::Ok();
  }

  // Whether every page of [offset, offset+len) is in the page cache. False
  // when the kernel cannot tell (no cachestat: read direct).
  bool all_cached(uint64_t offset, size_t len) {
    if (!cachestat_ok_.load(std::memory_order_relaxed)) return false;
    const uint64_t a0 = offset & ~(kDirectAlign - 1), a1 = (offset + len + kDirectAlign - 1) & ~(kDirectAlign - 1);
    CachestatRange range{a0, a1 - a0};
    Cachestat cs{};
    if (::syscall(kSysCachestat, fd_, &range, &cs, 0) != 0) {
      if (errno == ENOSYS || errno == EPERM || errno == EOPNOTSUPP) cachestat_ok_.store(false, std::memory_order_relaxed);
      return false;
    }
    // Pages past the end of the file are never cached: count to the end only.
    const uint64_t end = std::min<uint64_t>(a1, (size_ + 4095) & ~uint64_t(4095));
    return cs.nr_cache >= (end - a0) / 4096;
  }

  // The aligned cover of the range read with O_DIRECT into the thread's
  // buffer, then the range copied out. An O_DIRECT failure other than an
  // I/O error (a file system that takes the open but not the read) turns
  // direct reads off for this file and reads through the page cache.
  Status read_direct(uint64_t offset, size_t len, uint8_t* dst) {
    thread_local DirectBuf buf;
    const uint64_t a0 = offset & ~(kDirectAlign - 1), a1 = (offset + len + kDirectAlign - 1) & ~(kDirectAlign - 1);
    uint8_t* b = buf.get(a1 - a0);
    if (!b) return read_buffered(offset, len, dst);
    uint64_t got = 0;
    while (a0 + got < offset + len) {
      ssize_t r = ::pread(direct_fd_, b + got, a1 - a0 - got, static_cast<off_t>(a0 + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL) return read_buffered(offset, len, dst);  // alignment this device does not take
        return {Errc::io, path_ + ": read failed: " + std::strerror(errno)};
      }
      if (r == 0) return {Errc::corrupt, path_ + ": file shrank while reading"};
      got += static_cast<uint64_t>(r);
    }
    std::memcpy(dst, b + (offset - a0), len);
    return Status::Ok();
  }

  int fd_;
  int direct_fd_;  // -1: every read goes through the page cache
  uint64_t size_;
  std::string path_;
  LocalFileOptions opt_;
  std::atomic<uint64_t> last_end_{UINT64_MAX / 2};  // end of the last read (far from everything at first)
  std::atomic<bool> cachestat_ok_{true};
};

}  // namespace

Result<std::unique_ptr<BlockSource>> open_local_file(const std::string& path, const LocalFileOptions& opt) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status{Errc::io, path + ": cannot open: " + std::strerror(errno)};
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status{Errc::invalid, path + ": not a regular file"};
  }
  // A second descriptor for direct reads; none where the file system does
  // not take O_DIRECT (the page cache is used then).
  int direct_fd = opt.direct_when_cold ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT) : -1;
  return std::unique_ptr<BlockSource>(new LocalFile(fd, direct_fd, static_cast<uint64_t>(st.st_size), path, opt));
}

}  // namespace tenpak
