#!/usr/bin/env bash
# Remote benchmark (issue 4): the fine-tuned model read through a real
# `tenpak mount` of a delta and its base served by nginx on loopback, next to
# curl downloading the original fine-tuned files from the same nginx, in one
# run.
#
#   bash bench/remote_bench.sh [BUILD_DIR]      (default: build)
#   env: SIZE_MB (2048) KIND (frozen) READERS (8) WORK (temp dir; kept, with
#        its generated pair, when set) DROP (1: drop the page cache before
#        each timed read; needs root) INPROCESS (0; 1: also the in-memory
#        rebuild of bench/remote_bench.cc, without FUSE) LINK_RATE (unset;
#        e.g. 1gbit: the whole run in a network namespace of its own whose
#        loopback is capped at that rate by a token bucket, `tc qdisc ... tbf`:
#        every byte nginx sends, to curl and to the mount alike, crosses a
#        link of that speed, as from a CDN; needs root, iproute2)
#
# Cases, each on a fresh mount (no page cache of the mount's files):
#   (1) nothing cached (empty LMDB cache dir): read every file vs curl
#   (1') the same with --no-cache (no persistent cache at all)
#   (2) base cached (filled by `remote_bench warm-base`), delta not: same
#   (2b) everything cached (the cache left by (1))
#   (3) open-to-first-tensor: `tenpak mount` time, then open -> safetensors
#       header -> first 1 MiB of the first tensor; nothing cached, base
#       cached, and nothing cached with --warm-mb 0 (the mount's warm-up of
#       file heads runs while the page cache is dropped in the other two)
#   (4) READERS processes read every file together (same order): bytes
#       fetched from nginx vs bytes needed; daemon memory
# Page cache: DROP=1 drops it before each timed read, then reads the origin's
# files back in, so nginx serves from memory (a CDN's hot set) for curl and
# TenPak alike; the client's LMDB cache stays cold (on disk) as after a reboot.
# Bytes fetched come from the daemon's Prometheus counters
# (tenpak_fetch_bytes_total, --metrics-port); memory from /proc/PID/status
# (VmHWM, and RssAnon sampled every 50 ms: LMDB's map is file-backed, shared
# and reclaimable, and counts in VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
if [ -n "${LINK_RATE:-}" ]; then
  if [ -z "${TENPAK_BENCH_NETNS:-}" ]; then
    exec unshare --net env TENPAK_BENCH_NETNS=1 bash "$PWD/bench/remote_bench.sh" "$@"
  fi
  ip link set lo up
  tc qdisc replace dev lo root tbf rate "$LINK_RATE" burst 512kb latency 50ms
fi
TENPAK=$PWD/$BUILD/tenpak
RB=$PWD/$BUILD/bench/remote_bench
MR=$PWD/$BUILD/bench/mount_read
SIZE_MB=${SIZE_MB:-2048}
KIND=${KIND:-frozen}
READERS=${READERS:-8}
DROP=${DROP:-1}
KEEP=${WORK:+1}
WORK=${WORK:-$(mktemp -d /tmp/tenpak-remote-bench-XXXXXX)}
for b in "$TENPAK" "$RB" "$MR"; do [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 2; }; done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
log() { echo "[remote_bench $(date +%T)] $*" >&2; }

M=$WORK/www/m
if [ ! -f "$M/delta/tenpak.idx" ]; then
  log "generating a ${SIZE_MB} MiB $KIND pair and its delta in $WORK ..."
  rm -rf "$M"; mkdir -p "$WORK/www"
  "$TENPAK" fixture "$KIND" "$M" --size-mb "$SIZE_MB" >/dev/null
  "$TENPAK" delta build "$M/base" "$M/finetune" -o "$M/delta" >/dev/null
fi

# nginx: foreground, single process, everything under $WORK/nginx.
NG=$WORK/nginx; mkdir -p "$NG/tmp"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$NG/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path $NG/tmp/b; proxy_temp_path $NG/tmp/p; fastcgi_temp_path $NG/tmp/f;
  uwsgi_temp_path $NG/tmp/u; scgi_temp_path $NG/tmp/s;
  server { listen 127.0.0.1:$PORT; root $WORK/www; } }
