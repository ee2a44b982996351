#!/usr/bin/env bash
# tenpak convert / eval / generate through `tenpak` (which execs tenpak-ml):
# exit codes of bad input, --json reports, determinism. Skips (77) without
# ../shared/data/llama2c.
set -uo pipefail
TENPAK=${TENPAK_BIN:?TENPAK_BIN not set}
DATA=${TENPAK_SHARED:-../shared}/data
BIN=$DATA/llama2c/stories260K.bin TOK=$DATA/llama2c/tok512.bin
[ -f "$BIN" ] && [ -f "$TOK" ] || { echo "SKIP: $BIN absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() {  # WANT CMD...: runs CMD, checks its exit code, keeps stderr in $T/err
  local want=$1; shift
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$T/err"; fail "$* exited $rc, expected $want"; }
}

expect_rc 0 "$TENPAK" convert llama2c "$BIN" --tokenizer "$TOK" -o "$T/m" --json
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["parameters"]==260032 and j["tensors"]==47, j' "$T/out" || fail "convert --json"
# An output path that is not UTF-8: --json names it with U+FFFD (it aborted,
# exit 134, after writing the model).
expect_rc 0 "$TENPAK" convert llama2c "$BIN" --tokenizer "$TOK" -o "$T/m"$'\xff' --json
grep -q "m"$'\xef\xbf\xbd' "$T/out" || fail "convert --json: non-UTF-8 output not named"
expect_rc 6 "$TENPAK" convert llama2c "$BIN" --tokenizer "$TOK" -o "$T/m"
grep -q "already exists" "$T/err" || fail "existing output not named"
head -c 1000 "$BIN" > "$T/short.bin"
expect_rc 4 "$TENPAK" convert llama2c "$T/short.bin" --tokenizer "$TOK" -o "$T/x"
[ ! -e "$T/x" ] || fail "partial output left after a corrupt input"
ls -a "$T" | grep -q tenpak-tmp && fail "staging directory left behind"

head -c 300 "$DATA/llama2c/LICENSE" > "$T/short.txt"
expect_rc 2 "$TENPAK" eval "$T/m" --text "$T/short.txt" --ctx 512 --no-speed
grep -q "needs at least 512" "$T/err" || { cat "$T/err"; fail "short text not explained"; }
expect_rc 2 "$TENPAK" eval "$T/nope" --text "$T/short.txt"
cp -r "$T/m" "$T/gpt2"
sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' "$T/gpt2/config.json"
expect_rc 6 "$TENPAK" eval "$T/gpt2" --text "$T/short.txt"
grep -q "GPT2LMHeadModel" "$T/err" || fail "architecture not named"

STORY="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
for i in 1 2 3 4 5 6 7 8; do echo "$STORY"; done > "$T/story.txt"
expect_rc 0 "$TENPAK" eval "$T/m" --text "$T/story.txt" --ctx 64 --reference "$T/m" --threads 1 --runs 2 --decode-tokens 4 --json
cp "$T/out" "$T/eval1.json"
python3 - "$T/eval1.json" <<'PY' || fail "eval --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["windows"] >= 3 and j["scored_tokens"] == j["windows"] * 31, j
assert 1 < j["perplexity"] < 20, j          # a story the model knows well
assert j["kl_mean"] < 1e-6 and j["top1_agreement"] == 1.0, j
assert j["speed"]["decode_tokens"] == 4 and j["speed"]["forward_ms_p50"] > 0, j
PY
expect_rc 0 "$TENPAK" eval "$T/m" --text "$T/story.txt" --ctx 64 --reference "$T/m" --threads 1 --runs 2 --decode-tokens 4 --json
python3 -c 'import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); assert a["perplexity"]==b["perplexity"] and a["nll"]==b["nll"]' "$T/eval1.json" "$T/out" || fail "eval not deterministic"

expect_rc 0 "$TENPAK" generate "$T/m" "Once upon a time" --max-tokens 20 --threads 1
grep -q "^Once upon a time, there was" "$T/out" || { cat "$T/out"; fail "greedy generation"; }
expect_rc 0 "$TENPAK" generate "$T/m" "Once upon a time" --max-tokens 20 --temperature 1 --top-p 0.9 --seed 5 --json --threads 1
cp "$T/out" "$T/g1.json"
expect_rc 0 "$TENPAK" generate "$T/m" "Once upon a time" --max-tokens 20 --temperature 1 --top-p 0.9 --seed 5 --json --threads 1
cmp -s <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ids"])' "$T/g1.json") \
       <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ids"])' "$T/out") || fail "seeded sampling differs"
echo "cli_runtime: ok"
