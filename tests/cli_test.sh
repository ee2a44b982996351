#!/usr/bin/env bash
# End-to-end checks of the tenpak command line on generated fixtures:
# every fixture kind round-trips bit for bit, errors give the documented
# exit codes and leave no partial output.
set -u
BIN=${1:?usage: cli_test.sh TENPAK_BIN}
W=$(mktemp -d /tmp/tenpak-cli-XXXXXX)
trap 'umount "$W/small" 2>/dev/null; rm -rf "$W"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/support/checks.sh"  # ok, bad, expect_rc

for kind in bf16 fp32 frozen lora vocab dtype sharded; do
  "$BIN" fixture "$kind" "$W/$kind" --size-mb 3 >/dev/null || { bad "fixture $kind"; continue; }
  expect_rc 0 "build $kind" "$BIN" delta build "$W/$kind/base" "$W/$kind/finetune" -o "$W/$kind/delta" --json
  expect_rc 0 "verify $kind" "$BIN" delta verify "$W/$kind/delta" --base "$W/$kind/base"
  expect_rc 0 "apply $kind" "$BIN" delta apply "$W/$kind/delta" --base "$W/$kind/base" -o "$W/$kind/out"
  if diff -r "$W/$kind/finetune" "$W/$kind/out" >/dev/null; then ok "$kind rebuilt bit-identical"; else bad "$kind differs"; fi
  expect_rc 0 "inspect $kind" "$BIN" delta inspect "$W/$kind/delta" --tensors --json
  expect_rc 0 "estimate $kind" "$BIN" delta estimate "$W/$kind/base" "$W/$kind/finetune" --json
done

# TENPAK_SIMD caps the codec's SIMD: every path writes the same delta, and
# rebuilds it (on CPUs without a path, the cap falls back to what there is).
for simd in avx2 scalar; do
  for kind in bf16 fp32; do
    TENPAK_SIMD=$simd "$BIN" delta build "$W/$kind/base" "$W/$kind/finetune" -o "$W/$kind/delta-$simd" >/dev/null 2>&1
    if cmp -s "$W/$kind/delta/tenpak.dat" "$W/$kind/delta-$simd/tenpak.dat" && cmp -s "$W/$kind/delta/tenpak.idx" "$W/$kind/delta-$simd/tenpak.idx"; then
      ok "TENPAK_SIMD=$simd builds the same $kind delta"
    else
      bad "TENPAK_SIMD=$simd builds another $kind delta"
    fi
    expect_rc 0 "TENPAK_SIMD=$simd verify $kind" env TENPAK_SIMD=$simd "$BIN" delta verify "$W/$kind/delta" --base "$W/$kind/base"
  done
done

# Savings on the BF16 pair are real (delta smaller than 0.8 of the fine-tune).
"$BIN" delta inspect "$W/bf16/delta" --json > "$W/i.json"
python3 -c "import json,sys; r=json.load(open('$W/i.json'))['ratio']; sys.exit(0 if r < 0.8 else 1)" \
  && ok "bf16 delta ratio below 0.8" || bad "bf16 delta ratio not below 0.8"
# The frozen pair has bit-identical tensors that cost only index entries.
"$BIN" delta build "$W/frozen/base" "$W/frozen/finetune" -o "$W/frozen/d2" --json > "$W/b.json"
python3 -c "import json,sys; sys.exit(0 if json.load(open('$W/b.json'))['tensors_identical'] > 0 else 1)" \
  && ok "frozen layers are bit-identical tensors" || bad "frozen: no identical tensors"