EOF
"$NGINX" -e "$NG/error.log" -p "$NG" -c "$NG/nginx.conf" &
NGPID=$!
MP=$WORK/mnt; mkdir -p "$MP"
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  if grep -q " $MP " /proc/mounts 2>/dev/null; then "$TENPAK" unmount "$MP" >/dev/null 2>&1 || "$TENPAK" unmount --lazy "$MP" >/dev/null 2>&1 || true; fi
  kill "$NGPID" 2>/dev/null || true; wait "$NGPID" 2>/dev/null || true
  [ -n "$KEEP" ] || rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break; sleep 0.05; done
URL=http://127.0.0.1:$PORT/m

FILES=$(cd "$M/finetune" && find . -type f | sed 's|^\./||' | sort)
MODEL_BYTES=$(cd "$M/finetune" && cat $FILES | wc -c)
DELTA_BYTES=$(cat "$M/delta/tenpak.idx" "$M/delta/tenpak.dat" | wc -c)
FIRST=$(echo "$FILES" | grep '\.safetensors$' | head -1)

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2-$1:.3f}')"; }
# Empties the page cache (DROP=1), then reads the origin's files back in.
drop_caches() {
  if [ "$DROP" = 1 ]; then
    sync
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || { log "cannot drop the page cache (not root?): DROP=0"; DROP=0; }
  fi
  cat "$M"/base/* "$M"/finetune/* "$M"/delta/* >/dev/null
}

curl_time() {  # seconds for one curl process downloading every file of model ${1:-finetune}
  local dir=${1:-finetune} args=() f
  for f in $(cd "$M/$dir" && find . -type f | sed 's|^\./||' | sort); do args+=(-o /dev/null "$URL/$dir/$f"); done
  drop_caches
  local t0 t1; t0=$(now); curl -sf "${args[@]}"; t1=$(now)
  elapsed "$t0" "$t1"
}

# mount_model CACHE_DIR|none: mounts $URL/delta (base $URL/base) at $MP;
# sets DPID, METRICS (URL) and MOUNT_S (seconds `tenpak mount` took).
mount_model() {
  local cache=$1 args=(--metrics-port 0 --log "$WORK/mount.log" --json ${MOUNT_EXTRA:-})
  if [ "$cache" = none ]; then args+=(--no-cache); else args+=(--cache-dir "$cache"); fi
  : > "$WORK/mount.log"
  local t0 t1 out
  t0=$(now); out=$("$TENPAK" mount "$URL/delta" "$MP" --base "$URL/base" "${args[@]}"); t1=$(now)
  MOUNT_S=$(elapsed "$t0" "$t1")
  DPID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pid"])' "$out")
  METRICS=$(grep -o 'metrics: http://[0-9.:]*/metrics' "$WORK/mount.log" | head -1 | cut -d' ' -f2)
  [ -n "$METRICS" ] || { log "no metrics URL in $WORK/mount.log"; exit 1; }
  # Peak RssAnon of the daemon, sampled every 50 ms into $WORK/anon.
  echo 0 > "$WORK/anon"
  python3 - "$DPID" "$WORK/anon" >/dev/null 2>"$WORK/sampler.err" <<'EOF' &
import sys, time
pid, out, peak = sys.argv[1], sys.argv[2], 0
while True:
    try:
        with open(f"/proc/{pid}/status") as f:
            for l in f:
                if l.startswith("RssAnon:"):
                    v = int(l.split()[1])
                    if v > peak:
                        peak = v
                        open(out, "w").write(str(peak))
    except OSError:
        break
    time.sleep(0.05)
EOF
  SAMPLER=$!
  for _ in $(seq 100); do [ "$(cat "$WORK/anon")" != 0 ] && break; sleep 0.05; done  # its first sample
}

