#define FUSE_USE_VERSION 314
#include "tenpak/fuse_mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

extern char** environ;

namespace tenpak {
namespace {

struct Ctx {
  ModelFs* fs = nullptr;
  MountConfig cfg;
  time_t start = 0;
  uint64_t total_bytes = 0, total_nodes = 0;
  void log(const std::string& line) const {
    if (cfg.log) cfg.log(line);
    else std::fprintf(stderr, "tenpak-mount: %s\n", line.c_str());
  }
};

Ctx& ctx(fuse_req_t req) { return *static_cast<Ctx*>(fuse_req_userdata(req)); }

// The one mapping from TenPak errors to errno. Every failed read becomes EIO
// (its cause was logged and counted by ModelFs); the rest is for completeness.
int to_errno(const Status& s) {
  switch (s.code()) {
    case Errc::ok: return 0;
    case Errc::no_space: return ENOSPC;
    case Errc::exists: return EEXIST;
    case Errc::unsupported: return EOPNOTSUPP;
    case Errc::io:
    case Errc::corrupt:
    case Errc::mismatch:
    case Errc::invalid:
    case Errc::unavailable:
    default: return EIO;
  }
}

struct stat to_stat(const Ctx& c, const FsAttr& a) {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_mode = (a.is_dir ? S_IFDIR : S_IFREG) | a.mode;
  st.st_nlink = a.nlink;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st.st_blksize = 128 * 1024;
  st.st_uid = getuid();
  st.st_gid = getgid();
  st.st_atim.tv_sec = st.st_mtim.tv_sec = st.st_ctim.tv_sec = c.start;
  return st;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  // Requests of up to max_pages (libfuse asks the kernel for 256: 1 MiB);
  // must equal the max_read mount option given to fuse_session_new.
  conn->max_read = 1u << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Ctx& c = ctx(req);
  fuse_entry_param e{};
  e.entry_timeout = c.cfg.timeout_s;  // negative entries too: the tree never changes
  if (auto a = c.fs->lookup(parent, name)) {
    e.ino = a->ino;
    e.generation = 1;
    e.attr = to_stat(c, *a);
    e.attr_timeout = c.fs->is_control_file(a->ino) ? 0 : c.cfg.timeout_s;
  }
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Ctx& c = ctx(req);
  auto a = c.fs->getattr(ino);
  if (!a) return (void)fuse_reply_err(req, ENOENT);
  struct stat st = to_stat(c, *a);
  fuse_reply_attr(req, &st, c.fs->is_control_file(ino) ? 0 : c.cfg.timeout_s);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Ctx& c = ctx(req);
  auto list = c.fs->readdir(ino);
  if (!list) return (void)fuse_reply_err(req, c.fs->getattr(ino) ? ENOTDIR : ENOENT);
  std::vector<char> buf(size);
  size_t pos = 0;
  const size_t n = list->size() + 2;
  for (size_t i = static_cast<size_t>(off); i < n; ++i) {
    struct stat st {};
    const char* name;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      st.st_ino = ino;
      st.st_mode = S_IFDIR;
    } else {
      const FsDirEntry& d = (*list)[i - 2];
      name = d.name.c_str();
      st.st_ino = d.attr.ino;
      st.st_mode = d.attr.is_dir ? S_IFDIR : S_IFREG;
    }
    size_t need = fuse_add_direntry(req, buf.data() + pos, size - pos, name, &st, static_cast<off_t>(i + 1));
    if (need > size - pos) break;
    pos += need;
  }
  fuse_reply_buf(req, buf.data(), pos);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Ctx& c = ctx(req);
  auto a = c.fs->getattr(ino);
  if (!a) return (void)fuse_reply_err(req, ENOENT);
  if (a->is_dir) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return (void)fuse_reply_err(req, EROFS);
  if (c.fs->is_control_file(ino)) {
    fi->direct_io = 1;  // a fresh snapshot on every read; never a model file
  } else {
    fi->keep_cache = 1;  // immutable content: keep pages across opens, share them between processes
  }
  fuse_reply_open(req, fi);
  c.fs->opened(ino);  // after the reply: starts rebuilding the file's first frames in the background
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Ctx& c = ctx(req);
  auto r = c.fs->read_slices(ino, static_cast<uint64_t>(off), size);
  if (!r.ok()) return (void)fuse_reply_err(req, to_errno(r.status()));
  if (r->empty()) return (void)fuse_reply_buf(req, nullptr, 0);
  iovec iov[8];
  std::vector<iovec> big;
  iovec* v = iov;
  if (r->size() > 8) {
    big.resize(r->size());
    v = big.data();
  }
  for (size_t i = 0; i < r->size(); ++i) v[i] = {const_cast<uint8_t*>((*r)[i].data), (*r)[i].len};
  // Written before returning: the slices (and their frames) outlive the reply.
  fuse_reply_iov(req, v, static_cast<int>(r->size()));
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  Ctx& c = ctx(req);
  struct statvfs s {};
  s.f_bsize = s.f_frsize = 4096;
  s.f_blocks = (c.total_bytes + 4095) / 4096;
  s.f_files = c.total_nodes;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

// Everything that would change the tree or a file: read-only.
void op_setattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) { fuse_reply_err(req, EROFS); }
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }

