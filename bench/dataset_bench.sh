#!/usr/bin/env bash
# Dataset deltas against generic tools, side by side in one run.
#
#   bench/dataset_bench.sh [BUILD_DIR] [SIZE_MB...]      (default: build-dataset 64)
#
# Pairs: GSM8K test -> test_socratic (../shared/data/datasets/gsm8k, skipped when absent), the
# generated revisions of `tenpak fixture ds-*` at each SIZE_MB (base size), and two real Parquet pairs
# written by pyarrow (bench/dataset_parquet_pairs.py; skipped without pyarrow in the test venv). For
# every pair, columns are the delta size as a fraction of the derived set (smaller is better):
#   zstd -19 (alone), zstd -19 --long=31 --patch-from=BASE, xdelta3 -9 -s BASE, CDC dedup against the
#   base (64 KiB average chunks, new chunks zstd -19: bench/dataset_cdc_baseline.cc), and TenPak
#   (`tenpak dataset build -j1`, default level 19, and --fast), container overhead included
#   (tenpak.idx + tenpak.dat). Multi-file sets are concatenated (sorted names) for the baselines.
# Throughput: MB of derived set per CPU-second (user + sys of the process, /usr/bin/time; wall time
# on this shared machine says more about the neighbours): TenPak build (-j1), rebuild to disk
# (`dataset apply -j1`) and in memory (`dataset verify -j1`); apply and verify include the sha256 of
# every output and the start of the process; the base's sha256 comes from the hash cache (filled by
# a verify before the timed runs), as for a user who rebuilds again. Apply and verify run REPS times
# (default 10) and the CPU time is their sum: /usr/bin/time counts in 10 ms steps, a 16 MiB rebuild
# takes 20-60 ms.
# Environment: BASELINES (default "zstd patchfrom xdelta3 cdc"; a left-out one prints "-"),
# KINDS (default every ds-* fixture), PAIRS (default "gsm8k fixtures parquet"), REPS, FAST=0 skips
# --fast, PARQUET_ROWS (200000), SVG_OUT (default dataset_bench.svg: size fraction per pair, TenPak
# and each baseline, log scale), TSV_OUT (the same numbers, tab-separated).
set -euo pipefail
BUILD=${1:-build-dataset}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(64)
BASELINES=${BASELINES:-zstd patchfrom xdelta3 cdc}
KINDS=${KINDS:-ds-append ds-delete ds-edit ds-reorder ds-addfield ds-shards ds-csv ds-conll}
PAIRS=${PAIRS:-gsm8k fixtures parquet}
FAST=${FAST:-1}
REPS=${REPS:-10}
SVG_OUT=${SVG_OUT:-dataset_bench.svg}
TENPAK=$BUILD/tenpak
CDC=$BUILD/bench/dataset_cdc_baseline
for t in "$TENPAK" "$CDC"; do [ -x "$t" ] || { echo "missing $t (ninja -C $BUILD tenpak dataset_cdc_baseline)"; exit 2; }; done
WORK=$(mktemp -d /tmp/tenpak-dsbench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DATA=$(dirname "$0")/../../shared/data/datasets/gsm8k
TSV=${TSV_OUT:-$WORK/results.tsv}
: > "$TSV"

size_of() { stat -c %s "$1"; }
cat_dir() { if [ -d "$1" ]; then find "$1" -type f | LC_ALL=C sort | xargs cat; else cat "$1"; fi; }
has() { [[ " $BASELINES " == *" $1 "* ]]; }
# CPU seconds (user + sys) of a command, its stdout discarded.
cpu() { /usr/bin/time -f "%U %S" -o "$WORK/time" "$@" >/dev/null; awk '{ printf "%.3f", $1 + $2 }' "$WORK/time"; }
# The same per run over REPS runs of it (time counts the waited-for children); `rm -rf OUT` between runs
# when a second argument names the output the command writes.
cpu_reps() {
  local out=$1; shift
  /usr/bin/time -f "%U %S" -o "$WORK/time" bash -c 'out=$1; n=$2; shift 2; for ((i = 0; i < n; i++)); do
    [ -n "$out" ] && rm -rf "$out"; "$@" >/dev/null || exit 1; done' _ "$out" "$REPS" "$@"
  awk -v n="$REPS" '{ printf "%.4f", ($1 + $2) / n }' "$WORK/time"
}

printf '| pair | derived MB | zstd -19 | patch-from | xdelta3 -9 | CDC 64K | TenPak | TenPak --fast | TenPak / best | build MB/cpu-s | build --fast MB/cpu-s | apply MB/cpu-s | verify MB/cpu-s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'

bench_pair() {
  local name=$1 base=$2 derived=$3 w=$WORK/$1
  mkdir -p "$w"
  cat_dir "$base" > "$w/base.cat"
  cat_dir "$derived" > "$w/derived.cat"
  local n; n=$(size_of "$w/derived.cat")
  local z19=- pf=- xd=- cdc=-
  has zstd && z19=$(zstd -q -19 -T1 -c "$w/derived.cat" | wc -c)
  has patchfrom && pf=$(zstd -q -19 -T1 --long=31 --patch-from="$w/base.cat" -c "$w/derived.cat" 2>/dev/null | wc -c)
  has xdelta3 && { xdelta3 -9 -e -f -s "$w/base.cat" "$w/derived.cat" "$w/x.vcdiff"; xd=$(size_of "$w/x.vcdiff"); }
  has cdc && cdc=$($CDC "$w/base.cat" "$w/derived.cat" 19 | cut -d' ' -f1)
  rm -f "$w/base.cat" "$w/derived.cat" "$w/x.vcdiff"
  local tb tf=- ta tv tp tpf=-
  tb=$(cpu $TENPAK dataset build "$base" "$derived" -o "$w/d" -j1)
  tp=$(( $(size_of "$w/d/tenpak.idx") + $(size_of "$w/d/tenpak.dat") ))
  if [ "$FAST" = 1 ]; then
    tf=$(cpu $TENPAK dataset build "$base" "$derived" -o "$w/df" -j1 --fast)
    tpf=$(( $(size_of "$w/df/tenpak.idx") + $(size_of "$w/df/tenpak.dat") ))
    rm -rf "$w/df"
  fi
  $TENPAK dataset verify "$w/d" --base "$base" -j1 >/dev/null  # the base's sha256 into the hash cache
  ta=$(cpu_reps "$w/out" $TENPAK dataset apply "$w/d" --base "$base" -o "$w/out" -j1)
  cmp <(cat_dir "$w/out") <(cat_dir "$derived") || { echo "MISMATCH $name"; exit 3; }
  rm -rf "$w/out"
  tv=$(cpu_reps "" $TENPAK dataset verify "$w/d" --base "$base" -j1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$z19" "$pf" "$xd" "$cdc" "$tp" "$tpf" >> "$TSV"
  awk -v name="$name" -v n="$n" -v z="$z19" -v pf="$pf" -v xd="$xd" -v c="$cdc" -v tp="$tp" -v tpf="$tpf" \
      -v tb="$tb" -v tf="$tf" -v ta="$ta" -v tv="$tv" '
    function fr(v) { return v == "-" ? "-" : sprintf("%.4f", v / n) }
    function rate(t) { return t == "-" ? "-" : (t > 0 ? sprintf("%.0f", n / 1e6 / t) : "inf") }
    BEGIN {
      best = ""; split(z " " pf " " xd " " c, b, " ")
      for (i in b) if (b[i] != "-" && (best == "" || b[i] + 0 < best + 0)) best = b[i]
      printf "| %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, n / 1e6,
        fr(z), fr(pf), fr(xd), fr(c), fr(tp), fr(tpf), best == "" ? "-" : sprintf("%.2f", tp / best),
        rate(tb), rate(tf), rate(ta), rate(tv) }'
  rm -rf "$w"
}

if [[ " $PAIRS " == *" gsm8k "* ]]; then
  if [ -f "$DATA/test.jsonl" ]; then
    mkdir -p "$WORK/gsm8k-in/base" "$WORK/gsm8k-in/derived"
    cp "$DATA/test.jsonl" "$WORK/gsm8k-in/base/data.jsonl"
    cp "$DATA/test_socratic.jsonl" "$WORK/gsm8k-in/derived/data.jsonl"
    bench_pair gsm8k "$WORK/gsm8k-in/base" "$WORK/gsm8k-in/derived"
    rm -rf "$WORK/gsm8k-in"
  else
    echo "(gsm8k skipped: $DATA absent)"
  fi
fi
if [[ " $PAIRS " == *" fixtures "* ]]; then
  for mb in "${SIZES[@]}"; do
    for k in $KINDS; do
      $TENPAK fixture "$k" "$WORK/fx" --size-mb "$mb" >/dev/null
      bench_pair "$k-${mb}M" "$WORK/fx/base" "$WORK/fx/derived"
      rm -rf "$WORK/fx"
    done
  done
fi
# Real Parquet pairs (rows appended; a column recomputed and one answer in ten edited), written by
# pyarrow from the test virtualenv (bench/dataset_parquet_pairs.py, PARQUET_ROWS rows in the base).
if [[ " $PAIRS " == *" parquet "* ]]; then
  PY=${TENPAK_VENV:-.venv}/bin/python
  if [ -x "$PY" ] && "$PY" -c 'import pyarrow' 2>/dev/null; then
    "$PY" "$(dirname "$0")/dataset_parquet_pairs.py" "$WORK/pq" "${PARQUET_ROWS:-200000}"
    for k in pq-append pq-column; do bench_pair "$k" "$WORK/pq/$k/base" "$WORK/pq/$k/derived"; done
    rm -rf "$WORK/pq"
  else
    echo "(parquet skipped: no pyarrow in ${TENPAK_VENV:-.venv})"
  fi
fi
python3 "$(dirname "$0")/dataset_bench_svg.py" "$TSV" "$SVG_OUT" && echo "(plot: $SVG_OUT)"
