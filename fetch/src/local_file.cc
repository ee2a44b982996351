#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

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

// File systems on which direct_when_cold is not used (statfs f_type, the
// numbers of the kernel's magic.h): network and FUSE file systems, where
// O_DIRECT skips the client's cache and readahead and every read becomes a
// round trip to a server or a daemon (and other readers of the same files
// there gain from the page cache).
struct FsMagic {
  uint32_t magic;
  const char* name;
};
constexpr FsMagic kNoDirect[] = {
    {0x6969, "nfs"},           {0x517B, "smb"},        {0xFF534D42, "cifs"},   {0xFE534D42, "smb2"},
    {0x65735546, "fuse"},      {0x00C36400, "ceph"},   {0x01021997, "9p"},     {0x0BD00BD0, "lustre"},
    {0x47504653, "gpfs"},      {0x5346414F, "afs"},    {0x6B414653, "afs"},    {0x19830326, "beegfs"},
    {0x20030528, "orangefs"},
};

const char* no_direct_fs(uint32_t magic) {
  for (const FsMagic& m : kNoDirect)
    if (m.magic == magic) return m.name;
  return nullptr;
}

// O_DIRECT needs offsets, lengths and buffers aligned to the device's
// logical block; 4 KiB covers 512-byte and 4 KiB devices (others fail with
// EINVAL, and the file is read through the page cache from then on).
constexpr uint64_t kDirectAlign = 4096;
// Direct reads go through buffers of this size (a 1 MiB range and its
// aligned cover in one read; longer ranges in pieces): memory stays bounded
// whatever the range.
constexpr size_t kDirectChunk = (1u << 20) + 2 * kDirectAlign;

// Direct-read buffers shared by every file and thread, mapped outside
// malloc's heap and kept for reuse (a fresh buffer costs a page fault per
// page; in the heap, buffers freed and taken again at other alignments
// fragmented it: 15-19 MiB more resident memory in a mount, measured). The pool
// holds as many buffers as direct reads ever ran at once: at most one per
// thread that reads (FUSE threads and prefetch workers), 1 MiB each.
class DirectBufPool {
 public:
  // Never destroyed: a thread still reading at exit keeps a valid buffer.
  static DirectBufPool& get() {
    static DirectBufPool* pool = new DirectBufPool;
    return *pool;
  }
  uint8_t* take() {
    {
      std::lock_guard lk(mu_);
      if (!free_.empty()) {
        uint8_t* b = free_.back();
        free_.pop_back();
        return b;
      }
    }
    void* p = ::mmap(nullptr, kDirectChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  void give(uint8_t* b) {
    std::lock_guard lk(mu_);
    free_.push_back(b);
  }

 private:
  std::mutex mu_;
  std::vector<uint8_t*> free_;
};

// One buffer of the pool for the scope of a read.
struct PooledBuf {
  uint8_t* p = DirectBufPool::get().take();
  ~PooledBuf() {
    if (p) DirectBufPool::get().give(p);
  }
};

const uint64_t kPageSize = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// local_read_stats(), per LocalFileOptions::Role.
struct RoleCounters {
  std::atomic<uint64_t> direct_bytes{0}, page_cache_bytes{0};
};
RoleCounters g_base_reads, g_delta_data_reads;

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
    TP_RETURN_IF_ERROR(check_range(offset, len));
    if (len == 0) return Status::Ok();
    last_end_.store(offset + len, std::memory_order_relaxed);
    if (!direct()) return read_buffered(offset, len, dst);
    if (!all_cached(offset, len)) return read_direct(offset, len, dst);
    return read_cached(offset, len, dst);
  }
  // A cold range read direct lands in `buf` itself, at its offset within
  // the aligned span read.
  Result<const uint8_t*> read_in(uint64_t offset, size_t len, uint8_t* buf) override {
    TP_RETURN_IF_ERROR(check_range(offset, len));
    if (len > 0) {
      last_end_.store(offset + len, std::memory_order_relaxed);
      if (direct() && !all_cached(offset, len)) {
        const uint64_t pos = offset & ~(kDirectAlign - 1);
        const uint64_t want = ((offset + len + kDirectAlign - 1) & ~(kDirectAlign - 1)) - pos;
        auto got = pread_direct(pos, want, offset + len - pos, buf);
        if (got.ok()) {
          counters().direct_bytes.fetch_add(len, std::memory_order_relaxed);
          return static_cast<const uint8_t*>(buf + (offset - pos));
        }
        if (got.status().code() != Errc::unsupported) return got.status();
      }
      TP_RETURN_IF_ERROR(direct() ? read_cached(offset, len, buf) : read_buffered(offset, len, buf));
    }
    return static_cast<const uint8_t*>(buf);
  }
  // A range near the end of the last read belongs to a sequential stream:
  // the kernel's readahead already fetches it ahead of us, and forcing it in
  // (pages without readahead marks) would stop that readahead. Otherwise
  // the kernel starts reading the range into the page cache and returns.
  void will_need(uint64_t offset, size_t len) override {
    if (direct()) return;  // the point is not to fill the page cache
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

  bool direct() const { return direct_fd_ >= 0 && direct_ok_.load(std::memory_order_relaxed); }

  // Whether every page of [offset, offset+len) is in the page cache. False
  // when the kernel cannot tell (no cachestat, or refused: read direct).
  bool all_cached(uint64_t offset, size_t len) {
    if (!cachestat_ok_.load(std::memory_order_relaxed)) return false;
    const uint64_t p0 = offset / kPageSize * kPageSize, p1 = (offset + len + kPageSize - 1) / kPageSize * kPageSize;
    CachestatRange range{p0, p1 - p0};  // len > 0: 0 would mean "to the end of the file"
    Cachestat cs{};
    if (::syscall(kSysCachestat, fd_, &range, &cs, 0) != 0) {
      if (errno == ENOSYS || errno == EPERM || errno == EOPNOTSUPP) cachestat_ok_.store(false, std::memory_order_relaxed);
      return false;
    }
    return cs.nr_cache >= (p1 - p0) / kPageSize;  // a partial last page is a page
  }

  // The aligned cover of the range read with O_DIRECT, a pooled buffer at a
  // time, and the range copied out. EINVAL (a file system or device that
  // takes the O_DIRECT open but not these reads) turns direct reads off for
  // this file: it is read through the page cache from then on.
  Status read_direct(uint64_t offset, size_t len, uint8_t* dst) {
    PooledBuf buf;
    if (!buf.p) return read_buffered(offset, len, dst);
    const uint64_t end = offset + len;
    uint64_t pos = offset & ~(kDirectAlign - 1);
    while (pos < end) {
      const uint64_t want = std::min<uint64_t>(kDirectChunk, ((end + kDirectAlign - 1) & ~(kDirectAlign - 1)) - pos);
      auto got = pread_direct(pos, want, std::min(want, end - pos), buf.p);
      if (!got.ok()) return got.status().code() == Errc::unsupported ? read_buffered(offset, len, dst) : got.status();
      const uint64_t from = std::max(pos, offset), to = std::min(pos + *got, end);
      std::memcpy(dst + (from - offset), buf.p + (from - pos), to - from);
      pos += want;
    }
    counters().direct_bytes.fetch_add(len, std::memory_order_relaxed);
    return Status::Ok();
  }

  // Reads the aligned span [pos, pos+want) with O_DIRECT into `into`
  // (aligned, want bytes) until at least `need` bytes are in (the span's
  // tail past the end of the file comes back short). Returns the bytes
  // read. Errc::unsupported: the file system refused the read (EINVAL),
  // direct reads are now off for this file and the caller reads buffered.
  Result<uint64_t> pread_direct(uint64_t pos, uint64_t want, uint64_t need, uint8_t* into) {
    uint64_t got = 0;
    while (got < need) {
      ssize_t r = ::pread(direct_fd_, into + got, want - got, static_cast<off_t>(pos + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL) {
          direct_ok_.store(false, std::memory_order_relaxed);
          return Status{Errc::unsupported, path_ + ": O_DIRECT read refused"};
        }
        return Status{Errc::io, path_ + ": read failed: " + std::strerror(errno)};
      }
      if (r == 0) return Status{Errc::corrupt, path_ + ": file shrank while reading"};
      got += static_cast<uint64_t>(r);
    }
    return got;
  }

  Status check_range(uint64_t offset, size_t len) const {
    if (offset > size_ || len > size_ - offset)
      return {Errc::corrupt, path_ + ": range " + std::to_string(offset) + "+" + std::to_string(len) +
                                 " is past the end of the file (" + std::to_string(size_) + " bytes)"};
    return Status::Ok();
  }

  // A range whose pages are all cached, copied out of the page cache.
  Status read_cached(uint64_t offset, size_t len, uint8_t* dst) {
    Status st = read_buffered(offset, len, dst);
    if (st.ok()) counters().page_cache_bytes.fetch_add(len, std::memory_order_relaxed);
    return st;
  }

  RoleCounters& counters() const {
    return opt_.role == LocalFileOptions::Role::delta_data ? g_delta_data_reads : g_base_reads;
  }

  int fd_;
  int direct_fd_;  // -1: every read goes through the page cache
  uint64_t size_;
  std::string path_;
  LocalFileOptions opt_;
  std::atomic<uint64_t> last_end_{UINT64_MAX / 2};  // end of the last read (far from everything at first)
  std::atomic<bool> cachestat_ok_{true};
  std::atomic<bool> direct_ok_{true};
};

}  // namespace

