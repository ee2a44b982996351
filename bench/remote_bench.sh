#!/usr/bin/env bash
# Remote benchmark: TenPak rebuilding a fine-tune from base + delta served by
# nginx on loopback, next to curl downloading the original fine-tuned files
# from the same nginx, in one run.
#
#   bash bench/remote_bench.sh [BUILD_DIR]      (default: build)
#   env: SIZE_MB (2048) KIND (frozen) READERS (8) WORK (temp dir; kept when set)
#        READERS_MODE (readers-fetch: the frames' reads without decoding;
#        readers: full rebuilds, READERS times the CPU)
#        READ_CMD: how TenPak reads the model (default: remote_bench, rebuild
#        in memory). The mount version swaps in here: see read_model().
#
# Cases: (1) nothing cached; (2) base cached, delta not; (2b) all cached;
# (3) READERS concurrent readers of the same model: bytes fetched vs needed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
TENPAK=$PWD/$BUILD/tenpak
RB=$PWD/$BUILD/bench/remote_bench
SIZE_MB=${SIZE_MB:-2048}
KIND=${KIND:-frozen}
READERS=${READERS:-8}
KEEP=${WORK:+1}
WORK=${WORK:-$(mktemp -d /tmp/tenpak-remote-bench-XXXXXX)}
for b in "$TENPAK" "$RB"; do [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 2; }; done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

