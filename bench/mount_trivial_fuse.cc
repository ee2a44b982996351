// mount_trivial_fuse: the FUSE ceiling of this machine, for bench/mount_bench.sh.
// A minimal libfuse3 low-level daemon serving one read-only file "data" of
// SIZE bytes straight from memory (a 1 MiB pattern buffer repeated), with
// the same settings as the TenPak mount: keep_cache, max_read 1 MiB,
// multi-threaded loop. Whatever TenPak adds on top of FUSE is the difference.
//   mount_trivial_fuse MOUNTPOINT SIZE_BYTES   (foreground; SIGINT/SIGTERM unmount)
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>

#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kPattern = 1u << 20;
uint64_t g_size = 0;
std::vector<char> g_buf;

void fill_attr(fuse_ino_t ino, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = ino;
  if (ino == 1) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(g_size);
  }
}

void op_init(void*, fuse_conn_info* conn) {
  conn->max_read = 1u << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != 1 || std::strcmp(name, "data") != 0) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = 2;
  e.attr_timeout = e.entry_timeout = 86400;
  fill_attr(2, &e.attr);
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino != 1 && ino != 2) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  fill_attr(ino, &st);
  fuse_reply_attr(req, &st, 86400);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != 2) return (void)fuse_reply_err(req, EISDIR);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  uint64_t o = static_cast<uint64_t>(off);
  if (o >= g_size) return (void)fuse_reply_buf(req, nullptr, 0);
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, g_size - o));
  // Zero-copy from the pattern buffer, like TenPak's iovec replies from frames.
  iovec iov[3];
  int k = 0;
  size_t done = 0;
  while (done < n && k < 3) {
    size_t p = (o + done) % kPattern, len = std::min(n - done, kPattern - p);
    iov[k++] = {g_buf.data() + p, len};
    done += len;
  }
  fuse_reply_iov(req, iov, k);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MOUNTPOINT SIZE_BYTES\n", argv[0]);
    return 2;
  }
  g_size = std::strtoull(argv[2], nullptr, 10);
  g_buf.resize(kPattern);
  for (size_t i = 0; i < kPattern; ++i) g_buf[i] = static_cast<char>(i * 131 + 7);
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.open = op_open;
  ops.read = op_read;
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&args, argv[0]);
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, "ro,max_read=1048576,fsname=trivialfuse");
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(lc, 8);
  int rc = fuse_session_loop_mt(se, lc);
  fuse_loop_cfg_destroy(lc);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  return rc == 0 || rc == SIGINT || rc == SIGTERM ? 0 : 1;
}
