#!/usr/bin/env bash
# tenpak optimize end to end on stories260K (converted with `tenpak convert
# llama2c`, as the runtime and quantization tests set it up), with a small
# evaluation: the smart search and --all agree, the cache answers a second
# run, -o writes the winner, --plot, infeasible sets (exit 8), bad input,
# an interrupted run. Skips (77) without ../shared/data or tenpak-ml.
set -uo pipefail
TENPAK=${TENPAK_BIN:?TENPAK_BIN not set}
DATA=${TENPAK_SHARED:-../shared}/data
BIN=$DATA/llama2c/stories260K.bin TOK=$DATA/llama2c/tok512.bin
CALIB=$DATA/text/tinyshakespeare.txt WIKI=$DATA/text/wikitext-2/test.txt
for f in "$BIN" "$TOK" "$CALIB" "$WIKI"; do [ -f "$f" ] || { echo "SKIP: $f absent"; exit 77; }; done
[ -x "$(dirname "$TENPAK")/tenpak-ml" ] || { echo "SKIP: tenpak-ml not built (libtorch missing)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() {  # WANT CMD...: runs CMD, checks its exit code, keeps stdout in $T/out and stderr in $T/err
  local want=$1; shift
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ "$rc" = "$want" ] || { tail -20 "$T/err"; fail "$* exited $rc, expected $want"; }
}
jq_py() { /usr/bin/python3 -c "import json,sys; j=json.load(open('$T/out')); $1" || { head -c 3000 "$T/out"; fail "$2"; }; }

expect_rc 0 "$TENPAK" convert llama2c "$BIN" --tokenizer "$TOK" -o "$T/m"
head -c 200000 "$WIKI" > "$T/eval.txt"
SMALL=(--text "$T/eval.txt" --calib "$CALIB" --ctx 64 --windows 8 --sample-windows 2 --calib-samples 4 --seq-len 64
       --decode-tokens 8 --threads 2 --cache-dir "$T/cache")

