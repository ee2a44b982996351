#!/usr/bin/env bash
# tenpak fixture stories-ft with few steps: two runs give the same bytes, the
# fine-tune differs from the base and has a lower held-out loss, a merged
# LoRA fine-tune differs from the base by rank <= R in each adapted weight
# only (torch SVD), and both pairs round-trip bit-exact through a lossless
# delta. Skips (77) without ../shared/data.
set -uo pipefail
TENPAK=${TENPAK_BIN:?TENPAK_BIN not set}
DATA=${TENPAK_SHARED:-../shared}/data
for f in llama2c/stories260K.bin llama2c/tok512.bin text/tinyshakespeare.txt; do
  [ -f "$DATA/$f" ] || { echo "SKIP: $DATA/$f absent"; exit 77; }
done
PY=/usr/bin/python3
"$PY" -c 'import torch' 2>/dev/null || { echo "SKIP: $PY has no torch (Debian python3-torch)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() {  # WANT CMD...: runs CMD, checks its exit code, keeps stdout/stderr in $T/out, $T/err
  local want=$1; shift
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$T/err"; fail "$* exited $rc, expected $want"; }
}
FAST=(--steps 25 --batch 8 --eval-chunks 8 --json)

# Missing data: exit 2, the missing file named; nothing written.
expect_rc 2 "$TENPAK" fixture stories-ft "$T/none" --data-dir "$T/nodata"
grep -q "nodata/llama2c/stories260K.bin" "$T/err" || { cat "$T/err"; fail "missing data file not named"; }
[ ! -e "$T/none" ] || fail "output written without data"

# Full fine-tune, twice: the same bytes.
expect_rc 0 "$TENPAK" fixture stories-ft "$T/a" "${FAST[@]}"
cp "$T/out" "$T/a.json"
expect_rc 0 "$TENPAK" fixture stories-ft "$T/b" "${FAST[@]}"
for f in base/model.safetensors finetune/model.safetensors finetune/config.json finetune/tokenizer.bin; do
  cmp -s "$T/a/$f" "$T/b/$f" || fail "$f differs between two runs with the same options"
done
cmp -s "$T/a/base/model.safetensors" "$T/a/finetune/model.safetensors" && fail "the fine-tune equals the base"
ls -a "$T" | grep -q tenpak-tmp && fail "staging directory left behind"
expect_rc 6 "$TENPAK" fixture stories-ft "$T/a" "${FAST[@]}"
"$PY" - "$T/a.json" <<'PY' || fail "full fine-tune report"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["method"] == "full" and j["steps"] == 25, j
assert j["finetune_heldout_nll"] < j["base_heldout_nll"] - 0.05, j   # held-out loss clearly lower
assert j["eval_windows"] == 8 and j["heldout_tokens"] > 10000, j
PY

# LoRA rank 4, merged: every q/k/v/o delta has rank <= 4 and equals B·A of
# the adapter; every other tensor is unchanged.
expect_rc 0 "$TENPAK" fixture stories-ft "$T/l" --lora 4 "${FAST[@]}"
cp "$T/out" "$T/l.json"
"$PY" - "$T/l" "$T/l.json" <<'PY' || fail "LoRA fine-tune"
import json, struct, sys, torch
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        assert v["dtype"] == "F32", (path, k)
        s, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.float32).reshape(v["shape"])
    return out
d, j = sys.argv[1], json.load(open(sys.argv[2]))
assert j["method"] == "lora" and j["lora_rank"] == 4, j
assert j["finetune_heldout_nll"] < j["base_heldout_nll"], j
base, ft = load(d + "/base/model.safetensors"), load(d + "/finetune/model.safetensors")
ad = load(d + "/adapter/adapter_model.safetensors")
assert base.keys() == ft.keys()
adapted = 0
for k in base:
    delta = ft[k].double() - base[k].double()
    if any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj")):
        s = torch.linalg.svdvals(delta)
        rank = int((s > max(1e-6, 1e-4 * s[0].item())).sum())
        assert 1 <= rank <= 4, (k, rank, s[:6].tolist())
        mod = "base_model.model." + k[:-len(".weight")]
        ba = ad[mod + ".lora_B.weight"].double() @ ad[mod + ".lora_A.weight"].double()
        assert ad[mod + ".lora_A.weight"].shape[0] == 4
        assert (ba - delta).abs().max().item() < 1e-6, (k, (ba - delta).abs().max().item())
        adapted += 1
    else:
        assert torch.equal(ft[k], base[k]), k
assert adapted == 20, adapted
PY

# Both pairs through a lossless delta: rebuilt bit-exact.
for p in a l; do
  expect_rc 0 "$TENPAK" delta build "$T/$p/base" "$T/$p/finetune" -o "$T/$p.delta"
  expect_rc 0 "$TENPAK" delta verify "$T/$p.delta" --base "$T/$p/base"
done
echo "stories_ft_test: ok"
