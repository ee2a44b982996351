#!/usr/bin/env python3
"""An independent decoder written from docs/FORMAT.md alone (Python stdlib only).

It parses tenpak.idx of tests/golden/valid, valid-rans, valid-lanes, valid-patch, valid-approx
(codec 11, lossy frames: float32 arithmetic in the order FORMAT.md defines) and valid-lowrank
(codec 12: codec 11's low-rank prediction corrected by a codec-9 residual, lossless),
decodes every output file whose frames use only codecs that need no zstd
(store, copy_base, sub_ctx, sub_rans, sub_lanes) from tenpak.dat and
base/base.bin, and compares the sha256 with expected.txt. Then every
invalid/ case that must fail as "corrupt" at "read" and uses those codecs
must be refused. It checks that the specification is precise enough to
reimplement sub_ctx and its range coder, sub_rans and sub_lanes, including
what they call corruption. Exit 0 on success.

  python3 tests/golden/spec_decode.py [tests/golden]
"""
import bisect
import hashlib
import json
import math
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


class Uvar(Reader):
    """The compact index's body (FORMAT.md, "Compact index"): LEB128 varints."""

    def v(self):
        x = 0
        for i in range(10):
            need(self.p < len(self.b), "compact index: truncated varint")
            c = self.b[self.p]
            self.p += 1
            x |= (c & 0x7F) << (7 * i)
            if not c & 0x80:
                need(x < 1 << 64, "compact index: varint past 2^64")
                return x
        raise Corrupt("compact index: varint longer than 10 bytes")

    def sv(self):
        z = self.v()
        return (z >> 1) ^ -(z & 1)

    def s(self):
        n = self.v()
        need(n <= 4096 and self.p + n <= len(self.b), "compact index: name length")
        return self.raw(n).decode()

    def raw(self, n):
        need(self.p + n <= len(self.b), "compact index: truncated")
        return Reader.raw(self, n)


def parse_compact(b, flags, nb, nf, nfr, body_len, rec=None):
    body = b[32:-8]
    if flags & 2:
        if zstandard is None:
            raise Skip("compact index body is zstd (no zstandard module)")
        body = zstandard.ZstdDecompressor().decompress(body, max_output_size=body_len)
    need(len(body) == body_len, "compact index: body length")
    r = Uvar(body)
    locs = [r.s() for _ in range(r.v())]
    bases = [(r.s(), r.v(), r.raw(32)) for _ in range(nb)]
    outs, first = [], 0
    for _ in range(nf):
        o = dict(name=r.s(), size=r.v(), sha=r.raw(32), mode=r.v(), first=first)
        o["count"] = r.v()
        first += o["count"]
        outs.append(o)
    need(first == nfr, "compact index: file frame counts do not add up to the frame table")
    frames, data_next = [], 0
    for i, o in enumerate(outs):
        pos = 0
        for _ in range(o["count"]):
            f = dict(file=i, out_offset=pos, out_len=r.v())
            f["data_offset"] = data_next + r.sv()
            f["data_len"] = r.v()
            data_next = f["data_offset"] + f["data_len"]
            f.update(codec=r.u(1), dtype=r.u(1), base_dtype=r.u(1))
            bf = r.v()
            f.update(base_file=0xFFFFFFFF, base_offset=0, base_len=0)
            if bf:
                f["base_file"], f["base_offset"] = bf - 1, pos + r.sv()
                if f["codec"] == 10:
                    f["base_len"] = r.v()
                else:
                    f["base_len"] = f["out_len"] // DTYPES[f["dtype"]][1] * DTYPES[f["base_dtype"]][1]
            pos += f["out_len"]
            need(pos <= o["size"], "compact index: frames past the end of the file")
            frames.append(f)
        need(pos == o["size"], "compact index: frames do not tile the file")
    for f in frames:
        f["hash"] = r.raw(16)
    if flags & 4:
        # The lossy record (FORMAT.md, "Lossy deltas"): uvar length 1..65536, then that many bytes.
        n = r.v()
        need(1 <= n <= 65536, "compact index: lossy record length")
        need(r.p + n == len(body), "compact index: lossy record length does not end the body")
        raw = r.raw(n)
        if rec is not None:
            rec.append(raw)
    need(r.p == len(body), "compact index: trailing bytes after the frame hashes")
    return locs, bases, outs, frames


def lossy_record(b):
    """The lossy record of index bytes `b` as JSON (None when it has none), checked as FORMAT.md says a
    record in the index must be: format "tenpak.lossy", version 1, a method string, a quality object;
    a `rebuilt` list, if present, naming exactly the index's files with their sha256."""
    rec = []
    _, _, outs, _ = parse_index(b, rec)
    if not rec:
        return None
    return check_record(rec[0], outs)


def check_record(raw, outs):
    """The lossy record `raw` (bytes) of an index whose OutFiles are `outs`, as JSON; Corrupt as lossy_record."""
    try:  # UTF-8 JSON (RFC 8259: no NaN/Infinity), as TenPak's reader (nlohmann) parses it
        j = json.loads(raw.decode("utf-8"), parse_constant=lambda c: need(False, "lossy record: " + c))
    except (UnicodeDecodeError, ValueError) as e:
        raise Corrupt("lossy record: not JSON (" + str(e) + ")")
    need(isinstance(j, dict) and j.get("format") == "tenpak.lossy", "lossy record: format")
    # An integer 1 (Python's 1.0 and True compare equal to 1; the C++ reader refuses them).
    need(type(j.get("version")) is int and j["version"] == 1, "lossy record: version")
    need(isinstance(j.get("method"), str) and isinstance(j.get("quality"), dict), "lossy record: method or quality")
    # Optional: the weight of the calibration text's labels in the codes' training, a number in [0, 1].
    if "qat_label_weight" in j:
        w = j["qat_label_weight"]
        need(type(w) in (int, float) and 0 <= w <= 1, "lossy record: qat_label_weight")
    if "rebuilt" in j:
        need(sorted((x["name"], x["sha256"]) for x in j["rebuilt"]) ==
             sorted((o["name"], o["sha"].hex()) for o in outs), "lossy record: rebuilt differs from the index")
    return j


