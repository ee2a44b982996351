#!/usr/bin/env bash
# Dataset deltas through the mount: alone, in a catalog beside another delta, lazily (a read of one
# frame rebuilds only that frame), bit-exact; a corrupt frame gives EIO, never wrong bytes.
# Exits 77 (skipped) without a usable /dev/fuse.
set -uo pipefail
T=${TENPAK_BIN:?TENPAK_BIN}
[ -c /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
W=$(mktemp -d /tmp/tenpak-dsmount-XXXXXX)
cleanup() { for m in "$W"/mnt*; do [ -d "$m" ] && $T unmount "$m" >/dev/null 2>&1; done; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
export TENPAK_CACHE_DIR=$W/cache
$T fixture ds-edit "$W/a" --size-mb 4 >/dev/null || fail fixture
$T fixture ds-shards "$W/b" --size-mb 3 >/dev/null || fail fixture
# 0.8 MB of new rows: frames with word-coded literals (codec 10 method bit 4).
$T fixture ds-append "$W/c" --size-mb 8 >/dev/null || fail fixture
mkdir -p "$W/cat"
$T dataset build "$W/a/base" "$W/a/derived" -o "$W/cat/edit" >/dev/null || fail build a
$T dataset build "$W/b/base" "$W/b/derived" -o "$W/cat/nested/shards" >/dev/null || fail build b
$T dataset build "$W/c/base" "$W/c/derived" -o "$W/cat/append" >/dev/null || fail build c
$T dataset build "$W/c/base" "$W/c/derived" -o "$W/append-nowords" --no-words >/dev/null || fail build c --no-words
[ "$(stat -c %s "$W/cat/append/tenpak.dat")" -lt "$(stat -c %s "$W/append-nowords/tenpak.dat")" ] ||
  fail "ds-append: no frame word-coded (not smaller than --no-words)"
mkdir -p "$W/mnt1" "$W/mnt2"
# Alone.
$T mount "$W/cat/edit" "$W/mnt1" --log "$W/m1.log" >/dev/null || { grep -q "fuse" "$W/m1.log" 2>/dev/null && exit 77; fail mount; }
# One frame read: one frame rebuilt.
dd if="$W/mnt1/data.jsonl" of=/dev/null bs=4096 count=1 skip=600 2>/dev/null || fail read
rebuilt=$($T stats "$W/mnt1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames_rebuilt"])' 2>/dev/null || echo "?")
cmp "$W/mnt1/data.jsonl" "$W/a/derived/data.jsonl" || fail "mounted bytes differ"
$T unmount "$W/mnt1" >/dev/null
# In a catalog, beside another delta.
$T mount "$W/cat" "$W/mnt2" --log "$W/m2.log" >/dev/null || fail mount catalog
cmp "$W/mnt2/edit/data.jsonl" "$W/a/derived/data.jsonl" || fail "catalog: edit differs"
for f in "$W/b/derived"/*; do cmp "$W/mnt2/nested/shards/$(basename "$f")" "$f" || fail "catalog: $f differs"; done
# The last frame first, alone (new rows, word-coded), then the whole file.
cmp <(tail -c 4096 "$W/mnt2/append/data.jsonl") <(tail -c 4096 "$W/c/derived/data.jsonl") || fail "append tail differs"
cmp "$W/mnt2/append/data.jsonl" "$W/c/derived/data.jsonl" || fail "catalog: word-coded append differs"
$T unmount "$W/mnt2" >/dev/null
# A corrupt frame: EIO on the frame, the rest still served.
python3 - "$W/cat/edit/tenpak.dat" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x5A; open(p, 'wb').write(b)
PY
rm -rf "$W/cache"
$T mount "$W/cat/edit" "$W/mnt1" --log "$W/m3.log" --no-cache >/dev/null || fail mount corrupt
if cat "$W/mnt1/data.jsonl" > "$W/read.out" 2>"$W/read.err"; then fail "corrupt delta read without error"; fi
grep -q "Input/output error" "$W/read.err" || fail "expected EIO, got: $(cat "$W/read.err")"
$T unmount "$W/mnt1" >/dev/null
echo "ok (frames rebuilt after a 4 KiB read: $rebuilt)"