# Bad input: each a usage error (2) naming the problem, before any measurement.
expect_rc 2 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld=-1
grep -q -- "--max-kld" "$T/err" || fail "negative bound not named"
expect_rc 2 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-ppl-delta nan
grep -q "NaN" "$T/err" || fail "NaN not named"
expect_rc 2 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 0 --min-compression 2
grep -q "contradictory" "$T/err" || fail "contradictory constraints not explained"
expect_rc 2 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --hardware TPU-v9
grep -q "A100-80GB" "$T/err" && grep -q "this-machine" "$T/err" || fail "unknown hardware: the known ones not listed"
expect_rc 2 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --price-per-hour=-3
[ ! -e "$T/cache" ] || fail "bad input measured something"
expect_rc 2 "$TENPAK" optimize "$T/nope" "${SMALL[@]}"
cp -r "$T/m" "$T/gpt2"; sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' "$T/gpt2/config.json"
expect_rc 6 "$TENPAK" optimize "$T/gpt2" "${SMALL[@]}"
grep -q "GPT2LMHeadModel" "$T/err" || fail "unloadable model: architecture not named"
cp -r "$T/m" "$T/torn"; ST=$(ls "$T/torn"/*.safetensors | head -1); head -c 1000 "$ST" > "$ST.cut"; mv "$ST.cut" "$ST"
expect_rc 4 "$TENPAK" optimize "$T/torn" "${SMALL[@]}"
grep -q "$(basename "$ST")" "$T/err" || { cat "$T/err"; fail "corrupt model: the file not named"; }
mkdir "$T/exists"
expect_rc 6 "$TENPAK" optimize "$T/m" "${SMALL[@]}" -o "$T/exists"

# Interrupted run: killed after its first measurements; the cache holds only
# complete entries, and the next run completes from them.
"$TENPAK" optimize "$T/m" "${SMALL[@]}" --all >/dev/null 2>"$T/killed.err" &
PID=$!
for _ in $(seq 1 600); do
  [ "$(find "$T/cache" -name '*.json' 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.1
done
kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
N=$(find "$T/cache" -name '*.json' | wc -l)
[ "$N" -ge 3 ] || fail "no measurement cached before the kill ($N)"
/usr/bin/python3 - "$T/cache" <<'PY' || fail "cache holds an incomplete entry after a kill"
import json, pathlib, sys
for p in pathlib.Path(sys.argv[1]).rglob("*.json"):
    j = json.loads(p.read_text())
    assert j["complete"] is True and j["kind"] in ("probe", "eval") and "value" in j, p
PY
rm -rf /tmp/tenpak-optimize-"$PID"

# The smart search on T4 (estimated), then --all from the same measurements.
expect_rc 0 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 0.2 --hardware T4 --json --plot "$T/plot.svg" -o "$T/win"
cp "$T/out" "$T/smart.json"; cp "$T/err" "$T/smart.err"
jq_py '
c = {r["name"]: r for r in j["candidates"]}
assert len(c) == 10, c.keys()
w = j["winner"]; assert w and c[w]["winner"] and c[w]["feasible"], w
assert c[w]["kl_mean"] <= 0.2 and c[w]["estimated"] is True
assert "error" in c["awq-4bit-128g"] or "not measured" in c["awq-4bit-128g"].get("skipped", ""), c["awq-4bit-128g"]
assert j["hardware"]["name"] == "T4" and j["hardware"]["price_source"]
assert [s["against"] for s in j["savings"]] == ["unquantized", "gptq-4bit-128g"] and all(s["available"] for s in j["savings"])
assert j["search"]["exhaustive"] is False and j["output"]
' "smart --json"
grep -q "(winner)" "$T/plot.svg" && grep -q "max KL" "$T/plot.svg" || fail "plot: winner or constraint missing"
[ -f "$T/win/config.json" ] || fail "-o wrote nothing"
W=$(/usr/bin/python3 -c "import json; print(json.load(open('$T/smart.json'))['winner'])")
if [ "$W" != unquantized ]; then grep -q quantization_config "$T/win/config.json" || fail "-o: not a quantized checkpoint"; fi
expect_rc 0 "$TENPAK" eval "$T/win" --text "$T/eval.txt" --ctx 64 --chunks 2 --no-speed
expect_rc 0 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 0.2 --hardware T4 --json --all
jq_py "
s = json.load(open('$T/smart.json'))
assert j['winner'] == s['winner'], (j['winner'], s['winner'])
assert 'error' in next(r for r in j['candidates'] if r['name'] == 'awq-4bit-128g')  # no stories260K linear fits AWQ at group 128: reported, the others go on
assert j['search']['evaluations'] == 8 and s['search']['evaluations'] < 8, (j['search'], s['search'])
print('smart', s['search'], 'all', j['search'])
" "--all disagrees with the smart search"

# Other constraints: answered from the cache (no probe or evaluation measured again).
expect_rc 0 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-ppl-delta 5 --min-compression 1.5 --hardware A10G --tokens-per-month 1e9
grep -q "^winner" "$T/out" || fail "text report has no winner"
grep -E "^(probe|evaluate) " "$T/err" | grep -vq cached && { cat "$T/err"; fail "second run measured again"; }
grep -q "estimated" "$T/out" || fail "estimated figures not labelled"

# Without --text: evaluated on the calibration text after what calibration read.
NOTEXT=(--calib "$CALIB" --ctx 64 --windows 8 --sample-windows 2 --calib-samples 4 --seq-len 64 --decode-tokens 8 --threads 2)
expect_rc 0 "$TENPAK" optimize "$T/m" "${NOTEXT[@]}" --no-cache --max-kld 0.2 --hardware T4 --json
jq_py '
assert j["text"].startswith("held-out: ") and j["winner"], (j["text"], j["winner"])
' "no --text: held-out calibration tail"
expect_rc 2 "$TENPAK" optimize "$T/m" --no-cache --max-kld 0.2
grep -q -- "--text FILE" "$T/err" || fail "neither --text nor --calib: not explained"

# Nothing meets: exit 8, the closest candidates and what each misses.
expect_rc 8 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 1e-7 --min-compression 1.5 --json
jq_py '
assert j["winner"] is None and 1 <= len(j["closest"]) <= 3, j["closest"]
assert all(x["misses"] for x in j["closest"])
' "infeasible --json"

# This machine: measured, not estimated, peak memory included (a fresh
# process per candidate), and the note that the float32 runtime makes the
# speed differences noise.
expect_rc 0 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 0.2 --json
jq_py '
assert j["hardware"]["measured"] is True
rows = [r for r in j["candidates"] if "estimated" in r]
assert rows and all(r["estimated"] is False for r in rows)
for r in rows:
    assert r["peak_memory_measured"] is True and r["peak_memory_estimated"] is False, r
    assert "measured: peak RSS" in r["peak_memory_what"], r
    # the model (1 MB fp32) and libtorch are resident: above the baseline, below 4 GiB
    assert 0 < r["baseline_rss_bytes"] < r["peak_memory_bytes"] < 4 * 2**30, r
assert "noise" in j["note"] and "float32" in j["cost_model"]["note"]
' "this-machine figures"
expect_rc 0 "$TENPAK" optimize "$T/m" "${SMALL[@]}" --max-kld 0.2 --plot "$T/local.svg"
grep -q "^note .*noise" "$T/out" && grep -q "peak mem" "$T/out" || { cat "$T/out"; fail "this-machine table: note or peak memory missing"; }
grep -q "measured peak RSS" "$T/local.svg" && grep -q "noise" "$T/local.svg" || fail "plot: measured memory or the noise note missing"
echo "optimize_cli_stories: ok"