def parse_index(b, rec=None):
    r = Reader(b)
    assert r.raw(8) == b"TPKIDX\r\n"
    assert r.u(4) == 1
    flags = r.u(4)
    nb, nf, nfr = r.u(4), r.u(4), r.u(4)
    body_len = r.u(4)
    if flags in (1, 3, 5, 7):
        return parse_compact(b, flags, nb, nf, nfr, body_len, rec)
    need(flags == 0, f"unknown index flags {flags}")
    locs = [r.s() for _ in range(r.u(4))]
    bases = [(r.s(), r.u(8), r.raw(32)) for _ in range(nb)]
    outs = []
    for _ in range(nf):
        outs.append(dict(name=r.s(), size=r.u(8), sha=r.raw(32), mode=r.u(4), first=r.u(4), count=r.u(4)))
    names = {o["name"] for o in outs}
    assert len(names) == len(outs), "two files of one name"
    assert not any(n[:i] in names for n in names for i, c in enumerate(n) if c == "/"), "a name is a file and a directory"
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


class Corrupt(Exception):
    """A payload the specification calls corruption."""


def need(cond, what):
    if not cond:
        raise Corrupt(what)


def bucket(b, name):
    """q(b): the exponent bucket of codecs 7, 8 and 9."""
    e = efield(b, name)
    return min(max(e - (104 if name in ("BF16", "F32") else 1000 if name == "F64" else 0), 0), 31)


def freq_table(payload, p, ns, total):
    """u8 n, then n LEB128 frequencies (at most 2 bytes each, each <= total), summing to total,
    the last one > 0 (codecs 8 and 9). Returns (freqs, cums, position after it); n = 0 gives None."""
    need(p < len(payload), "truncated table")
    n = payload[p]
    p += 1
    if n == 0:
        return None, None, p
    need(n <= ns, "table with more symbols than NS")
    f = []
    for _ in range(n):
        v, shift = 0, 0
        for nbytes in (1, 2):
            need(p < len(payload), "truncated table")
            byte = payload[p]
            p += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            need(nbytes < 2, "LEB128 frequency longer than 2 bytes")
        need(v <= total, "frequency over the total")
        f.append(v)
    need(sum(f) == total and f[-1] > 0, "frequencies do not sum to the total")
    cum = [0]
    for v in f:
        cum.append(cum[-1] + v)
    return f, cum, p


def symbol_of(cum, slot):
    """The symbol s with cum[s] <= slot < cum[s+1] (f_s = 0 symbols own no slot)."""
    s = 0
    while cum[s + 1] <= slot:
        s += 1
    return s


def finish(out, base, w, fl, i, z):
    mask = (1 << (8 * w)) - 1
    b = int.from_bytes(base[i * w:(i + 1) * w], "little")
    d = (z >> 1) ^ -(z & 1)
    out += unord((ord_(b, w, fl) + d) & mask, w, fl).to_bytes(w, "little")


