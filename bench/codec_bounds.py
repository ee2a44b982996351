#!/usr/bin/env python3
"""How small a lossless delta of one fine-tune can be under simple models (issue 15, codec generality).

For every tensor that changed (same name in both safetensors files), the change d = ft - base (float64)
and the ideal code length of the fine-tune's exact values given the base under a model of d:

  tensor-laplace   one Laplace scale per tensor (mean |d|): bits = -log2(pdf(d) * ulp(ft))
  rowcol-laplace   a Laplace scale per element from row and column mean |d| (+2 bytes per row/column)
  lowrank-R        d predicted by its rank-R truncated SVD (factors counted at 4 bytes), the residual
                   Laplace-coded per tensor: what a codec that knows a merged LoRA's rank could reach

These are code lengths of idealised entropy coders (no container, no adaptivity cost), to compare with
the XOR/byte-plane baseline and TenPak's delta measured by bench/codec_bench.sh. numpy (Debian's python3-numpy).

  /usr/bin/python3 bench/codec_bounds.py BASE.safetensors FT.safetensors [--rank R] [--json]
"""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16}


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    head.pop("__metadata__", None)
    return raw, 8 + n, head


def tensor(raw, off, meta):
    a, b = meta["data_offsets"]
    return np.frombuffer(raw[off + a:off + b], dtype=DT[meta["dtype"]])


def laplace_bytes(r, scale, ulp):
    scale = np.maximum(scale, 1e-30)
    return float((np.abs(r) / scale / np.log(2) + np.log2(2 * scale) - np.log2(ulp)).sum() / 8)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rank = 8
    if "--rank" in sys.argv:
        rank = int(sys.argv[sys.argv.index("--rank") + 1])
        args = [a for a in args if a != str(rank)]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    braw, boff, bh = read_st(args[0])
    fraw, foff, fh = read_st(args[1])
    out = {"changed_bytes": 0, "tensor_laplace": 0.0, "rowcol_laplace": 0.0, f"lowrank_{rank}": 0.0,
           "skipped": []}
    for name, meta in fh.items():
        if name not in bh or meta["dtype"] not in DT or bh[name]["dtype"] != meta["dtype"] or \
                bh[name]["shape"] != meta["shape"]:
            out["skipped"].append(name)
            continue
        ft = tensor(fraw, foff, meta)
        base = tensor(braw, boff, bh[name])
        if np.array_equal(ft.view(np.uint8), base.view(np.uint8)):
            continue
        d = ft.astype(np.float64) - base.astype(np.float64)
        ulp = np.spacing(np.abs(ft)).astype(np.float64)
        out["changed_bytes"] += ft.nbytes
        out["tensor_laplace"] += laplace_bytes(d, np.mean(np.abs(d)), ulp)
        shape = meta["shape"]
        if len(shape) == 2 and min(shape) > rank:
            D = d.reshape(shape)
            R = np.mean(np.abs(D), 1, keepdims=True)
            C = np.mean(np.abs(D), 0, keepdims=True)
            sc = (R * C / max(np.mean(np.abs(D)), 1e-30)).ravel()
            out["rowcol_laplace"] += laplace_bytes(d, sc, ulp) + 2 * (shape[0] + shape[1])
            U, s, Vt = np.linalg.svd(D, full_matrices=False)
            res = (D - (U[:, :rank] * s[:rank]) @ Vt[:rank]).ravel()
            out[f"lowrank_{rank}"] += laplace_bytes(res, np.mean(np.abs(res)), ulp) + 4 * rank * (shape[0] + shape[1])
        else:
            t = laplace_bytes(d, np.mean(np.abs(d)), ulp)
            out["rowcol_laplace"] += t
            out[f"lowrank_{rank}"] += t
    if "--json" in sys.argv:
        print(json.dumps(out, indent=1))
        return 0
    cb = out["changed_bytes"]
    print(f"changed tensors: {cb} bytes")
    for k in ("tensor_laplace", "rowcol_laplace", f"lowrank_{rank}"):
        print(f"  {k:16s} {out[k]:12.0f} B  {out[k] / cb:.4f} of the changed bytes" if cb else f"  {k}: -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