M=$WORK/www/m
if [ ! -f "$M/delta/tenpak.idx" ]; then
  echo "generating a ${SIZE_MB} MiB $KIND pair and its delta in $WORK ..." >&2
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
cleanup() { kill "$NGPID" 2>/dev/null || true; wait "$NGPID" 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break; sleep 0.05; done
URL=http://127.0.0.1:$PORT/m

FILES=$(cd "$M/finetune" && find . -type f | sed 's|^\./||' | sort)
MODEL_BYTES=$(cd "$M/finetune" && cat $FILES | wc -c)
DELTA_BYTES=$(cat "$M/delta/tenpak.idx" "$M/delta/tenpak.dat" | wc -c)

# Warm the page cache so both sides read from memory on the server side.
cat "$M"/base/* "$M"/finetune/* "$M"/delta/* >/dev/null

curl_time() {  # seconds for one curl process downloading every file of model ${1:-finetune}
  local dir=${1:-finetune} args=() f
  for f in $(cd "$M/$dir" && find . -type f | sed 's|^\./||' | sort); do args+=(-o /dev/null "$URL/$dir/$f"); done
  local t0 t1; t0=$(date +%s.%N); curl -sf "${args[@]}"; t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

# read_model MODE CACHE_DIR: prints remote_bench's JSON line. To benchmark
# the mount instead, replace the body with: mount "$URL/delta" (base
# "$URL/base") with --cache-dir CACHE_DIR, cat every file, read the daemon's
# counters, unmount; print the same fields.
read_model() {
  local mode=$1 cache=${2:-}
  if [ -n "${READ_CMD:-}" ]; then "$READ_CMD" "$mode" "$URL/delta" "$URL/base" "$cache"; return; fi
  if [ -n "$cache" ]; then "$RB" "$mode" "$URL/delta" "$URL/base" --cache "$cache" --readers "$READERS"
  else "$RB" "$mode" "$URL/delta" "$URL/base" --readers "$READERS"; fi
}

C1=$WORK/cache-base; C2=$WORK/cache-readers; rm -rf "$C1" "$C2"
CURL_A=$(curl_time)
# The same rebuild from local files: what decoding alone costs on this machine.
R0=$("$RB" rebuild "$M/delta" "$M/base")
R1=$(read_model rebuild)
CURL_B=$(curl_time)
W=$(read_model warm-base "$C1")
R2=$(read_model rebuild "$C1")
R2B=$(read_model rebuild "$C1")
R3=$(read_model "${READERS_MODE:-readers-fetch}" "$C2")
CURL_C=$(curl_time)
# Transport alone: the base files by curl vs by TenPak's HTTP source (no cache, 4 threads).
CURL_BASE=$(curl_time base)
FB=$("$RB" fetch-base "$URL/delta" "$URL/base")
BASE_BYTES=$(cat "$M"/base/* | wc -c)

python3 - "$MODEL_BYTES" "$DELTA_BYTES" "$CURL_A" "$CURL_B" "$CURL_C" "$R1" "$R2" "$R2B" "$R3" "$W" "$KIND" "$READERS" "$CURL_BASE" "$FB" "$BASE_BYTES" "$R0" <<'EOF'
import json, sys
model, delta = int(sys.argv[1]), int(sys.argv[2])
curls = [float(x) for x in sys.argv[3:6]]
r1, r2, r2b, r3, w = (json.loads(x) for x in sys.argv[6:11])
kind, readers = sys.argv[11], sys.argv[12]
curl_base, fb, base_bytes = float(sys.argv[13]), json.loads(sys.argv[14]), int(sys.argv[15])
r0 = json.loads(sys.argv[16])
c = min(curls)
gb = lambda b, s: b / s / 1e9
mem = lambda r: (f"peak RSS {r['peak_rss_kib']/1024:.0f} MiB (anonymous {r['peak_anon_kib']/1024:.0f} MiB, "
                 f"file-backed {r['peak_file_kib']/1024:.0f} MiB: LMDB's shared read-only map)")
print(f"model {model/2**20:.0f} MiB ({kind}), delta {delta/2**20:.1f} MiB = {100*delta/model:.1f}% of the model")
print(f"curl, fine-tuned files from nginx: {c:.2f} s ({gb(model, c):.2f} GB/s), best of {len(curls)}: {curls}")
print(f"(0) local files:     tenpak {r0['seconds']:.2f} s ({gb(model, r0['seconds']):.2f} GB/s): rebuild cost without any network")
print(f"(1) nothing cached:  tenpak {r1['seconds']:.2f} s ({gb(model, r1['seconds']):.2f} GB/s) = {c / r1['seconds']:.2f}x curl's throughput; "
      f"fetched {r1['fetched_bytes']/2**20:.1f} MiB (base {r1['fetched_base']/2**20:.1f}, delta {r1['fetched_delta']/2**20:.1f}); {mem(r1)}")
print(f"(2) base cached:     tenpak {r2['seconds']:.2f} s = {c / r2['seconds']:.2f}x faster than curl; fetched {r2['fetched_bytes']/2**20:.1f} MiB "
      f"(base {r2['fetched_base']/2**20:.1f}); cache hits {r2['cache_hits']}; {mem(r2)} "
      f"(warming the base took {w['seconds']:.2f} s)")
print(f"(2b) all cached:     tenpak {r2b['seconds']:.2f} s = {c / r2b['seconds']:.2f}x curl; fetched {r2b['fetched_bytes']} bytes")
print(f"(3) {readers} readers, LMDB cache: fetched {r3['fetched_bytes']/2**20:.1f} MiB for {r3['needed_bytes']/2**20:.1f} MiB needed = "
      f"{r3['fetched_bytes']/max(1, r3['needed_bytes']):.3f}x; served {r3['served_bytes']/2**20:.0f} MiB in {r3['seconds']:.2f} s; "
      f"{mem(r3)}")
print(f"transport: base files {base_bytes/2**20:.0f} MiB: curl {curl_base:.2f} s ({gb(base_bytes, curl_base):.2f} GB/s), "
      f"tenpak HTTP source 8 MiB ranges x4 threads {fb['seconds']:.2f} s ({gb(base_bytes, fb['seconds']):.2f} GB/s) = "
      f"{curl_base / fb['seconds']:.2f}x curl; {fb['requests']} requests")
for name, r in (("0", r0), ("1", r1), ("2", r2), ("2b", r2b), ("3", r3), ("warm", w), ("fetch-base", fb)):
    print(f"raw {name}: {json.dumps(r)}")
EOF
