#!/usr/bin/env python3
"""How far a lossy delta's grouped codes are coded from their empirical entropy (issue 20, eighth pass).

For every codec-11 frame of sub-method 3 (grouped: codes bit-packed, body zstd when smaller) or 4
(grouped_rc: codes range-coded in 9 contexts), decoded with tests/golden/spec_decode.py (the second
decoder, written from docs/FORMAT.md), it compares the bytes the code stream takes in the payload
(payload minus its 6 B head, the body's header and the float16 scales; for a zstd body the whole
compressed body less those) with:

  H0        n * H(empirical code frequencies of the frame) / 8: what a static order-0 coder needs with
            the frequencies given for free (a lower bound for any order-0 coder; a real one sends them)
  H|left    the same, conditioned on the code to the left in the row (static, contexts free)
  H|up      the same, conditioned on the code above
  KT0       an adaptive order-0 multi-symbol arithmetic coder (Krichevsky-Trofimov counts, nothing
            sent ahead): what a coder that learns the frequencies as it goes would write

and prints the totals per sub-method. "On the table" is the coded size less the smallest of KT0 and
the coded size, frame by frame: what a better coder of the same codes, under the same frame layout,
could save without knowing the frequencies ahead.

  python3 bench/lossy_entropy.py DIR [--frames]
"""
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "golden"))
import spec_decode as sd  # noqa: E402


def entropy_bits(cnt):
    n = sum(cnt.values())
    return -sum(c * math.log2(c / n) for c in cnt.values() if c)


def cond_entropy_bits(ctx, codes):
    g = defaultdict(Counter)
    for c, q in zip(ctx, codes):
        g[c][q] += 1
    return sum(entropy_bits(v) for v in g.values())


def kt_bits(codes, alphabet):
    cnt = [0.5] * alphabet
    tot, bits = 0.5 * alphabet, 0.0
    for q in codes:
        bits -= math.log2(cnt[q] / tot)
        cnt[q] += 1
        tot += 1
    return bits


def rc_codes(body, count, b, z2, cols, skip):
    """Sub-method 4's codes (docs/FORMAT.md): MSB first down a binary tree in one of 9 contexts."""
    rd = sd.RangeDecoder(body)
    probs = [[2048, 0] for _ in range(9 << b)]
    codes, cls = [], []
    for i in range(count):
        t = skip + i
        left = cls[i - 1] if t % cols and i > 0 else 1
        up = cls[i - cols] if i >= cols else 1
        c = 3 * left + up
        node = 1
        for _ in range(b):
            node = 2 * node + rd.bit(probs[(c << b) + node])
        q = node - (1 << b)
        codes.append(q)
        cls.append(0 if 2 * q < z2 else 1 if 2 * q == z2 else 2)
    return codes


def main():
    d = Path(sys.argv[1])
    show = "--frames" in sys.argv[2:]
    _, _, _, frames = sd.parse_index((d / "tenpak.idx").read_bytes())
    dat = (d / "tenpak.dat").read_bytes()
    tot = defaultdict(lambda: defaultdict(float))
    for f in frames:
        if f["codec"] != 11:
            continue
        p = dat[f["data_offset"]:f["data_offset"] + f["data_len"]]
        method, flags = p[0], p[1]
        if method not in (3, 4):
            continue
        body = zstandard.ZstdDecompressor().decompress(p[6:], max_output_size=1 << 26) if flags & 1 else p[6:]
        r = sd.Body(body)
        if method == 3:
            cols, skip = r.u32(), r.u32()
            b, z2 = r.take(2)
            g = r.u32()
        else:
            cols, skip = r.leb(), r.leb()
            b, z2 = r.take(2)
            g = r.leb()
        count = f["out_len"] // 4 if f["dtype"] == 2 else f["out_len"] // 2
        rows = (skip + count + cols - 1) // cols
        r.take(2 * (rows * ((cols + g - 1) // g) if g else 1))
        coded = len(p) - 6 - r.i
        if method == 3:
            v = int.from_bytes(r.take((count * b + 7) // 8), "little")
            codes = [(v >> (i * b)) & ((1 << b) - 1) for i in range(count)]
        else:
            codes = rc_codes(body[r.i:], count, b, z2, cols, skip)
        left = [codes[i - 1] if (skip + i) % cols and i > 0 else -1 for i in range(count)]
        up = [codes[i - cols] if i >= cols else -1 for i in range(count)]
        e = {"frames": 1, "codes": count, "coded": coded, "H0": entropy_bits(Counter(codes)) / 8,
             "H|left": cond_entropy_bits(left, codes) / 8, "H|up": cond_entropy_bits(up, codes) / 8,
             "KT0": kt_bits(codes, 1 << b) / 8}
        e["on the table"] = coded - min(coded, e["KT0"])
        for k, x in e.items():
            tot[f"sub-method {method}, {b}-bit codes"][k] += x
            tot["all"][k] += x
        if show:
            print(f"m{method} b{b} z2={z2} n={count} cols={cols} " + " ".join(f"{k}={x:.0f}" for k, x in e.items()
                                                                           if k not in ("frames", "codes")),
                  dict(sorted(Counter(codes).items())))
    size = sum(x.stat().st_size for x in d.iterdir() if x.is_file())
    print(f"{d}: {size} B in the delta directory")
    print("| frames | n | codes | coded B | H0 B | H|left B | H|up B | KT0 B | on the table B (% of coded) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in sorted(tot, key=lambda k: (k == "all", k)):
        t = tot[k]
        print(f"| {k} | {t['frames']:.0f} | {t['codes']:.0f} | {t['coded']:.0f} | {t['H0']:.0f} | {t['H|left']:.0f} | "
              f"{t['H|up']:.0f} | {t['KT0']:.0f} | {t['on the table']:.0f} ({100 * t['on the table'] / t['coded']:.1f}%) |")


if __name__ == "__main__":
    main()