void count_tree(ModelFs& fs, uint64_t ino, uint64_t& bytes, uint64_t& nodes) {
  ++nodes;
  auto list = fs.readdir(ino);
  if (!list) return;
  for (auto& e : *list) {
    if (e.attr.is_dir) count_tree(fs, e.attr.ino, bytes, nodes);
    else {
      bytes += e.attr.size;
      ++nodes;
    }
  }
}

int run_command(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

}  // namespace

// statfs, not stat: stat of a FUSE root may be answered from the kernel's
// attribute cache after the daemon died; statfs always asks the daemon.
bool is_stale_mount(const std::string& mp) {
  struct statfs sfs;
  return statfs(mp.c_str(), &sfs) != 0 && errno == ENOTCONN;
}

bool is_mountpoint(const std::string& mp) {
  if (is_stale_mount(mp)) return true;
  struct stat st, up;
  if (stat(mp.c_str(), &st) != 0) return errno == ENOTCONN;
  if (stat((mp + "/..").c_str(), &up) != 0) return false;
  return st.st_dev != up.st_dev || st.st_ino == up.st_ino;
}

Status check_mountpoint(const std::string& mp) {
  struct stat st;
  const bool stale = is_stale_mount(mp);
  if (stale || stat(mp.c_str(), &st) != 0) {
    int e = stale ? ENOTCONN : errno;
    if (e == ENOTCONN)
      return {Errc::exists, mp + ": stale mount (its daemon is gone: transport endpoint is not connected); clean it with "
                                "`tenpak unmount --lazy " + mp + "` or mount again with --force-clean"};
    if (e == ENOENT) return {Errc::invalid, mp + ": mountpoint does not exist (create the directory first)"};
    return {Errc::io, mp + ": cannot stat the mountpoint: " + std::strerror(e)};
  }
  if (!S_ISDIR(st.st_mode)) return {Errc::invalid, mp + ": mountpoint is not a directory"};
  if (is_mountpoint(mp))
    return {Errc::exists, mp + ": already mounted (`tenpak unmount " + mp + "` first)"};
  DIR* d = opendir(mp.c_str());
  if (!d) return {Errc::io, mp + ": cannot list the mountpoint: " + std::strerror(errno)};
  bool empty = true;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  closedir(d);
  if (!empty) return {Errc::exists, mp + ": mountpoint is not empty (mounting would hide its files); use an empty directory"};
  return Status::Ok();
}

Status unmount_fuse(const std::string& mp, bool lazy) {
  if (!is_mountpoint(mp)) return {Errc::invalid, mp + ": not a mount point"};
  if (geteuid() == 0) {
    if (umount2(mp.c_str(), lazy ? MNT_DETACH : 0) == 0) return Status::Ok();
    int e = errno;
    if (e == EBUSY)
      return {Errc::io, mp + ": busy (a process has a file open there or its working directory inside); close it "
                            "or use --lazy to detach now and finish when the last file is closed"};
    return {Errc::io, mp + ": umount failed: " + std::strerror(e)};
  }
  std::vector<std::string> cmd = {"fusermount3", "-u"};
  if (lazy) cmd.push_back("-z");
  cmd.push_back(mp);
  int rc = run_command(cmd);
  if (rc == 0) return Status::Ok();
  if (rc < 0) return {Errc::io, mp + ": cannot run fusermount3 (is the fuse3 package installed?)"};
  return {Errc::io, mp + ": fusermount3 -u failed (busy? close open files or use --lazy)"};
}

