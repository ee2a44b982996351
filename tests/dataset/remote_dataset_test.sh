#!/usr/bin/env bash
# Remote BASE and DERIVED for `dataset build`, against a loopback nginx (127.0.0.1 only): an http URL
# of a directory listing (autoindex, with a subfolder), an http URL of one file, and
# hf://datasets/ORG/NAME[@REV][/PATH] with HF_ENDPOINT at the nginx (a static tree listing as the
# hub's API answers, files under datasets/ORG/NAME/resolve/REV/). Each delta verifies bit-exact
# against the local base and, by default, from the base location it recorded (the resolve URL); the
# downloads are gone afterwards; a missing file and a URL with credentials are refused, and each HTTP
# status class gives README's exit code, from a file, a listing or the hub's API. Exits 77 (skipped)
# without nginx.
set -uo pipefail
T=${TENPAK_BIN:?TENPAK_BIN}
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null) || { echo "no nginx (package nginx-light)"; exit 77; }
W=$(mktemp -d /tmp/tenpak-dsremote-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
$T fixture ds-shards "$W/fx" --size-mb 2 >/dev/null || fail fixture
$T fixture ds-edit "$W/fe" --size-mb 1 >/dev/null || fail fixture
R=$W/root
mkdir -p "$R/sets/base/sub" "$R/sets/derived" "$R/one" "$R/datasets/acme/qa/resolve/v2/data" \
  "$R/api/datasets/acme/qa/tree" "$W/tmp" "$W/ngtmp"
cp "$W/fx/base/"* "$R/sets/base/"; echo "notes" > "$R/sets/base/sub/README.txt"
cp -r "$W/fx/derived/"* "$R/sets/derived/"
cp "$W/fe/base/data.jsonl" "$R/one/base.jsonl"; cp "$W/fe/derived/data.jsonl" "$R/one/derived.jsonl"
cp "$W/fe/base/data.jsonl" "$R/datasets/acme/qa/resolve/v2/data/train.jsonl"
# The hub's tree API (GET /api/datasets/ORG/NAME/tree/REV?recursive=true): a JSON list of entries.
size=$(stat -c %s "$W/fe/base/data.jsonl")
printf '[{"type":"directory","path":"data"},{"type":"file","path":"data/train.jsonl","size":%s},{"type":"file","path":".gitattributes","size":1}]' \
  "$size" > "$R/api/datasets/acme/qa/tree/v2"
echo x > "$R/datasets/acme/qa/resolve/v2/.gitattributes"
for attempt in 1 2 3 4 5; do
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$W/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $W/nginx.pid; error_log $W/error.log warn;
events { worker_connections 64; }
http { access_log off; default_type application/octet-stream;
  client_body_temp_path $W/ngtmp/b; proxy_temp_path $W/ngtmp/p; fastcgi_temp_path $W/ngtmp/f; uwsgi_temp_path $W/ngtmp/u; scgi_temp_path $W/ngtmp/s;
  server { listen 127.0.0.1:$PORT; root $R; autoindex on;
    location /s404/ { return 404; } location /s403/ { return 403; } location /s429/ { return 429; }
    location /s503/ { return 503; } location /s300/ { return 300; } location /api/datasets/acme/down/ { return 503; } } }
CONF
  "$NGINX" -e "$W/error.log" -p "$W" -c "$W/nginx.conf" >/dev/null 2>&1 &
  PID=$!
  for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill "$PID" 2>/dev/null; PID=
done
[ -n "$PID" ] || fail "nginx did not start: $(cat "$W/error.log")"
U=http://127.0.0.1:$PORT
export HF_ENDPOINT=$U TMPDIR=$W/tmp
mkdir -p "$W/out"
# 1. Directory listings (a subfolder in the base, four shards in the derived set).
$T dataset build "$U/sets/base/" "$U/sets/derived/" -o "$W/out/listing" --json > "$W/listing.json" || fail "build from listings"
$T dataset verify "$W/out/listing" --base "$R/sets/base" >/dev/null || fail "listing: verify against the local base"
$T dataset verify "$W/out/listing" >/dev/null || fail "listing: verify from the recorded base URL"
$T dataset inspect "$W/out/listing" --json | grep -q "$U/sets/base/" || fail "listing: base URL not recorded"
$T dataset apply "$W/out/listing" -o "$W/applied" >/dev/null || fail "listing: apply"
diff -r "$W/applied" "$R/sets/derived" >/dev/null || fail "listing: applied set differs"
python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if len(j["files"]) == 4 else 1)' "$W/listing.json" \
  || fail "listing: expected the 4 derived shards"
