#!/usr/bin/env bash
# Where the mount daemon's CPU goes on a cold sequential read: perf record
# of the daemon (kernel stacks; user code by symbol) during bench/mount_read
# seq of one file after a fresh mount and a page-cache drop, each sample put
# in one category by its call chain, printed as CPU-seconds per GB served
# (samples / frequency / file size) and as a share.
#
#   sudo bench/mount_profile.sh BUILD_DIR DELTA_DIR BASE FILE [RUNS] [mount options...]
#   e.g. sudo bench/mount_profile.sh build /tmp/s15/mb/bf16/delta /tmp/s15/mb/bf16/pair/base model.safetensors 3
#
# Categories (first match wins): page faults; FUSE reply (writev to
# /dev/fuse: the copy into the reader's page cache); FUSE request read;
# futex / scheduling; direct reads (pread with O_DIRECT: cold base ranges
# and delta payloads) and page-cache reads (pread copying out of it); xxh3 (libxxhash); decoder (codec code, its table set-up
# included); interrupts; the rest by leaf symbol. Needs `perf`, root (drops
# the page cache) and the mount's defaults but for --no-cache.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,16p "$0" >&2; exit 2; }
B=$(cd "$1" && pwd); DELTA=$2; BASE=$3; FILE=$4; RUNS=${5:-1}; shift 4; [ $# -gt 0 ] && shift
command -v perf >/dev/null || { echo "mount_profile: perf not found" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "mount_profile: run as root (drops the page cache)" >&2; exit 2; }
W=$(mktemp -d /tmp/tenpak-mount-profile.XXXXXX)
MP=$W/mp; mkdir -p "$MP"
PERF_PID=""
cleanup() {
  [ -n "$PERF_PID" ] && kill -TERM "$PERF_PID" 2>/dev/null || true
  mountpoint -q "$MP" && "$B/tenpak" unmount "$MP" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
for run in $(seq "$RUNS"); do
  "$B/tenpak" mount "$DELTA" "$MP" --base "$BASE" --no-verify-base --no-cache --log "$W/mount.log" "$@" >/dev/null
  pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$MP/.tenpak/stats.json")
  size=$(stat -c %s "$MP/$FILE")
  sync; echo 3 > /proc/sys/vm/drop_caches
  perf record -F 1000 -g -o "$W/perf.data" -p "$pid" 2>"$W/perf.err" & PERF_PID=$!
  sleep 0.5
  gbps=$("$B/bench/mount_read" seq "$MP/$FILE" | python3 -c "import json,sys; print(json.load(sys.stdin)['gbps'])")
  kill -TERM "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=""
  "$B/tenpak" unmount "$MP" >/dev/null
  echo "== run $run: $FILE cold $gbps GB/s, load $(cut -d' ' -f1 /proc/loadavg)"
  perf script -i "$W/perf.data" -F ip,sym,dso 2>/dev/null | python3 -c '
import collections, sys
size = int(sys.argv[1])
def category(frames):
    s = " ".join(frames)
    leaf = frames[0].split() if frames else []
    if "exc_page_fault" in s: return "page faults"
    if "fuse_dev_write" in s or "writev" in s: return "FUSE reply (writev to /dev/fuse)"
    if "fuse_dev_read" in s or "fuse_dev_do_read" in s: return "FUSE request read"
    if "futex" in s or (leaf and ("schedule" in leaf[-1] or "finish_task_switch" in leaf[-1])): return "futex / scheduling"
    if "pread64" in s and any(k in s for k in ("iomap_dio", "blkdev_direct", "gup", "dio")): return "direct reads (base ranges, delta payloads)"
    if "pread64" in s and "filemap_read" in s: return "pread from the page cache (copy)"
    if "pread64" in s: return "pread, other"
    if "libxxhash" in s or "xxh" in s.lower(): return "xxh3"
    if any(k in s for k in ("lanes::", "decode_frame", "sub_ctx", "plane", "frame_decode")): return "decoder"
    if any(k in s for k in ("irq", "virtio", "blk_")): return "interrupts / block completion"
    return "other (leaf " + (leaf[1] if len(leaf) > 1 else "?") + ")"
count = collections.Counter(); frames = []
def flush():
    global frames
    if frames: count[category(frames)] += 1
    frames = []
for line in sys.stdin:
    if not line.strip() or line[0] not in " \t": flush(); continue
    frames.append(line.strip())
flush()
total = sum(count.values()); gb = size / 1e9
print(f"  {total} samples at 1000 Hz: {total / 1000 / gb:.3f} CPU-s per GB")
for k, v in count.most_common(12):
    print(f"  {v / 1000 / gb:7.3f} CPU-s/GB {100 * v / total:5.1f}%  {k}")
' "$size"
done