Status serve_fuse(ModelFs& fs, const MountConfig& cfg, const std::function<void(const Status&)>& ready) {
  Ctx c;
  c.fs = &fs;
  c.cfg = cfg;
  c.start = time(nullptr);
  count_tree(fs, ModelFs::kRootIno, c.total_bytes, c.total_nodes);

  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.read = op_read;
  ops.statfs = op_statfs;
  ops.setattr = op_setattr;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_unlink;
  ops.rename = op_rename;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.write = op_write;
  ops.create = op_create;

  std::string fsname = cfg.fsname;
  for (char& ch : fsname)
    if (ch == ',' || ch == '\\' || ch == ' ') ch = '_';
  std::string opts = "ro,default_permissions,subtype=tenpak,max_read=1048576,fsname=" + fsname;
  if (cfg.allow_other) opts += ",allow_other";
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&args, "tenpak");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, opts.c_str());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), &c);
  fuse_opt_free_args(&args);
  if (!se) {
    Status st{Errc::io, "cannot create the FUSE session (bad options?)"};
    ready(st);
    return st;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    Status st{Errc::io, "cannot install signal handlers"};
    ready(st);
    return st;
  }
  if (fuse_session_mount(se, cfg.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    Status st{Errc::io, cfg.mountpoint + ": mount failed (is /dev/fuse usable? see messages above)"};
    ready(st);
    return st;
  }
  // Readiness: a real round trip (statfs is always answered by the daemon),
  // then the readahead of the new bdi. Runs beside the loop that answers it.
  std::thread readiness([&] {
    struct statfs sfs;
    if (statfs(cfg.mountpoint.c_str(), &sfs) != 0) {
      ready(Status{Errc::io, cfg.mountpoint + ": the new mount does not answer: " + std::strerror(errno)});
      return;
    }
    struct stat st;
    if (cfg.readahead_kb > 0 && geteuid() == 0 && stat(cfg.mountpoint.c_str(), &st) == 0) {
      char path[96];
      std::snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
      std::ofstream f(path);
      f << cfg.readahead_kb << "\n";
      f.flush();
      if (f) c.log("readahead of " + std::string(path) + " set to " + std::to_string(cfg.readahead_kb) + " KiB");
      else c.log(std::string("could not raise readahead at ") + path + " (kept the kernel's 128 KiB)");
    }
    ready(Status::Ok());
  });
  // When the session ends (a signal, or the kernel unmounted it), the loop
  // joins its worker threads; one of them may be inside a read of a stalled
  // origin, which could take minutes to give up. libfuse has no callback for
  // that moment, so a watcher polls for it (5 times a second) and cancels the
  // origin reads.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool loop_done = false;
  std::thread watcher([&] {
    std::unique_lock lk(watch_mu);
    while (!loop_done) {
      if (fuse_session_exited(se)) {
        fs.cancel_reads();
        c.log("session ending: origin reads in progress cancelled");
        return;
      }
      watch_cv.wait_for(lk, std::chrono::milliseconds(200));
    }
  });
  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(lc, cfg.max_threads);
  fuse_loop_cfg_set_idle_threads(lc, cfg.max_threads);
  int rc = fuse_session_loop_mt(se, lc);
  fuse_loop_cfg_destroy(lc);
  {
    std::lock_guard lk(watch_mu);
    loop_done = true;
  }
  watch_cv.notify_all();
  watcher.join();
  // Unmount first: it closes the session fd, which aborts the connection and
  // fails a readiness statfs that the loop will no longer answer.
  fuse_session_unmount(se);
  readiness.join();
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP && rc != -ENODEV)
    return {Errc::io, "FUSE session loop ended with error " + std::to_string(rc)};
  return Status::Ok();
}

}  // namespace tenpak