std::string no_direct_reads_on(const std::string& path) {
  struct statfs sf;
  if (::statfs(path.c_str(), &sf) != 0) return {};
  const char* name = no_direct_fs(static_cast<uint32_t>(sf.f_type));
  return name ? name : "";
}

LocalReadStats local_read_stats() {
  auto load = [](const RoleCounters& c) {
    LocalReadCounts n;
    n.direct_bytes = c.direct_bytes.load(std::memory_order_relaxed);
    n.page_cache_bytes = c.page_cache_bytes.load(std::memory_order_relaxed);
    return n;
  };
  LocalReadStats s;
  s.base = load(g_base_reads);
  s.delta_data = load(g_delta_data_reads);
  return s;
}

Result<std::unique_ptr<BlockSource>> open_local_file(const std::string& path, const LocalFileOptions& opt) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status{errno == ENOENT ? Errc::not_found : Errc::io, path + ": cannot open: " + std::strerror(errno)};
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status{Errc::invalid, path + ": not a regular file"};
  }
  // A second descriptor for direct reads; none where the file system does
  // not take O_DIRECT or is one where direct reads do not pay (the page
  // cache is used then).
  struct statfs sf;
  const bool direct_pays = !(::fstatfs(fd, &sf) == 0 && no_direct_fs(static_cast<uint32_t>(sf.f_type)));
  int direct_fd = opt.direct_when_cold && direct_pays ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT) : -1;
  struct stat dst;
  if (direct_fd >= 0 && (::fstat(direct_fd, &dst) != 0 || dst.st_dev != st.st_dev || dst.st_ino != st.st_ino)) {
    ::close(direct_fd);  // replaced between the two opens: one file or none
    direct_fd = -1;
  }
  return std::unique_ptr<BlockSource>(new LocalFile(fd, direct_fd, static_cast<uint64_t>(st.st_size), path, opt));
}

}  // namespace tenpak
