#!/usr/bin/env bash
# The router benchmark (issue 19): routers trained with `tenpak router train`
# and scored with `tenpak router eval` only on prompts they never saw, beside
# random routing and routing by prompt length in the same run:
#   1. MMLU split by subject: the 38 subject files sorted by name, even
#      positions = half A, odd = half B; a router trained on A (plus GSM8K and
#      MT-Bench as extra data) is scored on B, and one trained on B on A.
#   2. GSM8K, 5-fold cross-validation: router i is trained on every prompt
#      outside fold i (fold = hash of the prompt's text mod 5; the extra MMLU
#      and MT-Bench data likewise minus fold i) and scores fold i; the pooled
#      out-of-fold scores give one curve. Then the same with routers trained
#      on GSM8K's training folds alone (both rows are printed: no choice made
#      on the test folds).
# Prints a markdown table (APGR, CPT(50%), CPT(80%)) and the router's latency
# per prompt (features + prediction, one core), and writes the SVG plots.
#
#   bench/router_bench.sh [BUILD_DIR]     env: DATA (default ../shared/data/router/routellm)
#                                              OUT (default /tmp/tenpak-router-bench)
#                                              TRAIN_ARGS (extra `router train` options, same for every router)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
T=$BUILD/tenpak
DATA=${DATA:-$ROOT/../shared/data/router/routellm}
OUT=${OUT:-/tmp/tenpak-router-bench}
TRAIN_ARGS=${TRAIN_ARGS:-}
[ -d "$DATA" ] || { echo "router_bench: $DATA is absent" >&2; exit 2; }
[ -x "$BUILD/tenpak-ml" ] || { echo "router_bench: $BUILD/tenpak-ml is missing (needs libtorch)" >&2; exit 2; }
mkdir -p "$OUT"
mapfile -t subjects < <(ls "$DATA"/mmlu/mmlu_*.csv | sort)
A=(); B=()
for i in "${!subjects[@]}"; do
  if (( i % 2 == 0 )); then A+=("${subjects[$i]}"); else B+=("${subjects[$i]}"); fi
done
EXTRA=("$DATA/gsm8k_responses.csv" "$DATA/mt_bench_judgements.jsonl")

row() { # name json
  python3 - "$1" "$2" <<'PY'
import json, sys
name, j = sys.argv[1], json.loads(open(sys.argv[2]).read())
m = {x["name"]: x for x in j["methods"]}
cells = " | ".join(f'{m[k]["apgr"]:.3f} / {m[k]["cpt50"]:.3f} / {m[k]["cpt80"]:.3f}' for k in ("router", "length", "random"))
print(f'| {name} | {j["prompts"]} | {j["weak_accuracy"]:.3f} / {j["strong_accuracy"]:.3f} | {cells} | {j["us_per_prompt"]:.1f} |')
PY
}

"$T" router train "${A[@]}" "${EXTRA[@]}" -o "$OUT/mmlu_A.router" $TRAIN_ARGS >&2
"$T" router train "${B[@]}" "${EXTRA[@]}" -o "$OUT/mmlu_B.router" $TRAIN_ARGS >&2
"$T" router eval "${B[@]}" --router "$OUT/mmlu_A.router" --json --plot "$OUT/mmlu_B_unseen.svg" >"$OUT/mmlu_B.json"
"$T" router eval "${A[@]}" --router "$OUT/mmlu_B.router" --json --plot "$OUT/mmlu_A_unseen.svg" >"$OUT/mmlu_A.json"
routers=()
for k in 0 1 2 3 4; do
  "$T" router train "$DATA/gsm8k_responses.csv" "$DATA/mmlu" "$DATA/mt_bench_judgements.jsonl" --kfold 5 --fold $k \
    -o "$OUT/gsm8k_f$k.router" $TRAIN_ARGS >&2
  routers+=(--router "$OUT/gsm8k_f$k.router")
done
"$T" router eval "$DATA/gsm8k_responses.csv" --kfold 5 "${routers[@]}" --json --plot "$OUT/gsm8k_5fold.svg" >"$OUT/gsm8k.json"
# The same folds, routers trained on GSM8K's own training folds only.
routers=()
for k in 0 1 2 3 4; do
  "$T" router train "$DATA/gsm8k_responses.csv" --kfold 5 --fold $k -o "$OUT/gsm8k_only_f$k.router" $TRAIN_ARGS >&2
  routers+=(--router "$OUT/gsm8k_only_f$k.router")
done
"$T" router eval "$DATA/gsm8k_responses.csv" --kfold 5 "${routers[@]}" --json --plot "$OUT/gsm8k_only_5fold.svg" >"$OUT/gsm8k_only.json"

echo "| test set (never trained on) | prompts | weak / strong accuracy | router APGR / CPT(50%) / CPT(80%) | length | random | router us/prompt |"
echo "|---|---|---|---|---|---|---|"
row "MMLU half B (19 subjects), router trained on half A" "$OUT/mmlu_B.json"
row "MMLU half A (19 subjects), router trained on half B" "$OUT/mmlu_A.json"
row "GSM8K, 5-fold (pooled out-of-fold scores), trained on GSM8K + MMLU + MT-Bench" "$OUT/gsm8k.json"
row "GSM8K, 5-fold (pooled out-of-fold scores), trained on GSM8K only" "$OUT/gsm8k_only.json"
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
a, b = (json.load(open(f"{o}/mmlu_{h}.json")) for h in "AB")
def apgr(j, k): return {x["name"]: x["apgr"] for x in j["methods"]}[k]
print()
print("MMLU unseen subjects, mean of both halves: router APGR %.3f, length %.3f, random %.3f" %
      tuple((apgr(a, k) + apgr(b, k)) / 2 for k in ("router", "length", "random")))
PY
echo "plots: $OUT/mmlu_A_unseen.svg $OUT/mmlu_B_unseen.svg $OUT/gsm8k_5fold.svg $OUT/gsm8k_only_5fold.svg"
