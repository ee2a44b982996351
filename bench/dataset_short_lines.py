#!/usr/bin/env python3
"""A base/derived pair of short text lines (16-40 bytes each) for the dataset builder's memory runs.

    bench/dataset_short_lines.py OUT SIZE_MB [SEED]

Writes OUT/base/data.txt (SIZE_MB MiB of lines 'id<TAB>three words') and OUT/derived/data.txt: the same
lines with 3% edited in place (one word replaced), 1% deleted, and 2% new lines appended at the end.
Deterministic for a seed. docs/BENCHMARKS.md, Dataset deltas run 19.
"""
import os
import random
import sys

out, size_mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
syl = ["ka", "to", "ri", "mu", "sen", "lo", "va", "de", "pi", "nor", "bel", "qu", "an", "tis", "ro", "ge"]
vocab = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(4096)]
os.makedirs(out + "/base", exist_ok=True)
os.makedirs(out + "/derived", exist_ok=True)
target = size_mb << 20
with open(out + "/base/data.txt", "w") as b, open(out + "/derived/data.txt", "w") as d:
    size, i = 0, 0
    while size < target:
        lines = []
        for _ in range(65536):
            lines.append("%d\t%s %s %s\n" % (i, rng.choice(vocab), rng.choice(vocab), rng.choice(vocab)))
            i += 1
        b.write("".join(lines))
        size += sum(map(len, lines))
        der = []
        for s in lines:
            r = rng.random()
            if r < 0.03:
                w = s.split(" ")
                w[1] = rng.choice(vocab)
                der.append(" ".join(w))
            elif r >= 0.04:
                der.append(s)
        d.write("".join(der))
    n_new = i // 50
    for k in range(0, n_new, 65536):
        d.write("".join("%d\t%s %s %s\n" % (i + j, rng.choice(vocab), rng.choice(vocab), rng.choice(vocab))
                        for j in range(k, min(k + 65536, n_new))))