# Errors and exit codes.
expect_rc 2 "missing argument is a usage error" "$BIN" delta build
expect_rc 3 "wrong base refused" "$BIN" delta apply "$W/bf16/delta" --base "$W/fp32/base" -o "$W/wrong"
[ ! -e "$W/wrong" ] && ok "no output after wrong base" || bad "output written after wrong base"
expect_rc 6 "existing output refused" "$BIN" delta apply "$W/bf16/delta" --base "$W/bf16/base" -o "$W/bf16/out"
printf 'garbage' > "$W/bad.safetensors"
expect_rc 4 "corrupt safetensors refused" "$BIN" delta build "$W/bf16/base" "$W/bad.safetensors" -o "$W/bad"
grep -q "bad.safetensors" "$W/err.txt" && ok "error names the file" || bad "error does not name the file"
expect_rc 2 "not a delta" "$BIN" delta inspect "$W/bf16/base"
# A delta never records credentials: a base location with user:password@ is refused (6), not written.
expect_rc 6 "base location with credentials refused" "$BIN" delta build "$W/bf16/base" "$W/bf16/finetune" -o "$W/credloc" --base-location http://u:s3cretpw@127.0.0.1:1/base
[ ! -e "$W/credloc" ] && ! grep -q s3cretpw "$W/err.txt" && ok "no delta, no password in the message" || bad "credentials: delta written or password shown"
# An unreachable base is unavailable (7), not a wrong base (3, as before).
expect_rc 7 "unreachable base (connection refused)" "$BIN" delta verify "$W/bf16/delta" --base http://127.0.0.1:1/base
expect_rc 7 "unreachable base (connection refused), apply" "$BIN" delta apply "$W/bf16/delta" --base http://127.0.0.1:1/base -o "$W/unreach"
# TMPDIR naming no directory, and an empty output path: remote inputs are downloaded next to the output
# (estimate: in TMPDIR). Each aborted with an uncaught std::filesystem error (exit 134) before: even an
# estimate of local inputs asked for the temporary directory.
printf '{"a":1}\n{"a":2}\n' > "$W/ds-a.jsonl"; printf '{"a":1}\n{"a":3}\n' > "$W/ds-b.jsonl"
expect_rc 0 "delta estimate of local models, TMPDIR not a directory" env TMPDIR="$W/no-such-dir" "$BIN" delta estimate "$W/bf16/base" "$W/bf16/finetune" --json
expect_rc 0 "dataset estimate of local files, TMPDIR not a directory" env TMPDIR="$W/no-such-dir" "$BIN" dataset estimate "$W/ds-a.jsonl" "$W/ds-b.jsonl" --json
expect_rc 1 "delta estimate of a remote base, TMPDIR not a directory" env TMPDIR="$W/no-such-dir" "$BIN" delta estimate http://127.0.0.1:1/base "$W/bf16/finetune"
grep -q "TMPDIR" "$W/err.txt" && ok "the error names TMPDIR" || bad "the error does not name TMPDIR: $(cat "$W/err.txt")"
expect_rc 1 "dataset estimate of a remote file, TMPDIR not a directory" env TMPDIR="$W/no-such-dir" "$BIN" dataset estimate http://127.0.0.1:1/a.jsonl "$W/ds-b.jsonl"
# An unreachable origin (connection refused) is unavailable, 7 (README), from a download or a listing
# as from a base: an error, not an abort. Downloads and listings exited 1 before.
for cmd in "delta build http://127.0.0.1:1/base $W/bf16/finetune" "dataset build http://127.0.0.1:1/a.jsonl $W/ds-b.jsonl" \
           "dataset build http://127.0.0.1:1/dir/ $W/ds-b.jsonl"; do
  for out in "" "$W/unreach-out"; do
    $BIN $cmd -o "$out" >/dev/null 2>"$W/err.txt"; rc=$?
    if [ "$rc" -eq 7 ] && grep -q "^tenpak: error: .*127.0.0.1:1" "$W/err.txt"; then ok "$cmd -o '$out': unavailable (rc 7)"
    else bad "$cmd -o '$out': rc $rc, want 7: $(tail -2 "$W/err.txt")"; fi
  done
  [ ! -e "$W/unreach-out" ] && ok "$cmd: no output" || bad "$cmd: output left behind"
done

# A malformed .tenpak/stats.json (a field of another type): a clear error, no abort (both aborted with
# an uncaught JSON type error before).
mkdir -p "$W/fake/.tenpak"
for bad_stats in '{"pid":"x"}' '[1,2]' '{"pid":1,"models":"a"}'; do
  printf '%s' "$bad_stats" > "$W/fake/.tenpak/stats.json"
  expect_rc 4 "stats on malformed stats.json $bad_stats" "$BIN" stats "$W/fake"
  expect_rc 2 "unmount of a non-mount with malformed stats.json $bad_stats" "$BIN" unmount "$W/fake"