# unmount_model NAME SECONDS: one JSON line (to stdout) with the daemon's
# counters, then unmounts.
unmount_model() {
  local name=$1 secs=$2 hwm
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")
  sleep 0.1
  local anon; anon=$(cat "$WORK/anon")
  python3 - "$name" "$secs" "$hwm" "$anon" "$URL/delta" "$MOUNT_S" "$(curl -sf "$METRICS")" "$(cat "$MP/.tenpak/stats.json")" <<'EOF'
import json, re, sys
name, secs, hwm, anon, delta_url, mount_s, prom, stats = sys.argv[1:9]
fb = fd = req = 0
for m in re.finditer(r'^tenpak_fetch_(bytes|requests)_total\{origin="([^"]*)"\} (\d+)', prom, re.M):
    kind, origin, v = m.group(1), m.group(2), int(m.group(3))
    if kind == "requests": req += v
    elif origin.startswith(delta_url): fd += v
    else: fb += v
st = json.loads(stats)
print(json.dumps({"case": name, "seconds": float(secs), "mount_seconds": float(mount_s), "fetched_bytes": fb + fd,
                  "fetched_base": fb, "fetched_delta": fd, "requests": req, "served_bytes": st["bytes_served"],
                  "frames_rebuilt": st["frames_rebuilt"], "persistent_hits": st["persistent_cache"]["hits"],
                  "vm_hwm_kib": int(hwm), "peak_anon_kib": int(anon)}))
EOF
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
  "$TENPAK" unmount "$MP" >/dev/null
}

read_all() {  # every file of the mount, in order, one sequential reader; prints seconds
  local t0 t1 f; t0=$(now)
  for f in $FILES; do "$MR" seq "$MP/$f" >/dev/null; done
  t1=$(now); elapsed "$t0" "$t1"
}

# Reads the whole model through a fresh mount on CACHE; prints the JSON line.
mount_case() {
  local name=$1 cache=$2 secs
  mount_model "$cache"
  drop_caches
  secs=$(read_all)
  unmount_model "$name" "$secs"
}

C1=$WORK/cache-1; C2=$WORK/cache-2; C3=$WORK/cache-3; C4=$WORK/cache-4; C5=$WORK/cache-5; C7=$WORK/cache-7
rm -rf "$C1" "$C2" "$C3" "$C4" "$C5" "$C7"; mkdir -p "$C1" "$C2" "$C3" "$C4" "$C5" "$C7"
NEEDED=$("$RB" needed "$M/delta" "$M/base")
log "curl baseline"; CURL_A=$(curl_time)
log "(1) nothing cached"; R1=$(mount_case nothing-cached "$C1")
log "(1') no cache at all (--no-cache)"; R1N=$(mount_case no-cache none)
CURL_B=$(curl_time)
log "(2) base cached, delta not"; W=$("$RB" warm-base "$URL/delta" "$URL/base" --cache "$C2")
R2=$(mount_case base-cached "$C2")
log "(2b) everything cached"; R2B=$(mount_case all-cached "$C1")
log "(3) open to first tensor"
mount_model "$C3"; drop_caches
F3=$("$MR" first "$MP/$FIRST"); R3=$(unmount_model first-tensor 0)
"$RB" warm-base "$URL/delta" "$URL/base" --cache "$C5" >/dev/null
mount_model "$C5"; drop_caches
F3B=$("$MR" first "$MP/$FIRST"); R3B=$(unmount_model first-tensor-base-cached 0)
# The same, nothing cached, without the mount-time warm-up of file heads.
MOUNT_EXTRA="--warm-mb 0" mount_model "$C7"; drop_caches
F3N=$("$MR" first "$MP/$FIRST"); R3N=$(unmount_model first-tensor-no-warm-up 0)
log "(4) $READERS concurrent readers"
mount_model "$C4"; drop_caches
t0=$(now); pids=()
for _ in $(seq "$READERS"); do (for f in $FILES; do "$MR" seq "$MP/$f" >/dev/null; done) & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(now); R4=$(unmount_model "readers-$READERS" "$(elapsed "$t0" "$t1")")
CURL_C=$(curl_time)

IP=()
if [ "${INPROCESS:-0}" = 1 ]; then  # the rebuild in memory, no FUSE (bench/remote_bench.cc)
  log "in-process variant"
  C6=$WORK/cache-6; rm -rf "$C6"
  IP=("$("$RB" rebuild "$M/delta" "$M/base")" "$("$RB" rebuild "$URL/delta" "$URL/base")"
      "$("$RB" readers-fetch "$URL/delta" "$URL/base" --cache "$C6" --readers "$READERS")")
