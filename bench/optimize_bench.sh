#!/usr/bin/env bash
# tenpak optimize on stories260K: time to a decision of the smart search
# against --all (each from an empty cache), agreement of the two over a
# grid of constraint sets x hardware profiles (from one set of
# measurements, so any disagreement is the search's, not noise), the full
# evaluations each ran, and the savings table (winner against the
# unquantized model and against gptq-4bit-128g for everything).
# Evaluation: WikiText-2 test (no preset saw it); calibration: TinyShakespeare.
#
# usage: bench/optimize_bench.sh [BUILD_DIR]   (default build; needs tenpak-ml)
# env:   SHARED (default ../shared), WINDOWS (default 16), SAMPLE (default 4),
#        CTX (default 256), CALIB_SAMPLES (default 16), THREADS (default 1: the machine is shared),
#        WORK (default a temp dir), TENPAK (the binary). Prints a markdown report on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
tenpak=${TENPAK:-$build/tenpak}  # or $build/tenpak-ml itself
shared=${SHARED:-$here/../shared}
windows=${WINDOWS:-16}
sample=${SAMPLE:-4}
ctx=${CTX:-256}
samples=${CALIB_SAMPLES:-16}
threads=${THREADS:-1}
work=${WORK:-$(mktemp -d /tmp/tenpak-optimize-bench.XXXXXX)}
bin=$shared/data/llama2c/stories260K.bin
tok=$shared/data/llama2c/tok512.bin
calib=$shared/data/text/tinyshakespeare.txt
wiki=$shared/data/text/wikitext-2/test.txt
for f in "$tenpak" "$bin" "$tok" "$calib" "$wiki"; do
  [ -e "$f" ] || { echo "missing $f" >&2; exit 2; }
done
mkdir -p "$work/runs"
echo "work dir: $work" >&2
# Wall times depend on the machine's load (shared): recorded before and after.
uptime > "$work/runs/load-start"
git -C "$here" rev-parse --short HEAD > "$work/runs/commit" 2>/dev/null || echo unknown > "$work/runs/commit"
m=$work/fp32
[ -d "$m" ] || "$tenpak" convert llama2c "$bin" --tokenizer "$tok" -o "$m" >/dev/null
common=(--text "$wiki" --calib "$calib" --ctx "$ctx" --windows "$windows" --sample-windows "$sample"
        --calib-samples "$samples" --threads "$threads" --json)

# 1. Time to a decision from an empty cache.
for hw in T4 this-machine; do
  for mode in smart all; do
    rm -rf "$work/cold-$hw-$mode"
    flag=(); [ $mode = all ] && flag=(--all)
    s=$(date +%s.%N)
    "$tenpak" optimize "$m" "${common[@]}" --max-kld 0.1 --hardware $hw --cache-dir "$work/cold-$hw-$mode" "${flag[@]}" \
      > "$work/runs/cold-$hw-$mode.json" 2>"$work/runs/cold-$hw-$mode.err" || [ $? = 8 ]
    e=$(date +%s.%N)
    /usr/bin/python3 -c "print($e - $s)" > "$work/runs/cold-$hw-$mode.seconds"
  done
done

# 2. The grid, from one set of measurements (the warm cache of an --all run).
cache=$work/cold-T4-all
grid=(
  "--max-kld 0.01" "--max-kld 0.05" "--max-kld 0.1" "--max-kld 0.2" "--max-kld 0.5"
  "--max-ppl-delta 0.5" "--max-ppl-delta 1" "--max-ppl-delta 2" "--max-ppl-delta 5" "--max-ppl-delta 10"
  "--max-kld 0.1 --max-ppl-delta 2" "--max-kld 0.05 --min-compression 1.5" "--min-compression 1.6"
  "--max-kld 0.2 --max-latency-ms 0.05" "--max-kld 1e-6 --min-compression 1.5" ""
)
i=0
for hw in this-machine T4 A10G A100-80GB; do
  for g in "${grid[@]}"; do
    i=$((i + 1))
    for mode in smart all; do
      flag=(); [ $mode = all ] && flag=(--all)
      # shellcheck disable=SC2086
      "$tenpak" optimize "$m" "${common[@]}" $g --hardware $hw --cache-dir "$cache" "${flag[@]}" \
        > "$work/runs/grid-$i-$mode.json" 2>/dev/null || [ $? = 8 ]
    done
    echo "$hw|$g" > "$work/runs/grid-$i.set"
  done
done

uptime > "$work/runs/load-end"

