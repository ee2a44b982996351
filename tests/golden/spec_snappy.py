#!/usr/bin/env python3
"""Second decoder of codec 10's snappy pages (docs/FORMAT.md, "Snappy pages", method bit 5).

    spec_snappy.py tests/golden

Decodes tests/golden/snappy/valid (against tests/golden/snappy/base/base.bin) from the
specification: the extents' snappy streams are decompressed by the code below, written from
snappy's format_description.txt (https://github.com/google/snappy); the op and literal streams by
spec_decode.py's `patch` (the same rules as without bit 5, over B = the decompressed extents); the
output's re-compression by a reference snappy compressor, pyarrow's `pa.compress(x, codec='snappy')`
(pyarrow 17 bundles Google's snappy; measured identical to Debian 12's libsnappy 1.1.9). Checks
every file's sha256 against expected.txt, then that every invalid/ case is refused. Without pyarrow
(here or in ../../.venv, which it re-runs itself under) it checks the invalid cases it can decide
without a compressor and exits 77 (skipped).
"""
import hashlib
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import spec_decode as sd  # noqa: E402

try:
    import pyarrow as pa
except ImportError:
    pa = None
    venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    if venv.exists() and os.environ.get("TENPAK_SPEC_SNAPPY_REEXEC") != "1":
        os.environ["TENPAK_SPEC_SNAPPY_REEXEC"] = "1"
        os.execv(str(venv), [str(venv), __file__] + sys.argv[1:])

MAX_B = 4 << 20


def snappy_length(s):
    """The preamble: the uncompressed length as LEB128 (at most 5 bytes, < 2^32)."""
    v, p = 0, 0
    for sh in range(0, 35, 7):
        sd.need(p < len(s), "snappy: truncated preamble")
        b = s[p]
        p += 1
        v |= (b & 0x7F) << sh
        if not b & 0x80:
            sd.need(v < 1 << 32, "snappy: preamble over 32 bits")
            return v, p
    raise sd.Corrupt("snappy: preamble longer than 5 bytes")


def unsnappy(s):
    n, p = snappy_length(s)
    out = bytearray()
    while p < len(s):
        tag = s[p]
        p += 1
        kind = tag & 3
        if kind == 0:  # literal: length - 1 in the tag, or in 1-4 bytes after it
            ln = tag >> 2
            if ln >= 60:
                k = ln - 59
                sd.need(p + k <= len(s), "snappy: truncated literal length")
                ln = int.from_bytes(s[p:p + k], "little")
                p += k
            ln += 1
            sd.need(p + ln <= len(s), "snappy: literal past the stream")
            out += s[p:p + ln]
            p += ln
            continue
        if kind == 1:  # copy, 1-byte offset: length 4..11, offset 11 bits
            sd.need(p + 1 <= len(s), "snappy: truncated copy")
            ln, off = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | s[p]
            p += 1
        else:  # copy, 2- or 4-byte offset: length 1..64
            k = 2 if kind == 2 else 4
            sd.need(p + k <= len(s), "snappy: truncated copy")
            ln, off = 1 + (tag >> 2), int.from_bytes(s[p:p + k], "little")
            p += k
        sd.need(0 < off <= len(out), "snappy: copy offset outside the output")
        for _ in range(ln):  # byte by byte: a copy may overlap its own output
            out.append(out[-off])
        sd.need(len(out) <= n, "snappy: output past the preamble's length")
    sd.need(len(out) == n, "snappy: output shorter than the preamble's length")
    return bytes(out)