fi

python3 - "$MODEL_BYTES" "$DELTA_BYTES" "$KIND" "$READERS" "$CURL_A" "$CURL_B" "$CURL_C" "$NEEDED" "$W" \
  "$R1" "$R1N" "$R2" "$R2B" "$R3" "$R3B" "$F3" "$F3B" "$R4" "$F3N" "$DROP" "${IP[@]}" <<'EOF'
import json, sys
a = sys.argv[1:]
model, delta, kind, readers = int(a[0]), int(a[1]), a[2], a[3]
curls = [float(x) for x in a[4:7]]
needed, w, r1, r1n, r2, r2b, r3, r3b, f3, f3b, r4, f3n = (json.loads(x) for x in a[7:19])
drop, ip = a[19], [json.loads(x) for x in a[20:]]
c = min(curls)
gb = lambda b, s: b / s / 1e9
mib = lambda b: b / 2**20
mem = lambda r: f"daemon VmHWM {r['vm_hwm_kib']/1024:.0f} MiB, peak RssAnon {r['peak_anon_kib']/1024:.0f} MiB"
fetched = lambda r: f"fetched {mib(r['fetched_bytes']):.1f} MiB (base {mib(r['fetched_base']):.1f}, delta {mib(r['fetched_delta']):.1f}) in {r['requests']} requests"
import os
link = os.environ.get("LINK_RATE")
print(f"model {mib(model):.0f} MiB ({kind}), delta {mib(delta):.1f} MiB = {100*delta/model:.1f}% of the model; "
      f"page cache dropped before each timed read: {'yes' if drop == '1' else 'no'}; "
      f"link: {link + ' (loopback capped by tc tbf, own network namespace)' if link else 'loopback, uncapped'}")
print(f"curl, fine-tuned files from nginx: {c:.2f} s ({gb(model, c):.2f} GB/s), best of {len(curls)}: {curls}")
for tag, r in (("(1) nothing cached", r1), ("(1') --no-cache", r1n)):
    print(f"{tag}: mount {r['seconds']:.2f} s ({gb(model, r['seconds']):.2f} GB/s) = {c / r['seconds']:.2f}x curl's throughput "
          f"[target >= 0.9x]; {fetched(r)}; {mem(r)}")
print(f"(2) base cached, delta not: mount {r2['seconds']:.2f} s = {c / r2['seconds']:.2f}x faster than curl [target >= 4x when "
      f"delta <= 15%: here {100*delta/model:.1f}%]; {fetched(r2)}; {mem(r2)}; warming the base took {w['seconds']:.2f} s")
print(f"(2b) everything cached: mount {r2b['seconds']:.2f} s = {c / r2b['seconds']:.2f}x curl; {fetched(r2b)}; "
      f"{r2b['persistent_hits']} frames from the persistent cache; {mem(r2b)}")
print(f"(3) open to first tensor ({f3['tensor']}, first {f3['bytes']} bytes): {f3['ms']:.1f} ms nothing cached, "
      f"{f3b['ms']:.1f} ms base cached, {f3n['ms']:.1f} ms nothing cached without the warm-up (--warm-mb 0); "
      f"`tenpak mount` itself {r3['mount_seconds']:.2f} s / {r3b['mount_seconds']:.2f} s")
print(f"(4) {readers} concurrent readers: fetched {mib(r4['fetched_bytes']):.1f} MiB for {mib(needed['needed_bytes']):.1f} MiB needed = "
      f"{r4['fetched_bytes']/needed['needed_bytes']:.3f}x [target <= 1.02x]; served {mib(r4['served_bytes']):.0f} MiB in "
      f"{r4['seconds']:.2f} s; {mem(r4)} [target < 256 MiB]")
if ip:
    l, n, rd = ip
    print(f"in-process (no FUSE): rebuild from local files {l['seconds']:.2f} s, over HTTP {n['seconds']:.2f} s; "
          f"{readers} readers-fetch {rd['fetched_bytes']/rd['needed_bytes']:.3f}x needed")
for r in (r1, r1n, r2, r2b, r3, r3b, r4, f3, f3b, f3n, needed, w, *ip):
    print("raw", json.dumps(r))
EOF
