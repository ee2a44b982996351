#!/usr/bin/env bash
# Lossy deltas (docs/LOSSY.md): size against quality for every method over a
# sweep of its setting, on the real stories260K fine-tunes (tenpak fixture
# stories-ft: full fine-tune at lr 1e-3 = stories260K's pretraining rate,
# "full"; full fine-tune at --hub-lr 6.67e-5 as released fine-tunes are
# trained, "hub"; LoRA r=8 merged, "lora8"), the lossless delta beside them,
# in one run. bitdelta rows are tuned on calibration text (the first 90% of
# TinyShakespeare, never the held-out part); "+notune" rows are the same
# with --no-tune (scale = mean |delta|). Writes OUT/lossy.tsv, OUT/lossy.md (the table) and
# OUT/lossy.svg (delta size vs KL divergence, log axes). delta_bytes is every
# file of the delta directory (tenpak.idx with its lossy record, tenpak.dat,
# and a side file if a build wrote one), what a user downloads.
#
#   bench/lossy_bench.sh BUILD_DIR [OUT] [FIXTURES]
#   EVAL_CHUNKS=0 (all held-out windows, default) or N; EVAL_CTX=256
#
# FIXTURES: a folder with full/, hub/ and lora8/ from earlier `tenpak fixture
# stories-ft` runs (made here when absent: about 6 minutes on 2 cores).
# PAIRS="full hub lora8" (default) selects the pairs; METHODS="m1 m2 ..." (same
# spelling as the table's method column) runs only those rows (and the lossless one).
set -euo pipefail
BUILD=${1:?usage: bench/lossy_bench.sh BUILD_DIR [OUT] [FIXTURES]}
OUT=${2:-/tmp/lossy_bench}
FIX=${3:-$OUT/fixtures}
TENPAK=$BUILD/tenpak
EVAL_CHUNKS=${EVAL_CHUNKS:-0}
EVAL_CTX=${EVAL_CTX:-256}
HERE=$(cd "$(dirname "$0")" && pwd)
export TENPAK_SHARED=${TENPAK_SHARED:-$(cd "$HERE/../../shared" && pwd)}
mkdir -p "$OUT" "$FIX"
[ -d "$FIX/full" ] || "$TENPAK" fixture stories-ft "$FIX/full" --json > "$FIX/full.json"
[ -d "$FIX/lora8" ] || "$TENPAK" fixture stories-ft "$FIX/lora8" --lora 8 --json > "$FIX/lora8.json"
[ -d "$FIX/hub" ] || "$TENPAK" fixture stories-ft "$FIX/hub" --hub-lr --json > "$FIX/hub.json"
PAIRS=${PAIRS:-full hub lora8}

# Sparse thresholds keeping a fixed fraction of the block matrices' changed entries.
thresholds() {  # PAIR
  python3 "$HERE/sparse_thresholds.py" "$1" 0.002 0.005 0.01 0.02 0.05 0.1 0.2
}

TSV=$OUT/lossy.tsv
printf "pair\tmethod\tdelta_bytes\tvs_fp16\tppl_ratio\tkl_mean\ttop1\tseconds\n" > "$TSV"
for pair in $PAIRS; do
  P=$FIX/$pair
  FP16=$(python3 -c "import json,struct,sys;b=open(sys.argv[1],'rb').read(8);n=struct.unpack('<Q',b)[0];h=json.loads(open(sys.argv[1],'rb').read()[8:8+n]);h.pop('__metadata__',None);import math;print(sum(2*math.prod(v['shape']) for v in h.values()))" "$P/finetune/model.safetensors")
  rm -rf "$OUT/d"
  "$TENPAK" delta build "$P/base" "$P/finetune" -o "$OUT/d" --json > "$OUT/lossless.json"
  LB=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['delta_bytes'])" "$OUT/lossless.json")
  printf "%s\tlossless\t%s\t%.4f\t1\t0\t1\t-\n" "$pair" "$LB" "$(python3 -c "print($LB/$FP16)")" >> "$TSV"
  methods=()
  for t in $(thresholds "$P"); do methods+=("sparse:$t"); done
  for p in 0.99 0.98 0.95 0.9 0.8; do methods+=("dare:$p"); done
  methods+=(bitdelta bitdelta+notune)
  for b in 0.25 0.5 1 2 3 4 6; do methods+=("qdelta:$b"); done
  for r in 1 2 4 8 16 32; do methods+=("lowrank:$r"); done
  # The embedding (and tied head) too: it is 13% of stories260K's weights, and
  # lossless it alone can exceed a 1/16-of-fp16 budget.
  for m in qdelta:0.25 qdelta:0.5 qdelta:1 qdelta:2 qdelta:3 lowrank:1 lowrank:2 lowrank:4 lowrank:8 lowrank:16 bitdelta; do
    methods+=("$m+emb")
  done
  methods+=(bitdelta+notune+emb)
  # GPTQ on the change (codec 11 grouped codes, scales tuned unless +notune);
  # gptqmix:F allocates bits per tensor by measured sensitivity within F x fp16.
  for m in gptqdelta:1 gptqdelta:1.58 gptqdelta:2 gptqdelta:1:row gptqmix:0.0625 gptqmix:0.0625+notune; do
    methods+=("$m+emb")
  done
  [ -n "${METHODS:-}" ] && read -r -a methods <<< "$METHODS"
  for m in "${methods[@]}"; do
    rm -rf "$OUT/d"
    t0=$(date +%s.%N)
    emb=()
    name=${m%+emb}
    [ "$name" != "$m" ] && emb+=(--lossy-embeddings)
    [ "${name%+notune}" != "$name" ] && emb+=(--no-tune)
    name=${name%+notune}
    if ! "$TENPAK" delta build "$P/base" "$P/finetune" -o "$OUT/d" --lossy "$name" "${emb[@]}" --eval-ctx "$EVAL_CTX" \
         --eval-chunks "$EVAL_CHUNKS" --json > "$OUT/r.json" 2> "$OUT/r.err"; then
      echo "$pair $m: failed: $(tail -1 "$OUT/r.err")" >&2; continue
    fi
    t1=$(date +%s.%N)
    python3 - "$OUT/r.json" "$pair" "$m" "$FP16" "$(python3 -c "print($t1-$t0)")" "$OUT/d" >> "$TSV" <<'PY'
import json, os, sys
j = json.load(open(sys.argv[1])); q = j["quality"]
d = sys.argv[6]
n = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))  # every file of the delta directory
print("\t".join([sys.argv[2], sys.argv[3], str(n), "%.4f" % (n / int(sys.argv[4])),
                 "%.5f" % q["ppl_ratio"], "%.4g" % q["kl_mean"], "%.4f" % q["top1_agreement"], "%.1f" % float(sys.argv[5])]))
PY
    tail -1 "$TSV"
  done
done
rm -rf "$OUT/d"
python3 "$HERE/lossy_plot.py" "$TSV" "$OUT/lossy.svg" "$OUT/lossy.md"
echo "wrote $TSV $OUT/lossy.md $OUT/lossy.svg"