def sub_rans(payload, base, n, dt):
    """FORMAT.md, "Codec 8: sub_rans"."""
    name, w, fl = DTYPES[dt]
    count = n // w
    nc = {1: 16, 2: 24, 4: 40, 8: 40}[w]
    ns = 8 * w + 1
    need(len(payload) >= 4, "truncated header")
    R = int.from_bytes(payload[0:4], "little")
    p = 4
    tables = []
    for _ in range(nc):
        f, cum, p = freq_table(payload, p, ns, 4096)
        tables.append((f, cum))
    t = p
    need(t + 16 + R <= len(payload), "truncated states or raw bits")
    X = [int.from_bytes(payload[t + 4 * j:t + 4 * j + 4], "little") for j in range(4)]
    need(all(x >= 1 << 16 for x in X), "rANS state under 2^16")
    words_end = len(payload) - R
    need((words_end - t - 16) % 2 == 0, "odd word area")
    wp = t + 16
    raw = payload[words_end:]
    bitpos = 0
    avg = 0
    out = bytearray()
    for i in range(count):
        b = int.from_bytes(base[i * w:(i + 1) * w], "little")
        q = bucket(b, name)
        ctx = min(max(((avg + 4) >> 3) - q + 4, 0), nc - 1)
        f, cum = tables[ctx]
        need(f is not None, "context without a table")
        x = X[i % 4]
        slot = x % 4096
        s = symbol_of(cum, slot)
        x = f[s] * (x >> 12) + slot - cum[s]
        if x < 1 << 16:
            need(wp + 2 <= words_end, "rANS words exhausted")
            x = (x << 16) | int.from_bytes(payload[wp:wp + 2], "little")
            wp += 2
        X[i % 4] = x
        k = s
        z = 0
        if k >= 1:
            v = 0
            for j in range(k - 1):
                need(bitpos < 8 * R, "raw bits exhausted")
                v |= ((raw[bitpos >> 3] >> (bitpos & 7)) & 1) << j
                bitpos += 1
            z = (1 << (k - 1)) + v
        avg = (7 * avg + 8 * (k + q) + 4) >> 3
        finish(out, base, w, fl, i, z)
    need(all(x == 1 << 16 for x in X), "final rANS state not 2^16")
    need(wp == words_end, "unread rANS words")
    need((bitpos + 7) // 8 == R, "raw stream length does not match the bits read")
    return bytes(out)


def sub_lanes(payload, base, n, dt):
    """FORMAT.md, "Codec 9: sub_lanes"."""
    name, w, fl = DTYPES[dt]
    need(w in (1, 2, 4), "sub_lanes on an element width other than 1, 2, 4")
    count = n // w
    ns = 8 * w + 1
    U = 16 if w <= 2 else 32
    need(len(payload) >= 12, "truncated header")
    A, B, M = (int.from_bytes(payload[4 * j:4 * j + 4], "little") for j in range(3))
    need(A % 2 == 0 and B % (U // 8) == 0, "word area lengths")
    p = 12
    tables = {}
    for c in range(32):
        if M >> c & 1:
            f, cum, p = freq_table(payload, p, ns, 2048)
            need(f is not None, "announced table with n = 0")
            tables[c] = (f, cum)
    t = p
    need(len(payload) == t + 128 + A + B, "payload length is not t + 128 + A + B")
    X = [int.from_bytes(payload[t + 4 * j:t + 4 * j + 4], "little") for j in range(32)]
    need(all(x >= 1 << 16 for x in X), "rANS state under 2^16")
    wp, wend = t + 128, t + 128 + A
    rp, rend = wend, wend + B
    buf = [0] * 32
    cnt = [0] * 32
    out = bytearray()
    for i in range(count):
        l = i % 32
        b = int.from_bytes(base[i * w:(i + 1) * w], "little")
        c = bucket(b, name)
        need(c in tables, "context without a table")
        f, cum = tables[c]
        x = X[l]
        slot = x % 2048
        s = symbol_of(cum, slot)
        x = f[s] * (x >> 11) + slot - cum[s]
        if x < 1 << 16:
            need(wp + 2 <= wend, "rANS words exhausted")
            x = (x << 16) | int.from_bytes(payload[wp:wp + 2], "little")
            wp += 2
        X[l] = x
        k = s
        r = max(k - 1, 0)
        if cnt[l] < r:
            need(rp + U // 8 <= rend, "raw words exhausted")
            buf[l] |= int.from_bytes(payload[rp:rp + U // 8], "little") << cnt[l]
            rp += U // 8
            cnt[l] += U
        v = buf[l] & ((1 << r) - 1)
        buf[l] >>= r
        cnt[l] -= r
        z = 0 if k == 0 else (1 << (k - 1)) + v
        finish(out, base, w, fl, i, z)
    need(wp == wend and rp == rend, "unread words")
    need(all(x == 1 << 16 for x in X), "final rANS state not 2^16")
    need(all(v == 0 for v in buf), "non-zero padding bits in a raw word")
    return bytes(out)


def sub_ctx(payload, base, n, dt):
    """FORMAT.md, "Codec 7: sub_ctx"."""
    name, w, fl = DTYPES[dt]
    count = n // w
    need(len(payload) >= 1, "empty payload")
    kw = payload[0]
    c = [0, 0, 0]
    area = phase = 1
    h = 1
    if kw:
        need(len(payload) >= 9 and w != 8, "kw != 0 with a short header or w = 8")
        area, phase = payload[1], payload[2]
        c = [struct.unpack_from("<h", payload, 3 + 2 * t)[0] for t in range(3)]
        need(area != 0 and area % kw == 0 and phase < area, "bad kernel area or phase")
        need(all(-1024 <= v <= 1024 for v in c) and any(c), "bad coefficients")
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
        need(k <= 8 * w, "bit length over 8w")
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
    need(rd.past <= 4, "read past the payload")
    return bytes(out)


def leb128(s, p):
    v, sh = 0, 0
    while True:
        need(p < len(s) and sh < 70, "op stream truncated")
        b = s[p]
        p += 1
        v |= (b & 0x7F) << sh
        sh += 7
        if not b & 0x80:
            return v, p


# ---- codec 10, word-coded literals (FORMAT.md, "Word-coded literals") -------

WORD_BYTES = frozenset(range(0x30, 0x3A)) | frozenset(range(0x41, 0x5B)) | frozenset(range(0x61, 0x7B)) | frozenset(range(0x80, 0x100))


def word_tokens(s):
    """Tokens of s: alternately kind 0 (word bytes) and kind 1 (other bytes), kind 0 first; each the
    longest run of its class of at most 64 bytes (possibly empty), until the end of s."""
    out, p, kind = [], 0, 0
    while p < len(s):
        q = p
        while q < len(s) and q - p < 64 and ((s[q] in WORD_BYTES) == (kind == 0)):
            q += 1
        out.append((kind, s[p:q]))
        p, kind = q, kind ^ 1
    return out


def word_sample(B):
    """The token lists of B's sample, one per piece (the context restarts at each): B whole when at
    most 256 KiB, else 64 pieces of 4096 bytes spread evenly (first at 0, last ending at |B|); method
    bits 4 and 6 both prime from it."""
    if len(B) <= 262144:
        pieces = [B] if B else []
    else:
        pieces = [B[i * (len(B) - 4096) // 63:i * (len(B) - 4096) // 63 + 4096] for i in range(64)]
    return [word_tokens(pc) for pc in pieces]


def vocab_by_count(toks, kind):
    """The distinct tokens of `kind` in the sample's token lists, most frequent first, ties by first
    appearance: the ids of method bit 4's vocabulary (from 1), which bit 6 uses too (FORMAT.md)."""
    count, first = {}, []
    for t in toks:
        for k, s in t:
            if k == kind:
                if s not in count:
                    count[s] = 0
                    first.append(s)
                count[s] += 1
    return [first[i] for i in sorted(range(len(first)), key=lambda i: (-count[first[i]], i))]


def word_depth(k):
    return k - 1 if k - 1 < 10 else max(0, 21 - k)


class WordModel:
    """The model, primed from B. Every probability starts at p = 2048, n = 0 (dictionary keys name
    them); `rd` None means priming: the probability is updated with the bit given, nothing is read."""

    def __init__(self, B):
        self.P, self.voc, self.prev = {}, [[], []], 0
        toks = word_sample(B)
        ids = [{}, {}]
        for kind in (0, 1):
            for s in vocab_by_count(toks, kind):
                self.voc[kind].append(s)
                ids[kind][s] = len(self.voc[kind])
                self.spelling(None, kind, s)
        for t in toks:
            self.prev = 0
            for k, s in t:
                self.code_id(None, k, ids[k][s])
                if k == 1:
                    self.prev = ids[k][s]
        self.prev = 0

    def bit(self, rd, key, b):
        prob = self.P.setdefault(key, [2048, 0])
        if rd is not None:
            return rd.bit(prob)
        p, n = prob
        r = 2 if n < 2 else 3 if n < 6 else 4 if n < 14 else 5 if n < 40 else 6
        prob[0] = p - (p >> r) if b else p + ((4096 - p) >> r)
        prob[1] = min(n + 1, 40)
        return b

    def tree(self, rd, key, nbits, v=0):
        node = 1
        for i in range(nbits - 1, -1, -1):
            node = 2 * node + self.bit(rd, key + (node,), (v >> i) & 1)
        return node - (1 << nbits)

    def code_id(self, rd, kind, v=0):
        c = min(self.prev, 15)
        k = self.tree(rd, ("len", kind, c), 5, v.bit_length())
        if k < 2:
            return k
        d, node, val = word_depth(k), 1, 1
        for pos in range(k - 1):
            j = k - 2 - pos
            if pos < d:
                b = self.bit(rd, ("tree", kind, c, k, node), (v >> j) & 1)
                node = 2 * node + b
            else:
                b = self.bit(rd, ("low", kind, c, k, j), (v >> j) & 1)
            val = 2 * val + b
        return val

    def spelling(self, rd, kind, s=b""):
        n = self.tree(rd, ("slen", kind), 7, len(s))
        need(n <= 64, "spelled token longer than 64 bytes")
        out, prev = bytearray(), 256
        for i in range(n):
            prev = self.tree(rd, ("byte", kind, prev), 8, s[i] if rd is None else 0)
            out.append(prev)
        return bytes(out)


def word_literals(data, B, n):
    """The n literal bytes of a word-coded stream (method bit 16)."""
    m, rd, out, kind = WordModel(B), RangeDecoder(data), bytearray(), 0
    while len(out) < n:
        v = m.code_id(rd, kind)
        voc = m.voc[kind]
        if v == 0:
            s = m.spelling(rd, kind)
            voc.append(s)
            v = len(voc)
        else:
            need(v <= len(voc), "word id past the vocabulary")
            s = voc[v - 1]
        need(len(out) + len(s) <= n, "word token past the literals")
        out += s
        if kind == 1:
            m.prev = v
        kind ^= 1
        need(rd.past <= 4, "word stream truncated")
    need(rd.i == len(data) and rd.past == 0, "word stream not read exactly to its end")
    return bytes(out)


# ---- codec 10, static word-coded literals (FORMAT.md, "Static word-coded literals") --------

def static_table(vw):
    """(values, starts, freqs) of a static table from (value, weight) pairs in layout order."""
    n, W = len(vw), sum(w for _, w in vw)
    f = [1 + w * (32768 - n) // W for _, w in vw]
    big = max(range(n), key=lambda i: (vw[i][1], -i))
    f[big] += 32768 - sum(f)
    starts, acc = [], 0
    for x in f:
        starts.append(acc)
        acc += x
    return [v for v, _ in vw], starts, f


class StaticWordModel:
    def __init__(self, B):
        toks = word_sample(B)
        self.voc = [vocab_by_count(toks, 0), vocab_by_count(toks, 1)]
        ids = [{s: i + 1 for i, s in enumerate(v)} for v in self.voc]
        N = [[{} for _ in range(16)], [{} for _ in range(16)]]
        for t in toks:
            prev = 0
            for k, s in t:
                v = ids[k][s]
                c = N[k][min(prev, 15)]
                c[v] = c.get(v, 0) + 1
                if k == 1:
                    prev = v
        self.ctx, self.fall, self.len, self.byte = [[], []], [], [], []
        for kind in (0, 1):
            singles_by_len = [0] * 33
            for c in range(16):
                cnt = N[kind][c]
                singles = sum(1 for v in cnt if cnt[v] == 1)
                for v in cnt:
                    if cnt[v] == 1:
                        singles_by_len[v.bit_length()] += 1
                vw = [(0, max(1, singles))] + [(v, cnt[v]) for v in sorted(cnt)][:16383]
                self.ctx[kind].append(static_table(vw))
            total = {}
            for c in range(16):
                for v, x in N[kind][c].items():
                    total[v] = total.get(v, 0) + x
            once = sum(1 for v in total if total[v] == 1)
            self.fall.append(static_table([(0, max(1, once))] + [(k, 1 + singles_by_len[k]) for k in range(1, 33)]))
            lens, pairs = [1] * 65, {}
            for s in self.voc[kind]:
                lens[len(s)] += 1
                x = 256
                for y in s:
                    pairs[(x, y)] = pairs.get((x, y), 0) + 1
                    x = y
            self.len.append(static_table([(l, lens[l]) for l in range(65)]))
            self.byte.append([static_table([(y, 1 + 16 * pairs.get((x, y), 0)) for y in range(256)]) for x in range(257)])


class RansDecoder:
    """Two rANS states; the j-th symbol of the stream (from 0) is decoded with state j mod 2."""

    def __init__(self, data):
        need(len(data) >= 8, "static word stream shorter than its states")
        self.d, self.i, self.j = data, 8, 0
        self.x = [int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")]
        need(min(self.x) >= 1 << 23, "static word stream: initial state below 2^23")

    def sym(self, values, starts, freqs):
        k = self.j % 2
        self.j += 1
        x = self.x[k]
        slot = x & 32767
        i = bisect.bisect_right(starts, slot) - 1
        x = freqs[i] * (x >> 15) + slot - starts[i]
        while x < 1 << 23:
            need(self.i < len(self.d), "static word stream truncated")
            x = x << 8 | self.d[self.i]
            self.i += 1
        self.x[k] = x
        return values[i]

    def bits(self, b):
        f = 1 << (15 - b)
        return self.sym(list(range(1 << b)), [v * f for v in range(1 << b)], [f] * (1 << b))


def static_word_literals(data, B, n):
    """The n literal bytes of a static word-coded stream (method bit 64)."""
    m, rd, out, kind, prev = StaticWordModel(B), RansDecoder(data), bytearray(), 0, 0
    while len(out) < n:
        voc = m.voc[kind]
        v = rd.sym(*m.ctx[kind][min(prev, 15)])
        if v == 0:
            k = rd.sym(*m.fall[kind])
            if k == 0:
                ln = rd.sym(*m.len[kind])
                need(len(out) + ln <= n, "spelled token past the literals")
                s, x = bytearray(), 256
                for _ in range(ln):
                    x = rd.sym(*m.byte[kind][x])
                    s.append(x)
                voc.append(bytes(s))
                v = len(voc)
            else:
                v, r = 1, k - 1
                while r > 0:
                    b = (r - 1) % 8 + 1
                    v = v << b | rd.bits(b)
                    r -= b
                need(v <= len(voc), "word id past the vocabulary")
        s = voc[v - 1]
        need(len(out) + len(s) <= n, "word token past the literals")
        out += s
        if kind == 1:
            prev = v
        kind ^= 1
    need(rd.i == len(data) and rd.x == [1 << 23, 1 << 23], "static word stream not read exactly to its end")
    return bytes(out)


def patch(payload, base, n, dt, fr=None):
    """Codec 10. `base` is the whole base file: the extents are read from it here."""
    need(len(payload) >= 4, "payload shorter than its header")
    ne = struct.unpack_from("<I", payload, 0)[0]
    need(ne <= 4096, "too many extents")
    need((ne == 0) == (fr["base_file"] == 0xFFFFFFFF), "extents without a base file or the reverse")
    h = 4 + 12 * ne
    need(len(payload) >= h + 17, "payload shorter than its header")
    B = b""
    for i in range(ne):
        off, ln = struct.unpack_from("<QI", payload, 4 + 12 * i)
        need(ln >= 1 and off >= fr["base_offset"] and off + ln <= fr["base_offset"] + fr["base_len"], "extent outside the base range")
        B += base[off:off + ln]
    need(len(B) <= 4 << 20, "extents longer than 4 MiB")
    method = payload[h]
    nops, ops_raw, ops_stored, lit_raw = struct.unpack_from("<IIII", payload, h + 1)
    need(method & ~(31 | 64) == 0 and (method & 6) != 4 and bin(method & (2 | 16 | 64)).count("1") <= 1, "unknown stream method")
    need(nops <= n + 1 and lit_raw <= n and ops_raw <= 33 * (nops + 1), "counts out of range")
    rest = payload[h + 17:]
    need(ops_stored <= len(rest), "op stream truncated")
    ops, lit = rest[:ops_stored], rest[ops_stored:]
    if method & 3:
        if zstandard is None:
            raise Skip("zstd stream (no zstandard module)")
        if method & 1:
            ops = zstandard.ZstdDecompressor().decompress(ops, max_output_size=ops_raw)
        if method & 2:
            d = zstandard.ZstdCompressionDict(B, dict_type=zstandard.DICT_TYPE_RAWCONTENT) if (method & 4) and B else None
            lit = (zstandard.ZstdDecompressor(dict_data=d) if d else zstandard.ZstdDecompressor()).decompress(lit, max_output_size=lit_raw)
    if method & 16:
        lit = word_literals(lit, B, lit_raw)
    if method & 64:
        lit = static_word_literals(lit, B, lit_raw)
    need(len(ops) == ops_raw, "op stream size")
    need(len(lit) == lit_raw, "literal stream size")
    arrays, p = [], 0
    for _ in range(3):
        need(p + nops <= len(ops), "op stream truncated")
        low = ops[p:p + nops]
        p += nops
        vals = []
        for i in range(nops):
            hi, p = leb128(ops, p)
            need(hi < 1 << 56, "op value too large")
            vals.append(hi << 8 | low[i])
        arrays.append(vals)
    need(p == len(ops), "trailing bytes in the op stream")
    # Line ops (method bit 8): T = line starts of B, then |B|.
    T = [0] + [i + 1 for i in range(len(B) - 1) if B[i] == 10] + ([len(B)] if B else [])
    out, lp, cursor = bytearray(), 0, 0
    for l, z, c in zip(*arrays):
        need(lp + l <= lit_raw and len(out) + l <= n, "literals overrun")
        out += lit[lp:lp + l]
        lp += l
        m = (z >> 1) ^ -(z & 1)
        if method & 8:
            kind, c = c & 1, c >> 1
            if kind:
                s = next(j for j, t in enumerate(T) if t >= cursor) + m
                need(0 <= s and s + c <= len(T) - 1, "lines outside the base ranges")
                src, c = T[s], T[s + c] - T[s]
                need(len(out) + c <= n, "copy outside the frame")
                out += B[src:src + c]
                cursor = src + c
                continue
        src = cursor + m
        need(0 <= src and src + c <= len(B) and len(out) + c <= n, "copy outside the base ranges or the frame")
        out += B[src:src + c]
        cursor = src + c
    need(len(out) == n and lp == lit_raw, "ops do not cover the frame")
    return bytes(out)


class Skip(Exception):
    pass


# ---- codec 11: approx (FORMAT.md, "Codec 11") --------------------------------
# float32 arithmetic by Python floats: a product or sum of two float32 values
# computed in double and rounded once to float32 equals the float32 operation
# (double has more than 2 x 24 + 2 bits), so f32(a * b) and f32(a + b) below are
# exactly IEEE binary32 multiply and add, round to nearest even.

def f32(x):
    if x != x:
        return x
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


def f32_bits(u):
    return struct.unpack("<f", struct.pack("<I", u))[0]


def to_f32(b, dt):
    """The element bytes b of dt widened to float32 (exact)."""
    if dt == 2:
        return struct.unpack("<f", b)[0]
    u = int.from_bytes(b, "little")
    if dt == 4:
        return f32_bits(u << 16)
    return struct.unpack("<e", b)[0]


def from_f32(x, dt):
    """float32 x rounded to dt (nearest, ties to even), as bytes."""
    if dt == 2:
        return struct.pack("<f", x)
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    if dt == 4:
        if (u & 0x7FFFFFFF) > 0x7F800000:
            return ((u >> 16) | 0x40).to_bytes(2, "little")
        return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF).to_bytes(2, "little")
    try:
        return struct.pack("<e", x)
    except OverflowError:
        return struct.pack("<e", float("inf") if x > 0 else float("-inf"))


class Body:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        need(len(self.b) - self.i >= n, "approx: body truncated")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u32(self):
        return int.from_bytes(self.take(4), "little")

    def f32(self):
        return struct.unpack("<f", self.take(4))[0]

    def leb(self):
        x = 0
        for k in range(5):
            c = self.take(1)[0]
            x |= (c & 0x7F) << (7 * k)
            if not c & 0x80:
                need(x < 1 << 32, "approx: LEB128 value too large")
                return x
        raise Corrupt("approx: LEB128 longer than 5 bytes")


def approx_vector(r, m, b):
    """m values stored with b bits (0: float32, 16: float16, 2..8: scale + codes)."""
    if b == 0:
        return [r.f32() for _ in range(m)]
    if b == 16:
        return [struct.unpack("<e", r.take(2))[0] for _ in range(m)]
    s = r.f32()
    nbytes = (m * b + 7) // 8
    raw = int.from_bytes(r.take(nbytes), "little")
    need(raw >> (m * b) == 0, "approx: padding bits set")
    z = ((1 << b) - 1) / 2
    return [f32(s * (((raw >> (i * b)) & ((1 << b) - 1)) - z)) for i in range(m)]


def approx(payload, base, n, dt, bdt):
    need(dt in (2, 3, 4), "approx: output dtype not F32, F16 or BF16")
    w = DTYPES[dt][1]
    count = n // w
    if bdt != dt:  # FORMAT.md "Decoding a frame": the base converted to dtype first
        bw = DTYPES[bdt][1]
        base = b"".join(from_f32(to_f32(base[i * bw:(i + 1) * bw], bdt), dt) for i in range(count))
    need(len(payload) >= 6, "approx: header truncated")
    method, flags, raw = payload[0], payload[1], int.from_bytes(payload[2:6], "little")
    need(method <= 4, "approx: unknown method")
    need(flags & ~1 == 0, "approx: unknown flags")
    need(raw <= 64 << 20, "approx: body over 64 MiB")
    if flags & 1:
        if zstandard is None:
            raise Skip("approx body is zstd (no zstandard module)")
        try:
            body = zstandard.ZstdDecompressor().decompress(payload[6:], max_output_size=raw)
        except zstandard.ZstdError as e:
            raise Corrupt(f"approx: zstd: {e}")
        need(len(body) == raw, "approx: zstd body length")
    else:
        body = payload[6:]
        need(len(body) == raw, "approx: raw body length")
    r = Body(body)
    d = [0.0] * count
    if method == 0:
        k = r.u32()
        need(k <= count, "approx: sparse count")
        pos, p = [], -1
        for i in range(k):
            g = r.leb()
            p = g if i == 0 else p + 1 + g
            need(p < count, "approx: sparse position past the frame")
            pos.append(p)
        for p in pos:
            d[p] = r.f32()
    elif method == 1:
        s = r.f32()
        bits = int.from_bytes(r.take((count + 7) // 8), "little")
        need(bits >> count == 0, "approx: sign padding bits set")
        d = [-s if (bits >> i) & 1 else s for i in range(count)]
    elif method in (3, 4):
        cols, skip = (r.u32(), r.u32()) if method == 3 else (r.leb(), r.leb())
        b, z2 = r.take(2)
        g = r.u32() if method == 3 else r.leb()
        need(cols >= 1 and skip < cols, "approx: grouped cols/skip")
        need(1 <= b <= 8, "approx: grouped bits")
        need(z2 <= 2 * ((1 << b) - 1), "approx: grouped zero above the grid")
        need(g <= cols, "approx: grouped group wider than a row")
        rows = (skip + count + cols - 1) // cols
        G = (cols + g - 1) // g if g else 0
        S = rows * G if g else 1
        scales = [struct.unpack("<e", r.take(2))[0] for _ in range(S)]
        need(all(math.isfinite(x) for x in scales), "approx: grouped scale not finite")
        if method == 3:
            codes = int.from_bytes(r.take((count * b + 7) // 8), "little")
            need(codes >> (count * b) == 0, "approx: grouped padding bits set")
            q_of = [(codes >> (i * b)) & ((1 << b) - 1) for i in range(count)]
        else:
            # FORMAT.md, method 4: the rest of the body is range-coded, 9 contexts x 2^b nodes.
            rd = RangeDecoder(body[r.i:])
            probs = [[2048, 0] for _ in range(9 << b)]
            q_of, cls = [], []
            for i in range(count):
                left = cls[i - 1] if (skip + i) % cols and i > 0 else 1
                up = cls[i - cols] if i >= cols else 1
                base_ctx = (3 * left + up) << b
                node = 1
                for _ in range(b):
                    node = 2 * node + rd.bit(probs[base_ctx + node])
                q = node - (1 << b)
                q_of.append(q)
                cls.append(0 if 2 * q < z2 else 1 if 2 * q == z2 else 2)
            need(rd.i == len(rd.d) and rd.past == 0, "approx: range-coded codes truncated or padded")
            r.i = len(body)
        for i in range(count):
            row, col = divmod(skip + i, cols)
            s = scales[row * G + col // g] if g else scales[0]
            d[i] = f32(s * (q_of[i] - z2 / 2))
    else:
        cols, skip, rank = r.u32(), r.u32(), r.u32()
        need(cols >= 1 and skip < cols, "approx: cols/skip")
        need(1 <= rank <= 65535, "approx: rank")
        bits = list(r.take(rank))
        need(all(b in (0, 16) or 2 <= b <= 8 for b in bits), "approx: factor bits")
        rows = (skip + count + cols - 1) // cols
        need((rows + cols) * rank <= raw * 4 + 8, "approx: factors larger than the body")
        U = [approx_vector(r, rows, b) for b in bits]   # U[j][row]
        V = [approx_vector(r, cols, b) for b in bits]   # V[j][col]
        for i in range(count):
            row, col = divmod(skip + i, cols)
            acc = 0.0
            for j in range(rank):
                acc = f32(acc + f32(U[j][row] * V[j][col]))
            d[i] = acc
    need(r.i == len(body), "approx: body longer than its content")
    out = bytearray()
    for i in range(count):
        out += from_f32(f32(to_f32(base[i * w:(i + 1) * w], dt) + d[i]), dt)
    return bytes(out)


# ---- codec 12: lowrank_lanes (FORMAT.md, "Codec 12") ------------------------

def lowrank_lanes(payload, base, n, dt, bdt):
    """P = the codec-11 (method 2) part decoded against the base; the output = the codec-9 part
    decoded with P as its base."""
    need(dt in (2, 3, 4), "lowrank_lanes: output dtype not F32, F16 or BF16")
    need(len(payload) >= 4, "lowrank_lanes: header truncated")
    a = int.from_bytes(payload[0:4], "little")
    need(6 <= a <= len(payload) - 4, "lowrank_lanes: prediction length out of range")
    need(payload[4] == 2, "lowrank_lanes: prediction is not codec 11 method 2")
    p = approx(payload[4:4 + a], base, n, dt, bdt)
    return sub_lanes(payload[4 + a:], p, n, dt)


try:
    import zstandard  # optional: only for patch frames with zstd streams
except ImportError:
    zstandard = None

CODECS = {0: lambda p, b, n, dt: p, 2: lambda p, b, n, dt: b, 7: sub_ctx, 8: sub_rans, 9: sub_lanes, 10: patch,
          11: approx, 12: lowrank_lanes}


def decodable(fr):
    """Frames this decoder handles: no zstd (codecs 1, 3-6) and no dtype conversion (except codecs 11, 12)."""
    return all(f["codec"] in CODECS and (f["dtype"] == f["base_dtype"] or f["codec"] in (0, 11, 12)) for f in fr)


def rebuild(delta, base, of, frames):
    """The output file `of` rebuilt from its frames (raises Corrupt)."""
    dat = (delta / "tenpak.dat").read_bytes()
    buf = bytearray(of["size"])
    for f in frames[of["first"]:of["first"] + of["count"]]:
        p = dat[f["data_offset"]:f["data_offset"] + f["data_len"]]
        need(len(p) == f["data_len"], "payload past the end of tenpak.dat")
        if f["codec"] == 10:
            o = patch(p, base, f["out_len"], f["dtype"], f)
        elif f["codec"] in (11, 12):
            b = base[f["base_offset"]:f["base_offset"] + f["base_len"]]
            o = CODECS[f["codec"]](p, b, f["out_len"], f["dtype"], f["base_dtype"])
        else:
            b = base[f["base_offset"]:f["base_offset"] + f["base_len"]] if f["codec"] != 0 else b""
            o = CODECS[f["codec"]](p, b, f["out_len"], f["dtype"])
        need(len(o) == f["out_len"], "wrong output length")
        buf[f["out_offset"]:f["out_offset"] + f["out_len"]] = o
    return bytes(buf)


def check_valid(root, folder, base, need_all, at_least):
    """Decodes every decodable output file of root/folder; its sha256 must be the one in expected.txt."""
    delta = root / folder
    _, _, outs, frames = parse_index((delta / "tenpak.idx").read_bytes())
    expected = {}
    for line in (delta / "expected.txt").read_text().split("\n")[1:]:
        if line:
            h, name = line.split()
            expected[name] = h
    checked = 0
    for of in outs:
        if not decodable(frames[of["first"]:of["first"] + of["count"]]):
            if need_all:
                print(f"FAIL {folder}/{of['name']}: not decodable here")
                return False
            continue
        try:
            got = hashlib.sha256(rebuild(delta, base, of, frames)).hexdigest()
        except Skip as e:
            print(f"skip {folder}/{of['name']}: {e}")
            continue
        except Corrupt as e:
            print(f"FAIL {folder}/{of['name']}: refused: {e}")
            return False
        if got != expected[of["name"]]:
            print(f"FAIL {folder}/{of['name']}: sha256 {got} != {expected[of['name']]}")
            return False
        print(f"ok   {folder}/{of['name']}")
        checked += 1
    if checked < at_least:
        print(f"FAIL {folder}: only {checked} files checked")
        return False
    return True


def check_invalid(root, base):
    """Every invalid/ case that must fail at `read` and whose frames this decoder handles must be
    refused: a Corrupt payload, or a rebuilt file whose sha256 differs from its OutFile record (this
    decoder has no XXH3-128, so the frame hash check is replaced by the file's sha256). Returns the
    number of cases checked, or -1 on a failure."""
    checked = 0
    for delta in sorted((root / "invalid").iterdir()):
        if delta.name.startswith("compact-"):
            # Compact indexes this decoder must refuse when parsing (FORMAT.md, "Compact index").
            try:
                parse_index((delta / "tenpak.idx").read_bytes())
            except Corrupt as e:
                print(f"ok   invalid/{delta.name} refused ({e})")
                checked += 1
                continue
            print(f"FAIL invalid/{delta.name}: index parsed")
            return -1
        if (delta / "expected.txt").read_text().split() != ["error", "corrupt", "read"]:
            continue
        _, _, outs, frames = parse_index((delta / "tenpak.idx").read_bytes())
        if not all(decodable(frames[of["first"]:of["first"] + of["count"]]) for of in outs):
            continue
        why = None
        for of in outs:
            try:
                if hashlib.sha256(rebuild(delta, base, of, frames)).digest() != of["sha"]:
                    why = f"{of['name']}: sha256 differs"
                    if delta.name != "frame-hash":  # every other case is a payload the decoder must refuse
                        print(f"FAIL invalid/{delta.name}: decoded (to other bytes) instead of being refused")
                        return -1
            except Corrupt as e:
                why = f"{of['name']}: {e}"
            if why:
                break
        if not why:
            print(f"FAIL invalid/{delta.name}: decoded without error")
            return -1
        print(f"ok   invalid/{delta.name} refused ({why})")
        checked += 1
    return checked


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    _, bases, _, _ = parse_index((root / "valid" / "tenpak.idx").read_bytes())
    base = (root / "base" / bases[0][0]).read_bytes()
    # valid/ also holds zstd-based frames (skipped); valid-rans/ and valid-lanes/ must decode entirely.
    if not (check_valid(root, "valid", base, False, 6) and check_valid(root, "valid-rans", base, True, 5) and
            check_valid(root, "valid-lanes", base, True, 7) and
            check_valid(root, "valid-patch", base, True, 3 if zstandard is None else 5) and
            check_valid(root, "valid-words", base, True, 4) and
            check_valid(root, "valid-wrans", base, True, 4) and
            check_valid(root, "valid-wrans-ids", base, True, 1) and
            check_valid(root, "valid-approx", base, True, 8) and
            check_valid(root, "valid-lowrank", base, True, 2 if zstandard is None else 3) and
            check_valid(root, "valid-grouped-rc", base, True, 4) and
            check_valid(root, "valid-compact", base, True, 8) and
            (zstandard is None or check_valid(root, "valid-compact-zstd", base, True, 8)) and
            check_valid(root, "valid-compact-record", base, True, 8) and
            check_valid(root, "valid-compact-record-labels", base, True, 8)):
        return 1
    rec = lossy_record((root / "valid-compact-record" / "tenpak.idx").read_bytes())
    if rec is None or rec["method"] != "golden:1" or rec["quality"]["ppl_ratio"] != 1.00567:
        print(f"FAIL valid-compact-record: lossy record {rec}")
        return 1
    print(f"ok   valid-compact-record: lossy record {rec['method']}, ppl ratio {rec['quality']['ppl_ratio']}")
    rec = lossy_record((root / "valid-compact-record-labels" / "tenpak.idx").read_bytes())
    if rec is None or rec.get("qat_label_weight") != 0.25:
        print(f"FAIL valid-compact-record-labels: lossy record {rec}")
        return 1
    print(f"ok   valid-compact-record-labels: qat_label_weight {rec['qat_label_weight']}")
    # Records the C++ reader (codec/src/lossy_info.cc) refuses are refused here too.
    for bad in (b'{"format":"tenpak.lossy","version":true,"method":"x","quality":{}}',
                b'{"format":"tenpak.lossy","version":1.0,"method":"x","quality":{}}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{"kl_mean":NaN}}',
                b'{"format":"tenpak.lossy","version":1,"method":"\xff","quality":{}}',
                b'{"format":"tenpak.lossy","version":1,"method":"x"}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":1.5}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":-0.1}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":"0.25"}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":true}',
                b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":null}'):
        try:
            check_record(bad, [])
        except Corrupt:
            continue
        print(f"FAIL lossy record {bad!r} accepted")
        return 1
    check_record(b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{}}', [])
    check_record(b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":0}', [])
    check_record(b'{"format":"tenpak.lossy","version":1,"method":"x","quality":{},"qat_label_weight":1}', [])
    n = check_invalid(root, base)
    if n < 0:
        return 1
    if n < 29:
        print(f"FAIL: only {n} invalid cases checked")
        return 1
    print(f"valid and {n} invalid golden deltas decoded from the specification alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