done

# Disk full while writing: a 1 MiB tmpfs (needs root; skipped otherwise).
mkdir -p "$W/small"
if mount -t tmpfs -o size=1m tmpfs "$W/small" 2>/dev/null; then
  # Workers, and -j1 (the rebuild inline on the calling thread, 00ab2ae).
  for j in "" "-j1"; do
    expect_rc 5 "disk full reported $j" "$BIN" delta apply "$W/bf16/delta" --base "$W/bf16/base" -o "$W/small/out" $j
    [ ! -e "$W/small/out" ] && ok "no partial output under the final name $j" || bad "partial output left $j"
    [ -z "$(ls -A "$W/small")" ] && ok "staging removed $j" || bad "staging left behind $j: $(ls "$W/small")"
  done
  umount "$W/small"
else
  echo "skip: disk-full test needs root to mount a tmpfs"
fi

# A file name that is not UTF-8: every --json output names it with U+FFFD (they aborted with an
# uncaught JSON type error: build --json after writing the delta, inspect --json).
mkdir -p "$W/u8" && cp -r "$W/bf16/base" "$W/bf16/finetune" "$W/u8/" && echo x > "$W/u8/finetune/n"$'\xff'".txt"
expect_rc 0 "build --json, non-UTF-8 name" "$BIN" delta build "$W/u8/base" "$W/u8/finetune" -o "$W/u8/delta" --json
expect_rc 0 "inspect --json, non-UTF-8 name" "$BIN" delta inspect "$W/u8/delta" --json
if grep -q "n"$'\xef\xbf\xbd'".txt" "$W/out.txt"; then ok "inspect --json shows the name with U+FFFD"; else bad "inspect --json: name missing"; fi
expect_rc 0 "apply --json, non-UTF-8 name" "$BIN" delta apply "$W/u8/delta" --base "$W/u8/base" -o "$W/u8/out" --json
if cmp -s "$W/u8/finetune/n"$'\xff'".txt" "$W/u8/out/n"$'\xff'".txt"; then ok "non-UTF-8 name rebuilt"; else bad "non-UTF-8 name not rebuilt"; fi

# A mountpoint and a cache directory that are not UTF-8: the mount daemon reported its start
# with an uncaught JSON type error (it died, leaving a dead FUSE mount), and unmount --json and
# cache stats --json aborted; now named with U+FFFD (needs FUSE; skipped otherwise).
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
  mp="$W/mnt"$'\xff'; cd8="$W/cache"$'\xff'
  mkdir -p "$mp"
  expect_rc 0 "mount at a non-UTF-8 mountpoint, --json" "$BIN" mount "$W/bf16/delta" "$mp" --base "$W/bf16/base" --cache-dir "$cd8" --log "$W/m8.log" --json --warm-mb 0
  if cmp -s "$mp/config.json" "$W/bf16/finetune/config.json"; then ok "served at a non-UTF-8 mountpoint"; else bad "not served at a non-UTF-8 mountpoint"; fi
  # config.json is copy_base, which the cache does not store (frame_cache_policy_stores), and
  # the head warm-up (off here: --warm-mb 0) is background work that may not have run before
  # the unmount; the entries come from reading the model, whose sub_ctx/zstd frames are
  # stored before the read returns.
  if cmp -s "$mp/model.safetensors" "$W/bf16/finetune/model.safetensors"; then ok "model served at a non-UTF-8 mountpoint"; else bad "model not served at a non-UTF-8 mountpoint"; fi
  expect_rc 0 "unmount --json, non-UTF-8 mountpoint" "$BIN" unmount "$mp" --json
  grep -q "mnt"$'\xef\xbf\xbd' "$W/out.txt" && ok "unmount --json names it with U+FFFD" || bad "unmount --json: mountpoint missing"
  expect_rc 0 "cache stats --json, non-UTF-8 directory" "$BIN" cache stats --json --cache-dir "$cd8"
  grep -q '"entries":[1-9]' "$W/out.txt" && ok "cache stats counts the mount's entries" || bad "cache stats: $(cat "$W/out.txt")"
  fusermount3 -u "$mp" 2>/dev/null
else
  echo "skip: non-UTF-8 mountpoint test needs FUSE"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
