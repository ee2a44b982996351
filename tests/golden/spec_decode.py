#!/usr/bin/env python3
"""An independent decoder written from docs/FORMAT.md alone (Python stdlib only).

It parses tenpak.idx of tests/golden/valid, decodes every output file whose
frames use only codecs that need no zstd (store, copy_base, sub_ctx) from
tenpak.dat and base/base.bin, and compares the sha256 with expected.txt. It
checks that the specification is precise enough to reimplement sub_ctx and
its range coder. Exit 0 on success.

  python3 tests/golden/spec_decode.py [tests/golden]
"""
import hashlib
import struct
import sys
from pathlib import Path

DTYPES = {1: ("F64", 8, True), 2: ("F32", 4, True), 3: ("F16", 2, True), 4: ("BF16", 2, True),
          5: ("F8_E4M3", 1, True), 6: ("F8_E5M2", 1, True), 7: ("I64", 8, False), 8: ("I32", 4, False),
          9: ("I16", 2, False), 10: ("I8", 1, False), 11: ("U8", 1, False), 12: ("BOOL", 1, False),
          13: ("U16", 2, False), 14: ("U32", 4, False), 15: ("U64", 8, False)}


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def u(self, n):
        v = int.from_bytes(self.b[self.p:self.p + n], "little")
        self.p += n
        return v

    def s(self):
        n = self.u(4)
        v = self.b[self.p:self.p + n].decode()
        self.p += n
        return v

    def raw(self, n):
        v = self.b[self.p:self.p + n]
        self.p += n
        return v


def parse_index(b):
    r = Reader(b)
    assert r.raw(8) == b"TPKIDX\r\n"
    assert r.u(4) == 1 and r.u(4) == 0
    nb, nf, nfr = r.u(4), r.u(4), r.u(4)
    r.u(4)
    locs = [r.s() for _ in range(r.u(4))]
    bases = [(r.s(), r.u(8), r.raw(32)) for _ in range(nb)]
    outs = []
    for _ in range(nf):
        outs.append(dict(name=r.s(), size=r.u(8), sha=r.raw(32), mode=r.u(4), first=r.u(4), count=r.u(4)))
    frames = []
    for _ in range(nfr):
        f = dict(file=r.u(4), out_offset=r.u(8), out_len=r.u(4), data_offset=r.u(8), data_len=r.u(4),
                 codec=r.u(1), dtype=r.u(1), base_dtype=r.u(1))
        r.u(1)
        f.update(base_file=r.u(4), base_offset=r.u(8), base_len=r.u(4), hash=r.raw(16))
        frames.append(f)
    return locs, bases, outs, frames


class RangeDecoder:
    """FORMAT.md, "Range decoder"."""

    def __init__(self, data):
        self.d, self.i, self.past = data, 0, 0
        self.range, self.code = 0xFFFFFFFF, 0
        for _ in range(5):
            self.code = ((self.code << 8) | self.next()) & 0xFFFFFFFF

    def next(self):
        if self.i < len(self.d):
            self.i += 1
            return self.d[self.i - 1]
        self.past += 1
        return 0

    def bit(self, prob):
        p, n = prob
        bound = (self.range >> 12) * p
        if self.code < bound:
            self.range, bit = bound, 0
        else:
            self.code -= bound
            self.range -= bound
            bit = 1
        r = 2 if n < 2 else 3 if n < 6 else 4 if n < 14 else 5 if n < 40 else 6
        prob[0] = p - (p >> r) if bit else p + ((4096 - p) >> r)
        prob[1] = min(n + 1, 40)
        while self.range < (1 << 24):
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | self.next()) & 0xFFFFFFFF
        return bit


def ord_(x, w, fl):
    if not fl:
        return x
    top = 1 << (8 * w - 1)
    return x ^ ((1 << (8 * w)) - 1) if x & top else x | top


def unord(y, w, fl):
    if not fl:
        return y
    top = 1 << (8 * w - 1)
    return y & ~top if y & top else y ^ ((1 << (8 * w)) - 1)


def sext(v, w):
    return v - (1 << (8 * w)) if v >> (8 * w - 1) else v


def efield(b, name):
    return {"F16": (b >> 10) & 31, "BF16": (b >> 7) & 0xFF, "F32": (b >> 23) & 0xFF, "F64": (b >> 52) & 0x7FF,
            "F8_E4M3": (b >> 3) & 15, "F8_E5M2": (b >> 2) & 31}.get(name, 0)


