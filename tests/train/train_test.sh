#!/usr/bin/env bash
# End-to-end checks of tenpak-train (real AdamW fine-tunes with libtorch):
# outputs parse and behave like a fine-tune (check_outputs.py), runs are
# deterministic for a seed, `tenpak fixture trained` finds the trainer, and
# tenpak delta build/verify/apply round-trip both pairs bit for bit with a
# delta smaller than the fine-tune. Exit 77 (skip) when tenpak-train is not built.
set -u
BIN=${1:?usage: train_test.sh TENPAK_BIN [TENPAK_TRAIN_BIN]}
TRAIN=${2:-}
if [ -z "$TRAIN" ] || [ ! -x "$TRAIN" ]; then
  echo "skip: tenpak-train not built (libtorch not installed)"
  exit 77
fi
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/tenpak-train-XXXXXX)
trap 'rm -rf "$W"' EXIT
. "$HERE/../support/checks.sh"  # ok, bad

# Small and fast: a few seconds on one core.
SMALL=(--dim 64 --layers 2 --vocab 128 --seq 32 --steps 80 --finetune-steps 30 --finetune-lr 5e-5 --seed 7)
if "$TRAIN" "$W/t" "${SMALL[@]}" --json >"$W/summary.json" 2>"$W/err.txt"; then
  ok "tenpak-train ran"
  python3 "$HERE/check_outputs.py" "$W/t" "$W/summary.json" && ok "outputs check" || bad "outputs check"
else
  bad "tenpak-train failed: $(cat "$W/err.txt")"
fi
[ -z "$(find "$W/t" -name '*.tmp')" ] && ok "no temp files left" || bad "temp files left"

# Same seed, same bits.
"$TRAIN" "$W/t2" "${SMALL[@]}" --dtype bf16 >/dev/null 2>&1
cmp -s "$W/t/bf16/finetune/model.safetensors" "$W/t2/finetune/model.safetensors" \
  && ok "deterministic for a seed (and --dtype bf16 writes OUT/{base,finetune})" || bad "two runs with one seed differ"

# --tie: the LM head is the embedding, so the file has no lm_head.weight.
"$TRAIN" "$W/tie" --dim 32 --layers 1 --vocab 64 --seq 16 --steps 3 --finetune-steps 2 --dtype fp32 --tie >/dev/null 2>&1 &&
  python3 -c "
import json, struct, sys
d = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
sys.exit(0 if 'lm_head.weight' not in h and 'model.embed_tokens.weight' in h else 1)" "$W/tie/finetune/model.safetensors" \
  && ok "--tie writes no lm_head.weight" || bad "--tie"

# An output path that is not UTF-8: --json writes its bytes as U+FFFD (the
# summary names the directory) instead of aborting after the models are written.
NU="$W/out-$(printf '\377')"
"$TRAIN" "$NU" --dim 32 --layers 1 --vocab 64 --seq 16 --steps 3 --finetune-steps 2 --dtype fp32 --json \
  >"$W/nu.json" 2>"$W/err.txt"; rc=$?
[ "$rc" = 0 ] && [ -s "$NU/finetune/model.safetensors" ] && python3 -c "
import json, sys
sys.exit(0 if json.load(open(sys.argv[1], encoding='utf-8'))['finetune']['fp32']['dir'].endswith('out-\ufffd') else 1)" "$W/nu.json" \
  && ok "output path not UTF-8: --json summary with U+FFFD (rc 0)" || bad "output path not UTF-8: rc $rc: $(cat "$W/err.txt")"

# Bad arguments are usage errors.
"$TRAIN" "$W/bad" --dim 64 --heads 3 >/dev/null 2>"$W/err.txt"; rc=$?
[ "$rc" = 2 ] && grep -q heads "$W/err.txt" && ok "--dim not a multiple of --heads refused (rc 2)" || bad "bad --heads: rc $rc"

# Delta round trip on both pairs; the ratio is reported, and must be < 1.
for dt in bf16 fp32; do
  P="$W/t/$dt"
  if "$BIN" delta build "$P/base" "$P/finetune" -o "$W/d-$dt" --json >"$W/b-$dt.json" 2>"$W/err.txt" &&
     "$BIN" delta verify "$W/d-$dt" --base "$P/base" >/dev/null 2>>"$W/err.txt" &&
     "$BIN" delta apply "$W/d-$dt" --base "$P/base" -o "$W/o-$dt" >/dev/null 2>>"$W/err.txt"; then
    ok "$dt: delta build/verify/apply"
  else
    bad "$dt: delta round trip failed: $(cat "$W/err.txt")"; continue
  fi
  diff -r "$P/finetune" "$W/o-$dt" >/dev/null && ok "$dt: rebuilt bit-identical" || bad "$dt: rebuilt differs"
  python3 - "$W/b-$dt.json" "$dt" <<'PY' && ok "$dt: delta smaller than the fine-tune" || bad "$dt: delta not smaller"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}: delta {r['delta_bytes']} of fine-tune {r['finetune_bytes']} bytes: ratio {r['ratio']:.4f}, "
      f"{r['tensors_identical']}/{r['tensors']} tensors identical")
sys.exit(0 if r["delta_bytes"] < r["finetune_bytes"] else 1)
PY
done

# `tenpak fixture trained` runs the tenpak-train next to tenpak...
if [ "$(dirname "$BIN")" = "$(dirname "$TRAIN")" ]; then
  if "$BIN" fixture trained "$W/fx" --size-mb 1 --seed 2 >"$W/out.txt" 2>"$W/err.txt" &&
     [ -s "$W/fx/base/model.safetensors" ] && [ -s "$W/fx/finetune/model.safetensors" ]; then
    ok "tenpak fixture trained"
  else
    bad "tenpak fixture trained: $(cat "$W/err.txt")"
  fi
else
  echo "skip: tenpak-train is not next to tenpak"
fi
# ...and says clearly when there is none.
mkdir "$W/alone" && cp "$BIN" "$W/alone/tenpak"
"$W/alone/tenpak" fixture trained "$W/fy" >/dev/null 2>"$W/err.txt"; rc=$?
[ "$rc" != 0 ] && grep -q "tenpak-train" "$W/err.txt" && [ ! -e "$W/fy/finetune" ] \
  && ok "missing tenpak-train reported (rc $rc)" || bad "missing tenpak-train: rc $rc: $(cat "$W/err.txt")"

echo "train: $pass passed, $fail failed"
[ "$fail" = 0 ]
