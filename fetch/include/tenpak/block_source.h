// BlockSource: the one way TenPak reads bytes of a base or delta file.
// Implemented by a local file (here), later by an HTTP origin and by a
// caching decorator that wraps another source. Fakes of it drive the tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tenpak/hash.h"
#include "tenpak/status.h"

namespace tenpak {

class BlockSource {
 public:
  virtual ~BlockSource() = default;
  // Total size in bytes of the underlying object.
  virtual uint64_t size() const = 0;
  // Reads exactly `len` bytes at `offset` into `dst`. A short object, an I/O
  // error or a range past the end is an error, never a short read.
  // Thread-safe: several threads may read concurrently.
  virtual Status read(uint64_t offset, size_t len, uint8_t* dst) = 0;
  // Reads [offset, offset+len) like read(), into memory the caller lends,
  // and returns where in it the bytes start. `buf` is aligned to
  // kReadInAlign and holds at least len + 2 * kReadInAlign bytes, so that a
  // source may read an aligned span around the range straight into it (a
  // local file's O_DIRECT reads: no bounce buffer, no copy). Default:
  // read(offset, len, buf), returning buf.
  static constexpr size_t kReadInAlign = 4096;
  virtual Result<const uint8_t*> read_in(uint64_t offset, size_t len, uint8_t* buf) {
    Status st = read(offset, len, buf);
    if (!st.ok()) return st;
    return static_cast<const uint8_t*>(buf);
  }
  // A human name (path or URL) for error messages.
  virtual const std::string& name() const = 0;
  // The caller found bytes of [offset, offset+len) wrong (a rebuilt frame
  // failed its hash): drop any cached copy so the next read goes to the
  // origin. No-op for sources that keep no copy.
  virtual void invalidate(uint64_t offset, size_t len) {}
  // A hint: [offset, offset+len) will be read soon. Sources whose reads wait
  // on a device may start fetching it now, so that a caller about to read
  // two ranges waits for them together rather than one after the other.
  // Never an error, never required; default: nothing.
  virtual void will_need(uint64_t offset, size_t len) {}
  // Makes reads in progress, and every later one, end soon with an error
  // (Errc::cancelled): for shutting down when nothing more will be
  // read, without waiting out a stalled transfer and its retries. Default:
  // nothing (sources whose reads cannot block for long).
  virtual void cancel() {}
};

// sha256 of the whole object, read in chunks of a few MiB (memory does not
// grow with the size). `on_bytes`, when set, is called with each chunk's length.
Result<Sha256> sha256_of(BlockSource& src, const std::function<void(uint64_t)>& on_bytes = {});

// How a local file is read.
struct LocalFileOptions {
  // will_need() passes every hint to the kernel (posix_fadvise WILLNEED).
  // Default (false): only hints away from the last read, since forcing in the
  // pages of a sequential stream stops the kernel's own readahead (measured:
  // cold FUSE reads of a mostly-copied model 0.80 -> 0.55 GB/s), whereas an
  // in-process rebuild whose workers read one base in frame order gains from
  // every hint (cold `delta verify` of a 1 GiB pair 1.68 -> 1.19 s).
  bool hint_always = false;
  // Ranges that are not (all) in the page cache are read with O_DIRECT,
  // bypassing the page cache (read(): into a pooled buffer, copied out;
  // read_in(): straight into the caller's buffer);
  // ranges already cached (another reader of the same file brought them in)
  // are copied from it as usual. For a mount's base files: a cold read of a
  // fine-tune would otherwise fill the page cache with the base beside the
  // fine-tune's own pages (two copies of the model in memory, the base's
  // read once), and filling it costs the daemon most of its system time
  // (docs/BENCHMARKS.md, "Base reads that bypass the page cache"). The page cache
  // is asked with cachestat(2) (Linux 6.5); where that is missing or
  // refused, every range is read direct. Where O_DIRECT cannot be opened
  // or its reads fail with EINVAL (some file systems and devices), the file
  // is read through the page cache; so it is on network and FUSE file
  // systems (no_direct_reads_on). While direct reads are on, will_need()
  // does nothing (a hint would fill the page cache).
  bool direct_when_cold = false;
  // What the file is to its reader, only for local_read_stats(): a model's
  // base file (the default, which every caller that does not say means) or
  // a delta's data file (tenpak.dat). Reads are counted per role so that a
  // mount's "base read direct" is told apart from its delta data read direct.
  enum class Role { base, delta_data };
  Role role = Role::base;
};

// The name of the file system holding `path` ("nfs", "cifs", "fuse", "ceph",
// "9p", "lustre", "gpfs"...) when it is one on which direct_when_cold reads
// through the page cache anyway: there O_DIRECT skips the client's cache and
// readahead, each read a round trip to a server or daemon. Empty otherwise
// (local disks, tmpfs, overlay, or `path` not found).
std::string no_direct_reads_on(const std::string& path);

// sha256 of a whole local file, remembered across runs: a base hashed once
// is not read again by the next build, apply or mount against it while it
// is unchanged. Entries are keyed by the file's real path and identity
// (device, inode, size, mtime and ctime to the nanosecond: any write or
// replacement changes one of them) and stored only when that identity did
// not change while the file was read. The cache lives in $TENPAK_HASH_CACHE
// ("off": no cache), else $XDG_CACHE_HOME/tenpak/sha256, else
// ~/.cache/tenpak/sha256 (at most 512 entries: those of files gone or
// changed go first, then the oldest); a missing, unreadable or unwritable
// cache is never an error. (Even an entry gone stale undetected could not make wrong bytes
// pass: every rebuilt frame is still checked against its own hash.)
// `from_cache`, when set, says whether the hash came from the cache. The
// file is read with `local` (the mount's base check reads direct, so that
// checking a base does not leave it in the page cache).
Result<Sha256> sha256_of_local_file(const std::string& path, const std::function<void(uint64_t)>& on_bytes = {},
                                    bool* from_cache = nullptr, const LocalFileOptions& local = {});

// A file on local disk, read with pread(2).
Result<std::unique_ptr<BlockSource>> open_local_file(const std::string& path, const LocalFileOptions& opt = {});

// Bytes this process read from local files opened with direct_when_cold,
// by the file's LocalFileOptions::Role and by the path they took: O_DIRECT
// from storage, or copied from the page cache because every page of the
// range was there (the base shared with another reader). Counted since the
// process started.
struct LocalReadCounts {
  uint64_t direct_bytes = 0, page_cache_bytes = 0;
};
struct LocalReadStats {
  LocalReadCounts base, delta_data;
};
LocalReadStats local_read_stats();

}  // namespace tenpak
