#!/usr/bin/env bash
# Quantization presets on stories260K, in one run: every preset and the RTN
# baseline at the same bits and groups, each quantized (calibration:
# TinyShakespeare), reloaded the way its loader reads it, and evaluated
# against the unquantized model on WikiText-2 test (text no preset saw):
# size against fp16, perplexity ratio, KL divergence (mean, p99), top-1
# agreement, quantize time, decode tokens/s.
#
# Writes docs/quant_measured.json (what `tenpak presets` shows) and the
# table between the quant_bench markers of docs/BENCHMARKS.md.
#
# usage: bench/quant_bench.sh [BUILD_DIR]   (default build; needs tenpak-ml)
# env:   SHARED (default ../shared), EVAL_CHUNKS (windows of 256 tokens, default 64),
#        CALIB_SAMPLES (default 64), THREADS (default 2), WORK (default a temp dir),
#        TENPAK (default BUILD_DIR/tenpak; BUILD_DIR/tenpak-ml works too),
#        MODEL_DIR (an HF model directory to measure instead of stories260K, e.g. one
#        `tenpak-ml fixture llama-gen` wrote), MODEL_LABEL (its name in the table),
#        MARK (table markers in docs/BENCHMARKS.md, default quant_bench),
#        MEASURED_JSON (default docs/quant_measured.json; "-" = WORK/measured.json only),
#        PRESETS (space-separated list; an entry NAME@mse runs NAME with --mse true:
#        the clipping search alone, to separate it from GPTQ's own gain),
#        GPTQ_FLAGS (extra `tenpak quantize` flags for gptq-* entries),
#        EVAL_FLAGS (extra `tenpak eval` flags, e.g. "--runs 3 --decode-tokens 16" to
#        shorten the speed measurement on a large model),
#        LOG_TIMES=1 (print each preset's start, quantize and eval seconds to stderr),
#        TABLE_ONLY=1 (quantize and evaluate nothing: write the table and JSON from what
#        an earlier or still running run with the same WORK has finished; the rest are
#        listed as not finished)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
tenpak=${TENPAK:-$build/tenpak}
shared=${SHARED:-$here/../shared}
chunks=${EVAL_CHUNKS:-64}
samples=${CALIB_SAMPLES:-64}
threads=${THREADS:-2}
work=${WORK:-$(mktemp -d /tmp/tenpak-quant-bench.XXXXXX)}
bin=$shared/data/llama2c/stories260K.bin
tok=$shared/data/llama2c/tok512.bin
calib=$shared/data/text/tinyshakespeare.txt
wiki=$shared/data/text/wikitext-2/test.txt
model_dir=${MODEL_DIR:-}
label=${MODEL_LABEL:-stories260K float32}
mark=${MARK:-quant_bench}
measured_json=${MEASURED_JSON:-$here/docs/quant_measured.json}
need=("$tenpak" "$calib" "$wiki")
[ -n "$model_dir" ] || need+=("$bin" "$tok")
for f in "${need[@]}"; do
  [ -e "$f" ] || { echo "missing $f" >&2; exit 2; }
done
mkdir -p "$work"
echo "work dir: $work" >&2

if [ -n "$model_dir" ]; then
  fp32=$(cd "$model_dir" && pwd)
else
  fp32=$work/fp32
  [ -d "$fp32" ] || "$tenpak" convert llama2c "$bin" --tokenizer "$tok" -o "$fp32" >/dev/null
fi
read -r -a eval_flags <<< "${EVAL_FLAGS:-}"
[ -n "${TABLE_ONLY:-}" ] || "$tenpak" eval "$fp32" --text "$wiki" --ctx 256 --chunks "$chunks" --threads "$threads" "${eval_flags[@]}" --json \
  > "$work/fp32.eval.json"

