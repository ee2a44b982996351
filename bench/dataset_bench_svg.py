#!/usr/bin/env python3
"""dataset_bench_svg.py RESULTS.tsv OUT.svg: delta size as a fraction of the derived set, per pair,
TenPak beside each baseline (log scale; lower is better). Rows: name, derived bytes, zstd -19,
patch-from, xdelta3 -9, CDC 64K, TenPak, TenPak --fast ("-" where not run). Stdlib only."""
import math
import sys

SERIES = [("zstd -19", 2, "#bbbbbb"), ("patch-from", 3, "#8da0cb"), ("xdelta3 -9", 4, "#66c2a5"),
          ("CDC 64K", 5, "#e5c494"), ("TenPak", 6, "#d62728")]


def main():
    rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
    if not rows:
        return
    vals = [float(r[i]) / float(r[1]) for r in rows for _, i, _ in SERIES if r[i] != "-" and float(r[i]) > 0]
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 1e-4
    hi = 1.0
    W, H, left, top, bottom = 120 + 70 * len(rows), 360, 60, 40, 90
    ph = H - top - bottom
    def y(v):
        v = min(max(v, lo), hi)
        return top + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<text x="{left}" y="20" font-size="13">Delta size / derived size per pair (log scale, lower is better)</text>']
    d = 1
    while d >= lo:
        o.append(f'<line x1="{left}" x2="{W - 10}" y1="{y(d):.1f}" y2="{y(d):.1f}" stroke="#eee"/>'
                 f'<text x="{left - 4}" y="{y(d) + 4:.1f}" text-anchor="end">{d:g}</text>')
        d /= 10
    bw = 60 / len(SERIES)
    for k, r in enumerate(rows):
        x0 = left + 10 + 70 * k
        for j, (name, i, col) in enumerate(SERIES):
            if r[i] == "-":
                continue
            v = float(r[i]) / float(r[1])
            o.append(f'<rect x="{x0 + j * bw:.1f}" y="{y(v):.1f}" width="{bw - 1:.1f}" height="{top + ph - y(v):.1f}" '
                     f'fill="{col}"><title>{r[0]} {name}: {v:.4f}</title></rect>')
        o.append(f'<text transform="translate({x0 + 30},{top + ph + 8}) rotate(40)">{r[0]}</text>')
    for j, (name, _, col) in enumerate(SERIES):
        o.append(f'<rect x="{left + 110 * j}" y="{H - 18}" width="10" height="10" fill="{col}"/>'
                 f'<text x="{left + 110 * j + 14}" y="{H - 9}">{name}</text>')
    o.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
