#!/usr/bin/env bash
# Rebuild throughput of a data set delta served by the real mount: MB of derived set per CPU-second of
# the mount daemon while a reader reads every file once (bench/mount_read seq: read(2), 1 MiB requests).
#
#   bench/dataset_mount_rebuild.sh BUILD_DIR DELTA_DIR BASE DERIVED [ROUNDS]     (default 10 rounds)
#
# Each round mounts DELTA_DIR afresh (an empty frame cache and page cache for the mount's files;
# --warm-mb 0, so that nothing is rebuilt before the read; --no-verify-base: the base's sha256, a
# once-per-daemon cost, is not counted; --buffered-base, with BASE read once before the first round:
# base ranges come from the page cache, as in decode_floor's in-process figures, not read direct from
# the disk as a mount reads a cold base), takes the daemon's CPU time (the sum over its threads of
# /proc/PID/task/TID/schedstat's first field, nanoseconds), reads every file, takes it again and
# unmounts. Two settings, printed as one line each: "lmdb off" (--no-cache: every frame decoded,
# xxh3-checked and served) and "lmdb warm" (a private persistent cache with --cache-frames all,
# filled by one unmeasured round first: frames come back from LMDB, checked against their xxh3). The
# first round's files are compared with DERIVED. The daemon's CPU includes FUSE's request handling and
# its copies into the page cache; the reader's own CPU is not counted. Needs /dev/fuse and fusermount3.
set -euo pipefail
shopt -s inherit_errexit  # a failed mount inside $(round ...) ends the run, not a round counted as 0 ns
BUILD=$(cd "$1" && pwd); DELTA=$2; BASE=$3; DER=$4; ROUNDS=${5:-10}
T=$BUILD/tenpak; RD=$BUILD/bench/mount_read
[ -x "$T" ] && [ -x "$RD" ] || { echo "dataset_mount_rebuild: build tenpak and mount_read in $BUILD first" >&2; exit 2; }
WORK=$(mktemp -d /tmp/tenpak-dsmount-XXXXXX)
MP=$WORK/mnt; mkdir -p "$MP"
cleanup() { mountpoint -q "$MP" && "$T" unmount "$MP" >/dev/null 2>&1; rm -rf "$WORK"; }
trap cleanup EXIT
n=$(find "$DER" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
# CPU nanoseconds of every thread of PID so far.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
daemon_pid() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$MP/.tenpak/stats.json"; }
read_all() { (cd "$MP" && find . -path ./.tenpak -prune -o -type f -print | LC_ALL=C sort | while read -r f; do "$RD" seq "$f" >/dev/null; done); }
find "$BASE" -type f -exec cat {} + >/dev/null
round() {  # round CHECK MOUNT_OPTIONS... -> daemon CPU ns of the read
  local check=$1 pid c0 c1
  shift
  "$T" mount "$DELTA" "$MP" --base "$BASE" --no-verify-base --buffered-base --warm-mb 0 --log "$WORK/mount.log" "$@" >/dev/null
  pid=$(daemon_pid)
  c0=$(cpu_ns "$pid")
  read_all
  c1=$(cpu_ns "$pid")
  if [ "$check" = 1 ]; then
    diff -r --exclude=.tenpak "$MP" "$DER" >/dev/null || { echo "MISMATCH: $MP differs from $DER" >&2; exit 3; }
  fi
  "$T" unmount "$MP" >/dev/null
  echo $((c1 - c0))
}
measure() {  # measure LABEL MOUNT_OPTIONS...
  local label=$1 s=0 i c
  shift
  for ((i = 0; i < ROUNDS; i++)); do
    c=$(round $((i == 0)) "$@")
    s=$((s + c))
  done
  awk -v l="$label" -v n="$n" -v s="$s" -v r="$ROUNDS" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%s: %d bytes x %d rounds, daemon CPU %.3f ms a read of the set, %.0f MB per CPU-second (load %s)\n", l, n, r, s / r / 1e6, n / 1e6 / (s / r / 1e9), load }'
}
measure "lmdb off" --no-cache
round 0 --cache-dir "$WORK/cache" --cache-frames all >/dev/null  # fills the persistent cache
measure "lmdb warm" --cache-dir "$WORK/cache" --cache-frames all
