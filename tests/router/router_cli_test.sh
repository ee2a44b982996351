#!/usr/bin/env bash
# tenpak route / router eval / router train from the command line: the
# built-in router and catalog work with no set-up; bad input gets the
# documented exit code and a message naming the file, line or problem; the
# training is deterministic for a seed (when tenpak-ml was built).
set -u
BIN=${1:?usage: router_cli_test.sh TENPAK_BIN}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
W=$(mktemp -d /tmp/tenpak-router-cli-XXXXXX)
trap 'rm -rf "$W"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/../support/checks.sh"  # ok, bad, expect_rc
expect_in() { # file needle description
  if grep -q -- "$2" "$1"; then ok "$3"; else bad "$3: '$2' not in $(head -c 400 "$1")"; fi
}

# The built-in router and catalog.
expect_rc 0 "route with the built-in router" "$BIN" route Llama-2-70B "What is the capital of France?"
expect_in "$W/out.txt" "Recommended:" "route prints a recommendation"
expect_rc 0 "route --json" "$BIN" route GPT-4 "Tom has 12 apples and gives 5 away. How many are left?" --json
python3 - "$W/out.txt" <<'PY' && ok "route --json fields" || bad "route --json fields"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["requested"]["model"] == "GPT-4" and j["requested"]["api"] is True
assert 0 < j["p_needs_strong"] < 1 and j["category"] == "math" and j["drivers"]
assert j["recommended"]["price_per_mtok"] <= j["requested"]["price_per_mtok"]
assert abs(j["saving"] - (1 - j["recommended"]["price_per_mtok"] / j["requested"]["price_per_mtok"])) < 1e-9
PY
expect_rc 0 "route MODEL@GPU" "$BIN" route Llama-2-70B@A100-80GB "Hello there" --json
expect_in "$W/out.txt" '"gpu":"A100-80GB"' "MODEL@GPU is the requested hardware"
# A threshold of 1 admits no cheaper, worse option: no saving unless quality is equal.
expect_rc 0 "route --quality-threshold 1" "$BIN" route Llama-2-7B "Write a poem about the sea." --quality-threshold 1 --json
python3 -c "import json,sys; j=json.load(open('$W/out.txt')); sys.exit(0 if j['predicted_relative_quality'] >= 1 else 1)" \
  && ok "threshold 1 keeps full predicted quality" || bad "threshold 1"

# Bad input.
expect_rc 2 "unknown model" "$BIN" route GPT-9 "hi"
expect_in "$W/err.txt" "Llama-2-7B" "unknown model lists the catalog"
expect_rc 2 "empty prompt" "$BIN" route GPT-4 ""
expect_rc 2 "blank prompt" "$BIN" route GPT-4 "   "
expect_rc 2 "invalid UTF-8" "$BIN" route GPT-4 "$(printf 'caf\xe9')"
expect_in "$W/err.txt" "UTF-8" "invalid UTF-8 named"
expect_rc 2 "bad threshold" "$BIN" route GPT-4 "hi" --quality-threshold 1.5
# NaN passes every comparison-based range check (exit 0 with a NaN threshold before).
expect_rc 2 "nan threshold" "$BIN" route GPT-4 "hi" --quality-threshold nan
python3 - "$W/huge.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"prompt": "word " * 300000}) + "\n")   # 1.5 MB: over the limit
    f.write(json.dumps({"prompt": "x " * 200000, "id": 7}) + "\n")  # 400 kB: accepted
PY
expect_rc 2 "huge prompt (batch)" "$BIN" route GPT-4 --batch "$W/huge.jsonl"
expect_in "$W/out.txt" "huge.jsonl:1: prompt of 1500000 bytes" "huge prompt named with file and line"
expect_in "$W/out.txt" '"id":7' "the 400 kB prompt of the same batch is routed"
printf '%s\n' '{"prompt": "What is 2+2?", "id": "a"}' 'not json' '{"prompt": "Explain entropy.", "model": "Llama-2-13B"}' '{"prompt": "x", "model": "Nope"}' >"$W/b.jsonl"
expect_rc 4 "batch with a malformed line" "$BIN" route GPT-4 --batch "$W/b.jsonl"
[ "$(wc -l <"$W/out.txt")" = 4 ] && ok "batch: one line out per line in" || bad "batch lines: $(cat "$W/out.txt")"
expect_in "$W/out.txt" "b.jsonl:2:" "batch error names file and line"
expect_in "$W/out.txt" '"model":"Llama-2-13B"' "batch line's own model"
expect_in "$W/out.txt" 'b.jsonl:4: unknown model' "batch unknown model named"
# A batch file whose name is not UTF-8: its errors name it with U+FFFD (the
# JSON line out aborted, exit 134).
cp "$W/b.jsonl" "$W/b"$'\xff'".jsonl"
expect_rc 4 "batch file named with a non-UTF-8 byte" "$BIN" route GPT-4 --batch "$W/b"$'\xff'".jsonl"
[ "$(wc -l <"$W/out.txt")" = 4 ] && ok "non-UTF-8 batch name: one line out per line in" || bad "non-UTF-8 batch name: $(cat "$W/out.txt")"
expect_in "$W/out.txt" "b"$'\xef\xbf\xbd'".jsonl:2:" "batch error names the file with U+FFFD"
# Router files: corrupt, truncated, another format version, missing.
"$BIN" route GPT-4 "hi" >/dev/null 2>&1  # (built-in)
python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
open(w + "/junk.router", "wb").write(b"TPROUTER" + b"\0" * 100)
PY
expect_rc 4 "corrupt router file" "$BIN" route GPT-4 "hi" --router "$W/junk.router"
expect_in "$W/err.txt" "junk.router" "corrupt router named"
expect_rc 2 "missing router file" "$BIN" route GPT-4 "hi" --router "$W/none.router"
# Catalog: a broken user catalog is named.
echo '{"version": 1, "models": []}' >"$W/cat.json"
expect_rc 4 "broken catalog" "$BIN" route GPT-4 "hi" --catalog "$W/cat.json"
expect_in "$W/err.txt" "cat.json" "broken catalog named"

