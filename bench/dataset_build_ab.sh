#!/usr/bin/env bash
# Build throughput and delta size of two tenpak binaries on the same dataset pairs, back to back.
#
#   bench/dataset_build_ab.sh BIN_A BIN_B [SIZE_MB]      (directories holding `tenpak`; default 16)
#
# The pairs of bench/dataset_bench.sh (GSM8K when ../shared/data is there, `tenpak fixture ds-*` at
# SIZE_MB, the two Parquet pairs when the test venv has pyarrow; KINDS and PAIRS select as there). Per
# pair, `tenpak dataset build -j1` (default level) of A then B, REPS times (default 3) alternating, so
# that the load of this shared VM moves both alike; build MB of derived set per CPU-second (user + sys
# over the REPS runs, as dataset_bench.sh measures it) and the delta's bytes (tenpak.idx + tenpak.dat).
# Prints: pair | derived bytes | A bytes | B bytes | A build MB/cpu-s | B build MB/cpu-s | load.
set -euo pipefail
A=$1; B=$2; MB=${3:-16}; REPS=${REPS:-3}
KINDS=${KINDS:-ds-append ds-delete ds-edit ds-reorder ds-addfield ds-shards ds-csv ds-conll}
PAIRS=${PAIRS:-gsm8k fixtures parquet}
WORK=$(mktemp -d /tmp/tenpak-dsbab-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DATA=$(dirname "$0")/../../shared/data/datasets/gsm8k
PY=${TENPAK_VENV:-.venv}/bin/python
run_pair() {
  local name=$1 base=$2 der=$3 n i bin line
  n=$(find "$der" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  echo 0 > "$WORK/cpu-A"; echo 0 > "$WORK/cpu-B"
  for ((i = 0; i < REPS; i++)); do
    for bin in A B; do
      rm -rf "$WORK/d-$bin"
      /usr/bin/time -f "%U %S" -o "$WORK/t" "${!bin}/tenpak" dataset build "$base" "$der" -o "$WORK/d-$bin" -j1 >/dev/null
      awk -v s="$(cat "$WORK/cpu-$bin")" '{ printf "%.3f", s + $1 + $2 }' "$WORK/t" > "$WORK/cpu-$bin"
    done
  done
  line="| $name | $n"
  for bin in A B; do line="$line | $(( $(stat -c %s "$WORK/d-$bin/tenpak.idx") + $(stat -c %s "$WORK/d-$bin/tenpak.dat") ))"; done
  for bin in A B; do line="$line | $(awk -v n="$n" -v r="$REPS" '{ printf "%.0f", n / 1e6 / ($1 / r) }' "$WORK/cpu-$bin")"; done
  rm -rf "$WORK/d-A" "$WORK/d-B"
  echo "$line | $(cut -d' ' -f1 /proc/loadavg) |"
}
echo "| pair | derived bytes | A bytes | B bytes | A build MB/cpu-s | B build MB/cpu-s | load |"
echo "|---|---|---|---|---|---|---|"
if [[ " $PAIRS " == *" gsm8k "* ]] && [ -f "$DATA/test.jsonl" ]; then
  mkdir -p "$WORK/g/base" "$WORK/g/derived"
  cp "$DATA/test.jsonl" "$WORK/g/base/data.jsonl"; cp "$DATA/test_socratic.jsonl" "$WORK/g/derived/data.jsonl"
  run_pair gsm8k "$WORK/g/base" "$WORK/g/derived"
fi
if [[ " $PAIRS " == *" fixtures "* ]]; then
  for k in $KINDS; do
    "$B/tenpak" fixture "$k" "$WORK/fx" --size-mb "$MB" >/dev/null
    run_pair "$k-${MB}M" "$WORK/fx/base" "$WORK/fx/derived"
    rm -rf "$WORK/fx"
  done
fi
if [[ " $PAIRS " == *" parquet "* ]] && [ -x "$PY" ] && "$PY" -c 'import pyarrow' 2>/dev/null; then
  "$PY" "$(dirname "$0")/dataset_parquet_pairs.py" "$WORK/pq" "${PARQUET_ROWS:-200000}" >/dev/null
  for k in pq-append pq-column; do run_pair "$k" "$WORK/pq/$k/base" "$WORK/pq/$k/derived"; done
fi
