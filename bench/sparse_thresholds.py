#!/usr/bin/env python3
"""The seeds' sparse method needs |delta| thresholds; this prints, for each
FRACTION given, the threshold that keeps that fraction of the changed entries
of a fine-tune's block matrices (q/k/v/o/gate/up/down of every layer).

usage: sparse_thresholds.py PAIR_DIR FRACTION...
PAIR_DIR holds base/model.safetensors and finetune/model.safetensors (F32, as
`tenpak fixture stories-ft` writes them). Used by bench/lossy_bench.sh and
tests/lossy/lossy_e2e_test.sh so both pick thresholds the same way. Standard
library only (no numpy): it runs on any python3.
"""
import json
import struct
import sys
from array import array
from fractions import Fraction


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        a = array("f")
        a.frombytes(b[8 + n + s:8 + n + e])
        out[k] = a
    return out


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    base = load(argv[1] + "/base/model.safetensors")
    ft = load(argv[1] + "/finetune/model.safetensors")
    d = sorted((abs(f - b) for k in ft if ".layers." in k and k.endswith("proj.weight")
                for f, b in zip(ft[k], base[k])), reverse=True)
    for keep in argv[2:]:
        # Exact fraction, so "0.05" is index len // 20, with no float rounding.
        print("%.6g" % d[int(Fraction(keep) * len(d))])


if __name__ == "__main__":
    main(sys.argv)