/usr/bin/python3 - "$work/runs" "$i" "$threads" "$windows" "$sample" "$ctx" "$samples" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); n = int(sys.argv[2])
def load(p): return json.loads((d / p).read_text())
print(f"commit {(d / 'commit').read_text().strip()}; THREADS={sys.argv[3]} WINDOWS={sys.argv[4]} SAMPLE={sys.argv[5]} "
      f"CTX={sys.argv[6]} CALIB_SAMPLES={sys.argv[7]}")
print(f"load at start: `{(d / 'load-start').read_text().strip()}`; at end: `{(d / 'load-end').read_text().strip()}`\n")
print("### Time to a decision (empty cache, `--max-kld 0.1`)\n")
print("| hardware | smart: s | probes | full evaluations | --all: s | probes | full evaluations | same winner |")
print("|---|---|---|---|---|---|---|---|")
for hw in ["T4", "this-machine"]:
    s, a = load(f"cold-{hw}-smart.json"), load(f"cold-{hw}-all.json")
    ts, ta = (float((d / f"cold-{hw}-{m}.seconds").read_text()) for m in ("smart", "all"))
    print(f"| {hw} | {ts:.1f} | {s['search']['probes']} | {s['search']['evaluations']} | {ta:.1f} | {a['search']['probes']} | "
          f"{a['search']['evaluations']} | {'yes' if s['winner'] == a['winner'] else 'NO'} ({s['winner']} / {a['winner']}) |")
print("\n### Agreement over the grid (one set of measurements)\n")
print("| hardware | constraints | winner (--all) | smart | evaluations smart / all | USD/Mtok | saves vs unquantized | vs gptq-4bit-128g (meets?) |")
print("|---|---|---|---|---|---|---|---|")
agree = se = ae = 0
for i in range(1, n + 1):
    hw, g = (d / f"grid-{i}.set").read_text().strip().split("|", 1)
    s, a = load(f"grid-{i}-smart.json"), load(f"grid-{i}-all.json")
    agree += s["winner"] == a["winner"]; se += s["search"]["evaluations"]; ae += a["search"]["evaluations"]
    cost = sav_u = sav_g = "-"
    if a["winner"]:
        w = next(r for r in a["candidates"] if r["name"] == a["winner"])
        cost = f"{w['cost_per_mtok']:.4g}" + (" (est.)" if w.get("estimated") else "")
        sv = {x["against"]: x for x in a["savings"]}
        sav_u = f"{100 * sv['unquantized']['saving']:.1f}%"
        m = sv["gptq-4bit-128g"].get("baseline_meets_constraints")
        sav_g = f"{100 * sv['gptq-4bit-128g']['saving']:.1f}% ({'yes' if m else 'no' if m is False else '?'})"
    print(f"| {hw} | `{g or '(none)'}` | {a['winner'] or 'none (exit 8)'} | {s['winner'] or 'none'} | "
          f"{s['search']['evaluations']} / {a['search']['evaluations']} | {cost} | {sav_u} | {sav_g} |")
print(f"\n{agree} of {n} constraint sets: same winner. Full evaluations: smart {se}, --all {ae} "
      f"({100 * se / ae:.1f}%; average {se / n:.2f} vs {ae / n:.2f} per decision).")
print("\n### Measured candidates (this machine; WikiText-2 test)\n")
a = load("cold-this-machine-all.json")
print(f"Note printed with these figures: {a.get('note', '(none)')}.\n")
print("| candidate | disk bytes | compression vs fp16 | KL | ppl delta % | recon. error | p50 / p95 ms/token | tok/s | peak RSS MiB (measured) | of which before loading |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in a["candidates"]:
    if "error" in r:
        print(f"| {r['name']} | failed: {r['error'][:90]} | | | | | | | | |"); continue
    re = r.get("recon_error"); re = "n/a" if re is None else f"{re:.4f}"
    mem = f"{r['peak_memory_bytes'] / 2**20:.1f}" + ("" if r.get("peak_memory_measured") else " (ESTIMATED)")
    base = f"{r['baseline_rss_bytes'] / 2**20:.1f}" if "baseline_rss_bytes" in r else "-"
    print(f"| {r['name']} | {r['disk_bytes']} | {r['compression']:.3f} | {r.get('kl_mean', 0):.5f} | {r.get('ppl_delta_pct', 0):+.2f} | "
          f"{re} | {r['latency_ms_p50']:.3f} / {r['latency_ms_p95']:.3f} | {r['tokens_per_s']:.0f} | {mem} | {base} |")
PY