def snappy_page(payload, base, fr):
    """A codec-10 frame with bit 5: B from the decompressed extents, then spec_decode's patch over a
    payload without bit 5 whose single extent is all of B (same ops, literals, prefix, line table)."""
    sd.need(len(payload) >= 4, "payload shorter than its header")
    ne = struct.unpack_from("<I", payload, 0)[0]
    sd.need(ne <= 4096 and 4 + 12 * ne + 25 <= len(payload), "payload shorter than its header")
    sd.need((ne == 0) == (fr["base_file"] == 0xFFFFFFFF), "extents without a base file or the reverse")
    h = 4 + 12 * ne
    exts = [struct.unpack_from("<QI", payload, 4 + 12 * i) for i in range(ne)]
    total = 0
    for off, ln in exts:
        sd.need(ln >= 1 and off >= fr["base_offset"] and off + ln <= fr["base_offset"] + fr["base_len"],
                "extent outside the base range")
        total += ln
    sd.need(total <= MAX_B, "extents longer than 4 MiB")
    # B's length from the preambles, checked before decompressing.
    sd.need(sum(snappy_length(base[o:o + ln])[0] for o, ln in exts) <= MAX_B, "B over 4 MiB")
    B = b"".join(unsnappy(base[o:o + ln]) for o, ln in exts)
    method = payload[h]
    inner_len, raw_len = struct.unpack_from("<II", payload, h + 17)
    sd.need(inner_len <= MAX_B and raw_len <= inner_len and raw_len <= fr["out_len"], "snappy page lengths")
    rest = payload[h + 1:h + 17] + payload[h + 25:]
    if B:
        inner_payload = struct.pack("<IQI", 1, 0, len(B)) + bytes([method & ~32]) + rest
        f2 = dict(fr, base_file=0, base_offset=0, base_len=len(B))
    else:
        inner_payload = struct.pack("<I", 0) + bytes([method & ~32]) + rest
        f2 = dict(fr, base_file=0xFFFFFFFF, base_offset=0, base_len=0)
    inner = sd.patch(inner_payload, B, inner_len, fr["dtype"], f2)
    if pa is None:
        raise sd.Skip("no reference snappy compressor (pyarrow)")
    out = inner[:raw_len] + pa.compress(inner[raw_len:], codec="snappy", asbytes=True)
    sd.need(len(out) == fr["out_len"], "snappy of the page is not out_len - raw_len bytes")
    return out


def rebuild(delta, base, of, frames):
    dat = (delta / "tenpak.dat").read_bytes()
    buf = bytearray(of["size"])
    for f in frames[of["first"]:of["first"] + of["count"]]:
        p = dat[f["data_offset"]:f["data_offset"] + f["data_len"]]
        sd.need(len(p) == f["data_len"], "payload past the end of tenpak.dat")
        sd.need(f["codec"] == 10, "not a codec-10 frame")
        ne = struct.unpack_from("<I", p, 0)[0] if len(p) >= 4 else 0
        m = p[4 + 12 * ne] if len(p) > 4 + 12 * ne else 0
        o = snappy_page(p, base, f) if m & 32 else sd.patch(p, base, f["out_len"], f["dtype"], f)
        sd.need(len(o) == f["out_len"], "wrong output length")
        buf[f["out_offset"]:f["out_offset"] + f["out_len"]] = o
    return bytes(buf)


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent) / "snappy"
    base = (root / "base" / "base.bin").read_bytes()
    ok, skipped = True, 0
    _, _, outs, frames = sd.parse_index((root / "valid" / "tenpak.idx").read_bytes())
    expected = dict(reversed(line.split()) for line in (root / "valid" / "expected.txt").read_text().split("\n")[1:] if line)
    for of in outs:
        try:
            got = hashlib.sha256(rebuild(root / "valid", base, of, frames)).hexdigest()
        except sd.Skip as e:
            print(f"skip valid/{of['name']}: {e}")
            skipped += 1
            continue
        except sd.Corrupt as e:
            print(f"FAIL valid/{of['name']}: refused: {e}")
            ok = False
            continue
        if got != expected[of["name"]]:
            print(f"FAIL valid/{of['name']}: sha256 {got} != {expected[of['name']]}")
            ok = False
        else:
            print(f"ok   valid/{of['name']}")
    for delta in sorted((root / "invalid").iterdir()):
        _, _, outs, frames = sd.parse_index((delta / "tenpak.idx").read_bytes())
        try:
            for of in outs:
                if hashlib.sha256(rebuild(delta, base, of, frames)).digest() != of["sha"]:
                    raise sd.Corrupt("sha256 differs")
        except sd.Skip as e:
            print(f"skip invalid/{delta.name}: {e}")
            skipped += 1
            continue
        except sd.Corrupt as e:
            print(f"ok   invalid/{delta.name} refused ({e})")
            continue
        print(f"FAIL invalid/{delta.name}: decoded without error")
        ok = False
    if not ok:
        return 1
    if skipped:
        print(f"{skipped} cases need a snappy compressor (pyarrow): skipped")
        return 77
    print("snappy golden deltas decoded from the specification")
    return 0


if __name__ == "__main__":
    sys.exit(main())