presets=${PRESETS:-"gptq-4bit-128g rtn-4bit-128g rtn-4bit-128g@mse gptq-4bit-32g rtn-4bit-32g rtn-4bit-32g@mse
gptq-3bit-128g rtn-3bit-128g rtn-3bit-128g@mse gptq-8bit-128g rtn-8bit-128g awq-4bit-128g awq-4bit-64g rtn-4bit-64g
bnb-nf4 bnb-fp4 bnb-int8"}
for p in $presets; do
  [ -z "${TABLE_ONLY:-}" ] || break
  out=$work/$p
  rm -rf "$out" "$work/$p.time" "$work/$p.quant.json" "$work/$p.eval.json" "$work/$p.quant.err"
  extra=()
  case $p in *@mse) extra=(--mse true);; gptq-*) read -r -a extra <<< "${GPTQ_FLAGS:-}";; esac
  t0=$(date +%s.%N)
  [ -z "${LOG_TIMES:-}" ] || echo "$(date -u +%H:%M:%S) $p: quantize" >&2
  if "$tenpak" quantize "$fp32" --preset "${p%@*}" -o "$out" --calib "$calib" --calib-samples "$samples" --seq-len 256 \
       --threads "$threads" "${extra[@]}" --json > "$work/$p.quant.json" 2> "$work/$p.quant.err"; then
    t1=$(date +%s.%N)
    echo "$t0 $t1" > "$work/$p.time"
    [ -z "${LOG_TIMES:-}" ] || echo "$(date -u +%H:%M:%S) $p: quantized in $(echo "$t1 - $t0" | bc) s, eval" >&2
    "$tenpak" eval "$out" --text "$wiki" --ctx 256 --chunks "$chunks" --reference "$fp32" --threads "$threads" \
      "${eval_flags[@]}" --json > "$work/$p.eval.json"
    echo "$(date -u +%H:%M:%S) $p done" >&2
  else
    echo "$p refused: $(tail -1 "$work/$p.quant.err")" >&2
    rm -f "$work/$p.quant.json"
  fi
done

/usr/bin/python3 - "$work" "$here" "$presets" "$chunks" "$samples" "$threads" "$fp32" "$label" "$mark" "$measured_json" <<'EOF'
import json, os, struct, sys, datetime
work, here, presets, chunks, samples, threads = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6]
fp32, label, mark, measured_json = sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10]

def st_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))

def fp16_bytes(d):
    # Every tensor of the fp32 model at 2 bytes per element, plus the header.
    n = 0
    for f in os.listdir(d):
        if f.endswith(".safetensors"):
            with open(os.path.join(d, f), "rb") as fh:
                hl = struct.unpack("<Q", fh.read(8))[0]
                hdr = json.loads(fh.read(hl))
            n += 8 + hl
            for k, v in hdr.items():
                if k != "__metadata__":
                    e = 1
                    for s in v["shape"]:
                        e *= s
                    n += 2 * e
    return n

ref = json.load(open(os.path.join(work, "fp32.eval.json")))
f16 = fp16_bytes(fp32)
rows, measured = [], {}
for p in presets:
    qj = os.path.join(work, p + ".quant.json")
    ej = os.path.join(work, p + ".eval.json")
    if os.path.exists(qj) and not os.path.exists(os.path.join(work, p + ".time")):
        rows.append((p, None, "not finished: quantization did not finish"))
        continue
    if os.path.exists(qj) and not (os.path.exists(ej) and os.path.getsize(ej) > 0):
        rows.append((p, None, "not finished: quantized, evaluation did not finish"))
        continue
    if not os.path.exists(qj):
        ef = os.path.join(work, p + ".quant.err")
        if not os.path.exists(ef):
            rows.append((p, None, "not finished: not started when the run was stopped"))
            continue
        err = open(ef).read().strip().splitlines()
        if not os.path.exists(os.path.join(work, p + ".time")) and not (err and "error" in err[-1]):
            rows.append((p, None, "not finished: quantization did not finish"))
            continue
        rows.append((p, None, err[-1] if err else "failed"))
        continue
    q = json.load(open(qj))
    e = json.load(open(os.path.join(work, p + ".eval.json")))
    t0, t1 = map(float, open(os.path.join(work, p + ".time")).read().split())
    m = {
        "size_bytes": st_bytes(os.path.join(work, p)),
        "size_vs_fp16": st_bytes(os.path.join(work, p)) / f16,
        "ppl": e["perplexity"], "ppl_ratio": e["perplexity_ratio"],
        "kl_mean": e["kl_mean"], "kl_p99": e["kl_p99"], "top1": e["top1_agreement"],
        "quantize_s": t1 - t0, "decode_tok_s": e["speed"]["decode_tokens_per_s"],
        "linears_quantized": q["linears_quantized"], "linears_total": q["linears_total"],
    }
    measured[p] = m
    rows.append((p, m, ""))

