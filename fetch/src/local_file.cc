#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "tenpak/block_source.h"

namespace tenpak {
namespace {

class LocalFile final : public BlockSource {
 public:
  LocalFile(int fd, uint64_t size, std::string path, const LocalFileOptions& opt)
      : fd_(fd), size_(size), path_(std::move(path)), opt_(opt) {}
  ~LocalFile() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return path_; }
  Status read(uint64_t offset, size_t len, uint8_t* dst) override {
    if (offset > size_ || len > size_ - offset)
      return {Errc::corrupt, path_ + ": range " + std::to_string(offset) + "+" + std::to_string(len) +
                                 " is past the end of the file (" + std::to_string(size_) + " bytes)"};
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
    last_end_.store(offset + len, std::memory_order_relaxed);
    return Status::Ok();
  }
  // A range near the end of the last read belongs to a sequential stream:
  // the kernel's readahead already fetches it ahead of us, and forcing it in
  // (pages without readahead marks) would stop that readahead. Otherwise
  // the kernel starts reading the range into the page cache and returns.
  void will_need(uint64_t offset, size_t len) override {
    constexpr uint64_t kNear = 8u << 20;
    const uint64_t last = last_end_.load(std::memory_order_relaxed);
    if (offset >= size_ || (!opt_.hint_always && offset + kNear >= last && offset <= last + kNear)) return;
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
  }

 private:
  int fd_;
  uint64_t size_;
  std::string path_;
  LocalFileOptions opt_;
  std::atomic<uint64_t> last_end_{UINT64_MAX / 2};  // end of the last read (far from everything at first)
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
  return std::unique_ptr<BlockSource>(new LocalFile(fd, static_cast<uint64_t>(st.st_size), path, opt));
}

}  // namespace tenpak
