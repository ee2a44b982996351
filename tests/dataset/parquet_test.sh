#!/usr/bin/env bash
# Real Parquet pairs written by pyarrow (bench/dataset_parquet_pairs.py: rows appended; a column
# recomputed and one answer in ten edited): build, verify and apply bit-exact, pyarrow reads the
# rebuilt file back to the same table, the files are read as Parquet (changed snappy pages coded
# decompressed: codec 10's snappy pages), and the unchanged row groups are found in the base (the
# appended pair's delta is well under the new rows' share); the mount (when /dev/fuse is usable)
# serves the column pair bit-exact. Exits 77 (skipped) without pyarrow in
# the test virtualenv (scripts/bootstrap.sh installs tests/requirements.txt into .venv).
set -uo pipefail
T=${TENPAK_BIN:?TENPAK_BIN}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${TENPAK_VENV:-$ROOT/.venv}/bin/python
{ [ -x "$PY" ] && "$PY" -c 'import pyarrow' 2>/dev/null; } || { echo "no pyarrow in ${TENPAK_VENV:-$ROOT/.venv}"; exit 77; }
W=$(mktemp -d /tmp/tenpak-dsparquet-XXXXXX)
trap '[ -d "$W/mnt" ] && $T unmount "$W/mnt" >/dev/null 2>&1; rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$PY" "$ROOT/bench/dataset_parquet_pairs.py" "$W/pairs" 30000 || fail "pyarrow could not write the pairs"
for k in pq-append pq-column; do
  b=$W/pairs/$k/base d=$W/pairs/$k/derived
  $T dataset build "$b" "$d" -o "$W/$k.delta" --json -j2 > "$W/$k.json" || fail "$k: build"
  $T dataset verify "$W/$k.delta" --base "$b" >/dev/null || fail "$k: verify"
  $T dataset apply "$W/$k.delta" --base "$b" -o "$W/$k.out" >/dev/null || fail "$k: apply"
  cmp "$W/$k.out/data.parquet" "$d/data.parquet" || fail "$k: rebuilt file differs"
  "$PY" -c 'import sys, pyarrow.parquet as pq; a, b = (pq.read_table(p) for p in sys.argv[1:]); sys.exit(0 if a.equals(b) else 1)' \
    "$W/$k.out/data.parquet" "$d/data.parquet" || fail "$k: pyarrow reads another table"
  mode=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["files"][0]["mode"])' "$W/$k.json")
  [ "$mode" = "parquet pages" ] || fail "$k: handled as '$mode', not as Parquet pages"
done
# Appended rows are ~9% of the derived file: the delta must not be the whole file again.
ratio=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["ratio"])' "$W/pq-append.json")
"$PY" -c "import sys; sys.exit(0 if $ratio < 0.25 else 1)" || fail "pq-append: delta is $ratio of the derived file"
# One answer in ten edited and a float column recomputed: coded decompressed, the edits cost what
# they add (0.02 at 30,000 rows); as snappy bytes (chunks) the changed pages cost ~0.5 of the file.
cratio=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["ratio"])' "$W/pq-column.json")
"$PY" -c "import sys; sys.exit(0 if $cratio < 0.1 else 1)" || fail "pq-column: delta is $cratio of the derived file"
# Through the mount (snappy pages decoded by the daemon): the last page first, then the whole file.
mounted="no /dev/fuse"
if [ -c /dev/fuse ]; then
  mkdir -p "$W/mnt"
  if TENPAK_CACHE_DIR=$W/cache $T mount "$W/pq-column.delta" "$W/mnt" --log "$W/m.log" >/dev/null; then
    d=$W/pairs/pq-column/derived/data.parquet
    cmp <(tail -c 200000 "$W/mnt/data.parquet") <(tail -c 200000 "$d") || fail "mount: pq-column tail differs"
    cmp "$W/mnt/data.parquet" "$d" || fail "mount: pq-column differs"
    $T unmount "$W/mnt" >/dev/null
    mounted="mounted pq-column bit-exact"
  elif grep -q fuse "$W/m.log" 2>/dev/null; then
    mounted="mount skipped: $(head -c 200 "$W/m.log")"
  else
    fail "mount"
  fi
fi
echo "ok: parquet pairs round-trip (pq-append ratio $ratio, pq-column ratio $cratio; $mounted)"