def sub_ctx(payload, base, n, dt):
    """FORMAT.md, "Codec 7: sub_ctx"."""
    name, w, fl = DTYPES[dt]
    count = n // w
    kw = payload[0]
    c = [0, 0, 0]
    area = phase = 1
    h = 1
    if kw:
        area, phase = payload[1], payload[2]
        c = [struct.unpack_from("<h", payload, 3 + 2 * t)[0] for t in range(3)]
        h = 9
    rd = RangeDecoder(payload[h:])
    L = {1: 4, 2: 5, 4: 6, 8: 7}[w]
    K = {}
    M = {}
    S = {}
    prob = lambda table, key: table.setdefault(key, [2048, 0])
    avg, prev = -1, 0
    d, xs, out = [], [], bytearray()
    for i in range(count):
        b = int.from_bytes(base[i * w:(i + 1) * w], "little")
        e = efield(b, name)
        x = 0 if not fl else max(e, 1)
        q = min(max(e - (104 if name in ("BF16", "F32") else 1000 if name == "F64" else 0), 0), 31)
        ctx = 39 if avg < 0 else min(max(((avg + 4) >> 3) - q + 4, 0), 38)
        node = 1
        for _ in range(L):
            node = 2 * node + rd.bit(prob(K, (q, ctx, node)))
        k = node - (1 << L)
        assert k <= 8 * w
        z = 0
        if k >= 1:
            z = 1
            for pos in range(k - 2, 0, -1):
                z = (z << 1) | rd.bit(prob(M, (k, pos)))
            if k >= 2:
                s = rd.bit(prob(S, (b >> (8 * w - 1), prev)))
                prev = s
                z = (z << 1) | s
        v = 8 * (k + q)
        avg = v if avg < 0 else (7 * avg + v + 4) >> 3
        mask = (1 << (8 * w)) - 1
        r = ((z >> 1) ^ -(z & 1)) & mask
        p = 0
        if kw:
            pos = (i + phase) % area
            px, py = pos % kw, pos // kw

            def t(j):
                sg = xs[j] - x
                return d[j] * (1 << min(sg, 16)) if sg >= 0 else d[j] >> min(-sg, 63)

            acc = 0
            if px > 0 and i >= 1:
                acc += c[0] * t(i - 1)
            if py > 0 and i >= kw:
                acc += c[1] * t(i - kw)
            if px > 0 and py > 0 and i >= kw + 1:
                acc += c[2] * t(i - kw - 1)
            p = (acc + 128) >> 8
        di = sext((r + p) & mask, w)
        d.append(di)
        xs.append(x)
        a = unord((ord_(b, w, fl) + di) & mask, w, fl)
        out += a.to_bytes(w, "little")
    assert rd.past <= 4, "read past the payload"
    return bytes(out)


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    valid = root / "valid"
    _, bases, outs, frames = parse_index((valid / "tenpak.idx").read_bytes())
    dat = (valid / "tenpak.dat").read_bytes()
    base = (root / "base" / bases[0][0]).read_bytes()
    expected = {}
    for line in (valid / "expected.txt").read_text().split("\n")[1:]:
        if line:
            h, name = line.split()
            expected[name] = h
    checked = 0
    for of in outs:
        fr = frames[of["first"]:of["first"] + of["count"]]
        if any(f["codec"] not in (0, 2, 7) or f["dtype"] != f["base_dtype"] and f["codec"] != 0 for f in fr):
            continue
        buf = bytearray(of["size"])
        for f in fr:
            p = dat[f["data_offset"]:f["data_offset"] + f["data_len"]]
            b = base[f["base_offset"]:f["base_offset"] + f["base_len"]]
            if f["codec"] == 0:
                o = p
            elif f["codec"] == 2:
                o = b
            else:
                o = sub_ctx(p, b, f["out_len"], f["dtype"])
            buf[f["out_offset"]:f["out_offset"] + f["out_len"]] = o
        got = hashlib.sha256(buf).hexdigest()
        if got != expected[of["name"]]:
            print(f"FAIL {of['name']}: sha256 {got} != {expected[of['name']]}")
            return 1
        print(f"ok   {of['name']}")
        checked += 1
    if checked < 6:
        print(f"FAIL: only {checked} files checked")
        return 1
    print(f"{checked} files decoded from the specification alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