out = {
    "model": label,
    "source": "bench/quant_bench.sh",
    "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
    "eval": {"text": "WikiText-2 test", "ctx": 256, "windows": ref["windows"], "scored_tokens": ref["scored_tokens"]},
    "calibration": {"text": "TinyShakespeare", "samples": int(samples), "seq_len": 256},
    "fp32": {"ppl": ref["perplexity"], "decode_tok_s": ref["speed"]["decode_tokens_per_s"],
             "size_bytes": st_bytes(fp32), "fp16_bytes": f16},
    "presets": measured,
}
for path in [os.path.join(work, "measured.json")] + ([] if measured_json == "-" else [measured_json]):
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")

def rtn_of(p):
    if "@" in p:
        return None
    if p.startswith("gptq-"):
        return "rtn-" + p[5:]
    if p.startswith("awq-"):
        return "rtn-" + p[4:]
    return None

lines = []
extra = "".join(f", {k}={os.environ[k]}" for k in ("GPTQ_FLAGS", "EVAL_FLAGS") if os.environ.get(k))
lines.append(f"Run {out['date']}, `bench/quant_bench.sh` (EVAL_CHUNKS={chunks}, CALIB_SAMPLES={samples}, THREADS={threads}{extra}): "
             f"{label}, perplexity {ref['perplexity']:.3f} on WikiText-2 test "
             f"({ref['windows']} windows of 256, {ref['scored_tokens']} tokens scored), decode {ref['speed']['decode_tokens_per_s']:.0f} tok/s; "
             f"fp16 size {f16} bytes. KL = mean KL(fp32 || quantized) of next-token distributions, nats.")
lines.append("")
lines.append("| preset | linears quantized | size vs fp16 | ppl ratio | KL mean | KL p99 | top-1 | quantize s | decode tok/s | RTN same bits: KL | KL removed vs RTN |")
lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
for p, m, err in rows:
    if m is None:
        what = err if err.startswith("not finished") else "refused: " + err
        lines.append(f"| {p} | {what.replace('|', '/')} | | | | | | | | | |")
        continue
    r = rtn_of(p)
    rk, rem = "", ""
    if r and r in measured:
        rk = f"{measured[r]['kl_mean']:.5f}"
        if measured[r]["kl_mean"] > 0:
            rem = f"{100 * (1 - m['kl_mean'] / measured[r]['kl_mean']):.0f}%"
    lines.append(f"| {p} | {m['linears_quantized']}/{m['linears_total']} | {100*m['size_vs_fp16']:.1f}% | {m['ppl_ratio']:.4f} | "
                 f"{m['kl_mean']:.5f} | {m['kl_p99']:.4f} | {100*m['top1']:.1f}% | {m['quantize_s']:.1f} | {m['decode_tok_s']:.0f} | {rk} | {rem} |")
table = "\n".join(lines) + "\n"
with open(os.path.join(work, "table.md"), "w") as fh:
    fh.write(table)
bm = os.path.join(here, "docs", "BENCHMARKS.md")
s = open(bm).read()
b, e = f"<!-- {mark}:begin -->", f"<!-- {mark}:end -->"
if b in s and e in s:
    s = s[: s.index(b) + len(b)] + "\n" + table + s[s.index(e):]
    open(bm, "w").write(s)
    print("updated", bm, file=sys.stderr)
else:
    print(f"docs/BENCHMARKS.md has no {mark} markers; table in", os.path.join(work, "table.md"), file=sys.stderr)
print(table)
EOF
