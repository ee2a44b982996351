#!/usr/bin/env python3
"""lossy_bench.sh's table and plot: delta size against KL divergence (log axes),
one series per method and pair, from lossy.tsv. Python stdlib only.

  python3 bench/lossy_plot.py lossy.tsv lossy.svg lossy.md
"""
import math
import sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
W, H, L, R, T, B = 760, 480, 70, 170, 30, 50
pts = [(r[0], r[1], int(r[2]), float(r[5])) for r in rows if r[1] != "lossless" and float(r[5]) > 0]
xs = [math.log10(p[2]) for p in pts]
ys = [math.log10(p[3]) for p in pts]
x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
X = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)
Y = lambda v: T + (y1 - math.log10(v)) / (y1 - y0) * (H - T - B)
colors = {"sparse": "#d62728", "dare": "#ff7f0e", "bitdelta": "#2ca02c", "qdelta": "#9467bd", "lowrank": "#1f77b4"}
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="18" font-size="13">Lossy deltas of stories260K fine-tunes: size vs KL to the true fine-tune</text>']
for e in range(x0, x1 + 1):
    out.append(f'<line x1="{X(10**e)}" y1="{T}" x2="{X(10**e)}" y2="{H-B}" stroke="#ddd"/>'
               f'<text x="{X(10**e)}" y="{H-B+15}" text-anchor="middle">1e{e}</text>')
for e in range(y0, y1 + 1):
    out.append(f'<line x1="{L}" y1="{Y(10**e)}" x2="{W-R}" y2="{Y(10**e)}" stroke="#ddd"/>'
               f'<text x="{L-5}" y="{Y(10**e)+4}" text-anchor="end">1e{e}</text>')
out.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">delta size (bytes, index + data)</text>')
out.append(f'<text x="15" y="{(T+H-B)/2}" transform="rotate(-90 15 {(T+H-B)/2})" text-anchor="middle">mean KL (nats)</text>')
legend = 0
for pair, dash in (("full", ""), ("hub", "1,2"), ("lora8", "4,3")):
    for m, c in colors.items():
        s = sorted((p[2], p[3]) for p in pts if p[0] == pair and p[1].split(":")[0] == m)
        if not s:
            continue
        d = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in s)
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-dasharray="{dash}"/>')
        for a, b in s:
            out.append(f'<circle cx="{X(a):.1f}" cy="{Y(b):.1f}" r="2.5" fill="{c}"/>')
        ly = T + 12 + 15 * legend
        out.append(f'<line x1="{W-R+10}" y1="{ly}" x2="{W-R+35}" y2="{ly}" stroke="{c}" stroke-dasharray="{dash}"/>'
                   f'<text x="{W-R+40}" y="{ly+4}">{m} ({pair})</text>')
        legend += 1
for r in rows:
    if r[1] == "lossless":
        ly = T + 12 + 15 * legend
        out.append(f'<text x="{W-R+10}" y="{ly+4}">lossless {r[0]}: {int(r[2]):,} B</text>')
        legend += 1
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
md = ["| pair | method | delta bytes | / fp16 size | ppl ratio | KL (nats) | top-1 | build+measure s |", "|---|---|---|---|---|---|---|---|"]
for r in rows:
    md.append("| " + " | ".join([r[0], r[1], f"{int(r[2]):,}"] + r[3:]) + " |")
open(sys.argv[3], "w").write("\n".join(md) + "\n")