# router eval on a small labelled file (quoted multi-line prompts).
{
  echo 'prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview'
  for i in $(seq 1 30); do
    echo "\"Question $i: what is $i + $((i * 7))?
A. $i
B. $((i * 8))\",$([ $((i % 3)) = 0 ] && echo False || echo True),True"
  done
} >"$W/small.csv"
expect_rc 0 "router eval --json --plot" "$BIN" router eval "$W/small.csv" --json --plot "$W/p.svg"
python3 - "$W/out.txt" <<'PY' && ok "eval JSON has router, random and length" || bad "eval JSON"
import json, sys
j = json.load(open(sys.argv[1]))
names = [m["name"] for m in j["methods"]]
assert names == ["router", "random", "length"], names
assert j["prompts"] == 30 and abs(j["weak_accuracy"] - 20 / 30) < 1e-9 and j["strong_accuracy"] == 1
PY
head -c 5 "$W/p.svg" | grep -q '<svg' && tail -c 8 "$W/p.svg" | grep -q '</svg>' && ok "plot is an SVG" || bad "plot"
printf 'prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"a\nb",True,True\nc,Yes,True\n' >"$W/bad.csv"
expect_rc 4 "malformed label file" "$BIN" router eval "$W/bad.csv"
expect_in "$W/err.txt" "bad.csv:4:" "malformed label file: file and line"
expect_rc 2 "eval: missing data" "$BIN" router eval "$W/none.csv"
expect_rc 2 "eval: --kfold without one router per fold" "$BIN" router eval "$W/small.csv" --kfold 5

# Training (tenpak-ml; needs libtorch).
if [ -x "$(dirname "$BIN")/tenpak-ml" ]; then
  # (the same relative output name: the file records the command)
  mkdir -p "$W/d1" "$W/d2"
  expect_rc 0 "router train" bash -c "cd '$W/d1' && '$BIN' router train ../small.csv -o t.router --epochs 50 --seed 3"
  expect_rc 0 "router train again, same seed" bash -c "cd '$W/d2' && '$BIN' router train ../small.csv -o t.router --epochs 50 --seed 3"
  cmp -s "$W/d1/t.router" "$W/d2/t.router" && ok "training is deterministic for a seed" || bad "two trainings differ"
  cp "$W/d1/t.router" "$W/t1.router"
  expect_rc 0 "route with a trained router" "$BIN" route GPT-4 "hi" --router "$W/t1.router"
  expect_rc 0 "eval a trained router" "$BIN" router eval "$W/small.csv" --router "$W/t1.router"
  expect_in "$W/err.txt" "not held out" "eval warns when the router was trained on the data"
  expect_rc 4 "train: malformed label file" "$BIN" router train "$W/bad.csv" -o "$W/t3.router"
  [ ! -e "$W/t3.router" ] && ok "no router file written on error" || bad "router file left on error"
  # The file's metadata (JSON) holds the paths: one that is not UTF-8 is refused before training.
  expect_rc 2 "train: output path not UTF-8" "$BIN" router train "$W/small.csv" -o "$W/t4"$'\xff'".router" --epochs 5
  expect_in "$W/err.txt" "not valid UTF-8" "non-UTF-8 output path named"
  [ ! -e "$W/t4"$'\xff'".router" ] && ok "no router file written for it" || bad "router file written for a non-UTF-8 path"
  cp "$W/small.csv" "$W/s"$'\xff'".csv"
  expect_rc 2 "train: data path not UTF-8" "$BIN" router train "$W/s"$'\xff'".csv" -o "$W/t5.router" --epochs 5
  [ ! -e "$W/t5.router" ] && ok "no router file written for non-UTF-8 data" || bad "router file written for non-UTF-8 data"
  python3 - "$W/t1.router" "$W/v2.router" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[8] = 2
open(sys.argv[2], "wb").write(bytes(b))
PY
  expect_rc 6 "router file of another format version" "$BIN" route GPT-4 "hi" --router "$W/v2.router"
  expect_in "$W/err.txt" "version 2" "other version named"
else
  echo "skip: tenpak-ml not built (libtorch missing): router train not checked"
fi

echo "passed $pass, failed $fail"
[ "$fail" = 0 ]