# 2. One file each.
$T dataset build "$U/one/base.jsonl" "$U/one/derived.jsonl" -o "$W/out/one" >/dev/null || fail "build from file URLs"
$T dataset verify "$W/out/one" >/dev/null || fail "one: verify from the recorded base URL"
# 3. A hub id (revision, folder), with a local derived set.
mkdir -p "$W/hubder/data"; cp "$W/fe/derived/data.jsonl" "$W/hubder/data/train.jsonl"
$T dataset build "hf://datasets/acme/qa@v2" "$W/hubder" -o "$W/out/hub" >/dev/null || fail "build from hf://datasets"
$T dataset verify "$W/out/hub" >/dev/null || fail "hub: verify from the recorded resolve URL"
$T dataset inspect "$W/out/hub" --json | grep -q "$U/datasets/acme/qa/resolve/v2" || fail "hub: resolve URL not recorded"
# Nothing downloaded is left behind.
[ -z "$(ls -A "$W/tmp")" ] && [ -z "$(find "$W/out" -maxdepth 1 -name '.tenpak-download-*')" ] || fail "downloads left behind"
# 4. Refusals: a missing file (exit 2: not found), credentials in a base URL that would be recorded (exit 6).
# The error names the URL once (it named a file URL twice before).
once() { [ "$(grep '^tenpak: error:' "$W/err" | grep -o -F "$1" | wc -l)" -eq 1 ]; }
$T dataset build "$U/one/missing.jsonl" "$U/one/derived.jsonl" -o "$W/out/missing" >/dev/null 2>"$W/err"; rc=$?
[ $rc -eq 2 ] && once "$U/one/missing.jsonl" || fail "missing file: rc $rc, $(cat "$W/err")"
[ ! -e "$W/out/missing" ] || fail "missing file: output written"
# Every HTTP status means the same, to a file download (HttpSource, after its retries) as to a listing or
# hub API GET (errc_of_fetch_cause, README's exit codes): 4xx not found (2), 5xx and 429 unavailable
# (7), another (300) an I/O error (1); the URL named once, nothing written.
for s in 404:2 403:2 429:7 503:7 300:1; do
  code=${s%%:*} want=${s##*:}
  for url in "$U/s$code/" "$U/s$code/base.jsonl"; do
    $T dataset build "$url" "$U/one/derived.jsonl" -o "$W/out/s$code" >/dev/null 2>"$W/err"; rc=$?
    [ $rc -eq "$want" ] && once "$url" && grep -q "HTTP $code" "$W/err" && [ ! -e "$W/out/s$code" ] ||
      fail "$url answering $code: rc $rc, want $want: $(cat "$W/err")"
  done
done
$T dataset build "hf://datasets/acme/down" "$W/hubder" -o "$W/out/down" >/dev/null 2>"$W/err"; rc=$?
[ $rc -eq 7 ] && once "$U/api/datasets/acme/down/" && [ ! -e "$W/out/down" ] || fail "hub API answering 503: rc $rc, $(cat "$W/err")"
$T dataset build "http://u:secret@127.0.0.1:$PORT/one/base.jsonl" "$U/one/derived.jsonl" -o "$W/out/cred" >/dev/null 2>"$W/err"; rc=$?
[ $rc -eq 6 ] && ! grep -q secret "$W/err" && [ ! -e "$W/out/cred" ] || fail "credentials: rc $rc, $(cat "$W/err")"
echo "ok: remote data sets (listing, file URLs, hf://datasets)"
