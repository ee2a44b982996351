// The libfuse3 low-level adapter: serves a ModelFs at a mountpoint, and the
// mountpoint checks and unmount used by `tenpak mount` / `tenpak unmount`.
//
// The mount is read-only (writes, creates, setattr: EROFS), multi-threaded,
// uses the kernel page cache (keep_cache; never direct_io for model files,
// so mmap MAP_SHARED/MAP_PRIVATE work and warm reads never reach the
// daemon), takes requests up to 1 MiB (max_pages 256, max_read 1 MiB) and,
// when running as root, raises the mount's bdi read_ahead_kb (the kernel
// caps readahead at the daemon's init value, which starts at 128 KiB).
// Attributes and entries are cached for a long time: the content is
// immutable for the life of the mount.
#pragma once
#include <functional>
#include <string>

#include "tenpak/model_fs.h"
#include "tenpak/status.h"

namespace tenpak {

struct MountConfig {
  std::string mountpoint;
  std::string fsname = "tenpak";  // shown in /proc/mounts
  unsigned max_threads = 8;       // FUSE request threads
  unsigned readahead_kb = 4096;   // bdi read_ahead_kb set when root; 0: leave the kernel's
  bool allow_other = false;       // let other users read the mount
  double timeout_s = 86400;       // attr/entry cache timeouts
  std::function<void(const std::string&)> log;  // null: stderr
};

// Mounts `fs` at cfg.mountpoint and serves it until it is unmounted or
// SIGINT/SIGTERM/SIGHUP arrives (then unmounts). `ready` is called exactly
// once: with Ok once the mount answers requests, or with the error that
// prevented mounting (then serve_fuse returns that error too).
Status serve_fuse(ModelFs& fs, const MountConfig& cfg, const std::function<void(const Status&)>& ready);

// Checks that a new mount can go at `mountpoint`: it exists (Errc::invalid),
// is a directory (invalid), is not a stale mount whose daemon died
// (Errc::exists, ENOTCONN), not already a mount (exists) and is empty (exists).
Status check_mountpoint(const std::string& mountpoint);
// True when `mountpoint` is a dead FUSE mount (stat gives ENOTCONN).
bool is_stale_mount(const std::string& mountpoint);
// True when `mountpoint` is a mount point (live or stale).
bool is_mountpoint(const std::string& mountpoint);
// Unmounts (umount2 as root, fusermount3 -u otherwise). `lazy` detaches at
// once and lets open files finish (MNT_DETACH / fusermount3 -z). A busy
// mount without `lazy` is an error saying so.
Status unmount_fuse(const std::string& mountpoint, bool lazy);

}  // namespace tenpak
