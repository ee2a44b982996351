#!/usr/bin/env bash
# Codec 12 (lowrank_lanes) end to end through the command line: a merged-LoRA
# fixture (`tenpak fixture lora`: rank-8 adapters merged into q_proj and
# v_proj, BF16) is built into a delta whose adapted tensors use codec 12 (and
# no other tensor does), verified, applied bit for bit, and served by the
# mount with the fine-tune's sha256 (mount skipped where FUSE is unavailable).
set -u
BIN=${1:?usage: lowrank_mount_test.sh TENPAK_BIN}
W=$(mktemp -d /tmp/tenpak-lowrank-XXXXXX)
trap 'fusermount3 -u "$W/mnt" 2>/dev/null; rm -rf "$W"' EXIT
fail() { echo "FAIL: $1"; exit 1; }

"$BIN" fixture lora "$W/p" --size-mb 3 >/dev/null || fail "fixture lora"
"$BIN" delta build "$W/p/base" "$W/p/finetune" -o "$W/d" --json >/dev/null || fail "delta build"
"$BIN" delta inspect "$W/d" --tensors --json > "$W/i.json" || fail "delta inspect"
python3 - "$W/i.json" <<'PY' || fail "codec choice"
import json, sys
j = json.load(open(sys.argv[1]))
ts = [t for f in j["files"] for t in f.get("tensors", [])]
adapted = [t for t in ts if "q_proj" in t["name"] or "v_proj" in t["name"]]
assert adapted, "no adapted tensor"
for t in ts:
    uses = "lowrank_lanes" in t["codecs"]
    assert uses == (t in adapted), (t["name"], t["codecs"])
print(f"ok   {len(adapted)} adapted tensors use lowrank_lanes, no other tensor does")
PY
"$BIN" delta verify "$W/d" --base "$W/p/base" >/dev/null || fail "delta verify"
"$BIN" delta apply "$W/d" --base "$W/p/base" -o "$W/out" >/dev/null || fail "delta apply"
diff -r "$W/p/finetune" "$W/out" >/dev/null || fail "apply differs from the fine-tune"
echo "ok   verify and apply rebuild the fine-tune bit for bit"

if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
  mkdir -p "$W/mnt"
  if "$BIN" mount "$W/d" "$W/mnt" --base "$W/p/base" --no-cache --log "$W/mount.log" >"$W/m.out" 2>"$W/m.err"; then
    want=$(sha256sum "$W/p/finetune/model.safetensors" | cut -d' ' -f1)
    got=$(sha256sum "$W/mnt/model.safetensors" | cut -d' ' -f1)
    fusermount3 -u "$W/mnt"
    [ "$want" = "$got" ] || fail "mount serves $got, the fine-tune is $want"
    echo "ok   the mount serves the fine-tune's model.safetensors"
  else
    echo "note: mount not possible here ($(tail -1 "$W/m.err")); mount check skipped"
  fi
fi
echo "lowrank_mount_test: passed"
