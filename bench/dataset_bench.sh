#!/usr/bin/env bash
# Dataset deltas against generic tools, side by side in one run.
#
#   bench/dataset_bench.sh [BUILD_DIR] [SIZE_MB...]      (default: build-dataset 64)
#
# Pairs: GSM8K test -> test_socratic (../shared/data/datasets/gsm8k, skipped when absent) and the
# generated revisions of `tenpak fixture ds-*` at each SIZE_MB (base size). For every pair, columns
# are the delta size as a fraction of the derived set (smaller is better):
#   zstd -19 (alone), zstd -19 --long=31 --patch-from=BASE, xdelta3 -9 -s BASE, CDC dedup against the
#   base (64 KiB average chunks, new chunks zstd -19: bench/dataset_cdc_baseline.cc), and TenPak
#   (`tenpak dataset build -j1`, default level 19, and --fast), container overhead included
#   (tenpak.idx + tenpak.dat). Multi-file sets are concatenated (sorted names) for the baselines.
# Throughput, MB of derived set per second on one core: TenPak build (-j1) and rebuild
# (`tenpak dataset apply -j1` to disk, and `verify -j1` in memory).
set -euo pipefail
BUILD=${1:-build-dataset}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(64)
TENPAK=$BUILD/tenpak
CDC=$BUILD/bench/dataset_cdc_baseline
for t in "$TENPAK" "$CDC"; do [ -x "$t" ] || { echo "missing $t (ninja -C $BUILD tenpak dataset_cdc_baseline)"; exit 2; }; done
WORK=$(mktemp -d /tmp/tenpak-dsbench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DATA=$(dirname "$0")/../../shared/data/datasets/gsm8k

now() { date +%s.%N; }
size_of() { stat -c %s "$1"; }
cat_dir() { if [ -d "$1" ]; then find "$1" -type f | LC_ALL=C sort | xargs cat; else cat "$1"; fi; }

printf '| pair | derived MB | zstd -19 | patch-from | xdelta3 -9 | CDC 64K | TenPak | TenPak --fast | TenPak / best | build MB/s | build --fast MB/s | apply MB/s | verify MB/s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'

bench_pair() {
  local name=$1 base=$2 derived=$3 w=$WORK/$1
  mkdir -p "$w"
  cat_dir "$base" > "$w/base.cat"
  cat_dir "$derived" > "$w/derived.cat"
  local n; n=$(size_of "$w/derived.cat")
  local z19 pf xd cdc
  z19=$(zstd -q -19 -T1 -c "$w/derived.cat" | wc -c)
  pf=$(zstd -q -19 -T1 --long=31 --patch-from="$w/base.cat" -c "$w/derived.cat" | wc -c)
  xdelta3 -9 -e -f -s "$w/base.cat" "$w/derived.cat" "$w/x.vcdiff"; xd=$(size_of "$w/x.vcdiff")
  cdc=$($CDC "$w/base.cat" "$w/derived.cat" 19 | cut -d' ' -f1)
  rm -f "$w/base.cat" "$w/derived.cat" "$w/x.vcdiff"
  local t0 t1 tb tf ta tv
  t0=$(now); $TENPAK dataset build "$base" "$derived" -o "$w/d" -j1 >/dev/null; t1=$(now); tb=$(echo "$t1 - $t0" | bc -l)
  t0=$(now); $TENPAK dataset build "$base" "$derived" -o "$w/df" -j1 --fast >/dev/null; t1=$(now); tf=$(echo "$t1 - $t0" | bc -l)
  t0=$(now); $TENPAK dataset apply "$w/d" --base "$base" -o "$w/out" -j1 >/dev/null; t1=$(now); ta=$(echo "$t1 - $t0" | bc -l)
  cmp <(cat_dir "$w/out") <(cat_dir "$derived") || { echo "MISMATCH $name"; exit 3; }
  t0=$(now); $TENPAK dataset verify "$w/d" --base "$base" -j1 >/dev/null; t1=$(now); tv=$(echo "$t1 - $t0" | bc -l)
  local tp tpf
  tp=$(( $(size_of "$w/d/tenpak.idx") + $(size_of "$w/d/tenpak.dat") ))
  tpf=$(( $(size_of "$w/df/tenpak.idx") + $(size_of "$w/df/tenpak.dat") ))
  local best=$z19
  for v in $pf $xd $cdc; do [ "$v" -lt "$best" ] && best=$v; done
  awk -v name="$name" -v n="$n" -v z="$z19" -v pf="$pf" -v xd="$xd" -v c="$cdc" -v tp="$tp" -v tpf="$tpf" -v best="$best" \
      -v tb="$tb" -v tf="$tf" -v ta="$ta" -v tv="$tv" 'BEGIN {
    printf "| %s | %.1f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.2f | %.1f | %.1f | %.0f | %.0f |\n", name, n/1e6,
      z/n, pf/n, xd/n, c/n, tp/n, tpf/n, tp/best, n/1e6/tb, n/1e6/tf, n/1e6/ta, n/1e6/tv }'
  rm -rf "$w"
}

if [ -f "$DATA/test.jsonl" ]; then
  mkdir -p "$WORK/gsm8k-in/base" "$WORK/gsm8k-in/derived"
  cp "$DATA/test.jsonl" "$WORK/gsm8k-in/base/data.jsonl"
  cp "$DATA/test_socratic.jsonl" "$WORK/gsm8k-in/derived/data.jsonl"
  bench_pair gsm8k "$WORK/gsm8k-in/base" "$WORK/gsm8k-in/derived"
else
  echo "(gsm8k skipped: $DATA absent)"
fi
for mb in "${SIZES[@]}"; do
  for k in ds-append ds-delete ds-edit ds-reorder ds-addfield ds-shards ds-csv ds-conll; do
    $TENPAK fixture "$k" "$WORK/fx" --size-mb "$mb" >/dev/null
    bench_pair "$k-${mb}M" "$WORK/fx/base" "$WORK/fx/derived"
    rm -rf "$WORK/fx"
  done
done
# Real Parquet pairs (rows appended; a column recomputed and one answer in ten edited), written by
# pyarrow from the test virtualenv (bench/dataset_parquet_pairs.py, PARQUET_ROWS rows in the base).
PY=${TENPAK_VENV:-.venv}/bin/python
if [ -x "$PY" ] && "$PY" -c 'import pyarrow' 2>/dev/null; then
  "$PY" "$(dirname "$0")/dataset_parquet_pairs.py" "$WORK/pq" "${PARQUET_ROWS:-200000}"
  for k in pq-append pq-column; do bench_pair "$k" "$WORK/pq/$k/base" "$WORK/pq/$k/derived"; done
  rm -rf "$WORK/pq"
else
  echo "(parquet skipped: no pyarrow in ${TENPAK_VENV:-.venv})"
fi
