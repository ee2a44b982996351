#!/usr/bin/env python3
"""What an ideal coder would need for the distortion a gptqdelta build reached (docs/LOSSY.md).

    /usr/bin/python3 bench/lossy_rd.py REPORT.json BASE/model.safetensors FT/model.safetensors

REPORT.json is the build report of a `--lossy gptqdelta:BITS` build (`--report FILE`, or its `--json`
output; DELTA/tenpak.lossy.json of a delta built before the sixth pass): it holds, per approximated matrix, GPTQ's objective
tr((D - Q) H (D - Q)^T) / 2 (the layer output's squared error on the calibration inputs), H's eigenvalues
and the mean square of the change D. Model: the rows of D independent, each with independent entries of
the measured variance. For that source and the layer objective as distortion:
  - gauss_bits: the rate of the Gaussian source (reverse water-filling over the eigenvalues of H s^2 / 2);
    a Gaussian is the hardest source of its variance, so this is what an ideal coder needs at most;
  - slb_bits: the Shannon lower bound with the measured marginal entropy of D's entries (histogram):
    h(u) - (n/2) log2(2 pi e D / n) per row, u the whitened row; no coder of such a source does better.
Prints per matrix and in total (bytes), beside the bytes the build spent on those matrices.
"""
import json
import math
import struct
import sys

import numpy as np

import codec_bounds  # same directory: one safetensors reader for the bench scripts


def read_st(path):
    """{name: float64 array} of an F32 safetensors file (codec_bounds' reader)."""
    raw, off, head = codec_bounds.read_st(path)
    out = {}
    for k, v in head.items():
        assert v["dtype"] == "F32", (k, v["dtype"])
        out[k] = codec_bounds.tensor(raw, off, v).reshape(v["shape"]).astype(np.float64)
    return out


def water(v, target):
    """theta with sum(min(theta, v)) = target (per row), and the rate in bits."""
    lo, hi = 0.0, float(v.max())
    if target >= v.sum():
        return hi, 0.0
    for _ in range(200):
        th = (lo + hi) / 2
        if np.minimum(th, v).sum() < target:
            lo = th
        else:
            hi = th
    th = (lo + hi) / 2
    r = 0.5 * np.log2(v[v > th] / th).sum()
    return th, float(r)


def entropy_gap(d):
    """h(Gaussian of d's variance) - h(d's entries), bits per entry, from a histogram (>= 0 in theory;
    a histogram's entropy is biased low, so this gap is if anything too large: the bound stays a bound)."""
    s = d.std()
    z = d.ravel() / s
    bins = max(32, int(math.sqrt(z.size)))
    p, edges = np.histogram(z, bins=bins)
    w = edges[1] - edges[0]
    p = p[p > 0] / z.size
    h = float(-(p * np.log2(p)).sum() + math.log2(w))
    hg = 0.5 * math.log2(2 * math.pi * math.e)
    return hg - h


def main():
    side = json.load(open(sys.argv[1]))
    base, ft = read_st(sys.argv[2]), read_st(sys.argv[3])
    tot = {"gauss": 0.0, "slb": 0.0, "spent": 0, "n": 0}
    print("matrix\tn\tobjective\tgauss_bits/w\tslb_bits/w\tspent_bits/w")
    for t in side["tensors"]:
        if "hessian_eigenvalues" not in t:
            continue
        name = t["name"]
        d = ft[name] - base[name]
        rows, n = d.shape
        lam = np.array(t["hessian_eigenvalues"], dtype=np.float64)
        s2 = t["delta_mean_square"]
        v = s2 * lam / 2
        per_row = t["objective"] / rows
        _, rg = water(v, per_row)
        gap = entropy_gap(d)
        # SLB of the whitened row: h(u) = h_gauss(u) - n * gap; h_gauss(u) = 0.5 sum log2(2 pi e v_i).
        slb = max(0.0, 0.5 * np.log2(2 * math.pi * math.e * v[v > 0]).sum() - n * gap
                  - 0.5 * n * math.log2(2 * math.pi * math.e * per_row / n))
        spent = t.get("lossy_bytes", 0) * 8 if t.get("stored") == "approx" else 0
        tot["gauss"] += rg * rows
        tot["slb"] += slb * rows
        tot["spent"] += spent
        tot["n"] += rows * n
        print(f"{name}\t{rows * n}\t{t['objective']:.4g}\t{rg / n:.3f}\t{slb / n:.3f}\t{spent / (rows * n):.3f}")
    n = tot["n"]
    if n == 0:
        sys.exit(f"lossy_rd.py: {sys.argv[1]}: no matrix carries GPTQ's objective and H's eigenvalues "
                 "(an untuned `--lossy gptqdelta:BITS` build records them)")
    print(f"total\t{n}\t-\t{tot['gauss'] / n:.3f}\t{tot['slb'] / n:.3f}\t{tot['spent'] / n:.3f}")
    print(json.dumps({"weights": n, "gauss_bytes": round(tot["gauss"] / 8), "slb_bytes": round(tot["slb"] / 8),
                      "spent_bytes": tot["spent"] // 8}))


if __name__ == "__main__":
    main()
