#!/usr/bin/env python3
"""Where every byte of a delta directory goes (issue 20: the fixed cost of a lossy delta's budget).

Reads DIR/tenpak.idx (version-1 or compact layout, parsed by tests/golden/spec_decode.py, the second
decoder written from docs/FORMAT.md) and DIR/tenpak.dat, maps each frame to what it holds (a tensor of
a safetensors output file, that file's header, another file) with the fine-tune's safetensors headers,
and prints the bytes per part:

  index          tenpak.idx: head + checksum, base/output file records, frame records (v1: 64 B each)
  approx         codec-11 frames (the approximated tensors): payload head (6 B), the body's own header
                 (grouped: 14 B + 2 B per scale) and the rest (codes, zstd frame overhead)
  lossless-*     every other frame's payload: tensors (norms; the embedding without --lossy-embeddings),
                 safetensors headers, other files (config, tokenizer)
  record         the lossy record in the compact index (flags bit 2; docs/FORMAT.md "Lossy deltas"):
                 its JSON length and its share of the index (the index written again without it, with
                 the `zstandard` module at level 19 as TenPak writes it: exact up to zstd versions)
  side file      tenpak.lossy.json of deltas written before the record moved into the index

Every file of the directory is counted in the total (the side file too, when there is one).

  python3 bench/lossy_bytes.py DIR FINETUNE_DIR [--json]

It also says what the same frames and records cost in the layouts written before the compact index and
codec 11's sub-method 4 (issue 20, fifth pass): the version-1 index (exact: its records have fixed sizes)
and every sub-method-4 frame as sub-method 3 (codes bit-packed, body zstd level 19 when smaller; with the
python `zstandard` module, whose zstd may differ by a few bytes from the library TenPak links).
"""
import json
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "golden"))
import spec_decode  # noqa: E402


def tensor_ranges(ft_dir, name):
    path = Path(ft_dir) / name
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
    head.pop("__metadata__", None)
    return 8 + n, sorted((8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1], k) for k, v in head.items())


def as_method3(p, f):
    """The payload of a sub-method-4 frame re-encoded as sub-method 3 (FORMAT.md): same codes."""
    import zstandard
    body = p[6:]
    r = spec_decode.Body(body)
    cols, skip = r.leb(), r.leb()
    b, z2 = r.take(2)
    g = r.leb()
    count = f["out_len"] // spec_decode.DTYPES[f["dtype"]][1]
    rows = (skip + count + cols - 1) // cols
    S = rows * ((cols + g - 1) // g) if g else 1
    scales = r.take(2 * S)
    rd = spec_decode.RangeDecoder(body[r.i:])
    probs = [[2048, 0] for _ in range(9 << b)]
    codes, cls = 0, []
    for i in range(count):
        left = cls[i - 1] if (skip + i) % cols and i > 0 else 1
        up = cls[i - cols] if i >= cols else 1
        node = 1
        for _ in range(b):
            node = 2 * node + rd.bit(probs[((3 * left + up) << b) + node])
        q = node - (1 << b)
        codes |= q << (i * b)
        cls.append(0 if 2 * q < z2 else 1 if 2 * q == z2 else 2)
    raw = struct.pack("<IIBBI", cols, skip, b, z2, g) + scales + codes.to_bytes((count * b + 7) // 8, "little")
    z = zstandard.ZstdCompressor(level=19).compress(raw)
    return 6 + min(len(z), len(raw))


def spec_decode_uvar(n):
    """LEB128 of n (FORMAT.md, "Compact index")."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def v1_index_bytes(locs, bases, outs, frames):
    """docs/FORMAT.md's version-1 layout: fixed-size records."""
    return (36 + sum(4 + len(x.encode()) for x in locs) + sum(4 + len(b[0].encode()) + 40 for b in bases) +
            sum(4 + len(o["name"].encode()) + 52 for o in outs) + 64 * len(frames) + 8)


def main():
    d, ft = Path(sys.argv[1]), sys.argv[2]
    idx = (d / "tenpak.idx").read_bytes()
    flags = struct.unpack("<I", idx[12:16])[0]
    rec = []
    locs, bases, outs, frames = spec_decode.parse_index(idx, rec)
    dat = (d / "tenpak.dat").read_bytes()
    parts = {}

    def add(k, n, c=1):
        a = parts.setdefault(k, [0, 0])
        a[0] += n
        a[1] += c
    # The index: its layout's fixed parts, then the records.
    add("index total (%s)" % ("compact" if flags & 1 else "v1"), len(idx))
    add("index as version 1 (exact)", v1_index_bytes(locs, bases, outs, frames))
    if not flags & 1:
        add("index: frame records (64 B)", 64 * len(frames), len(frames))
        add("index: output file records", sum(4 + len(o["name"]) + 52 for o in outs), len(outs))
        add("index: base file records", sum(4 + len(b[0]) + 40 for b in bases), len(bases))
        add("index: head, locations, checksum", 36 + sum(4 + len(x) for x in locs) + 8)
    per_tensor = []
    for o in outs:
        fr = frames[o["first"]:o["first"] + o["count"]]
        if o["name"].endswith(".safetensors"):
            hdr_end, ranges = tensor_ranges(ft, o["name"])
        else:
            hdr_end, ranges = None, []
        for f in fr:
            p = dat[f["data_offset"]:f["data_offset"] + f["data_len"]]
            name = None
            for a, b, k in ranges:
                if a <= f["out_offset"] < b:
                    name = k
                    break
            if f["codec"] == 11:
                add("approx: payload head (6 B)", 6, 1)
                add("approx: sub-method %d bodies" % p[0], len(p) - 6, 1)
                before = as_method3(p, f) if p[0] == 4 else len(p)
                add("approx as before (sub-method 4 frames as 3)", before, 1)
                per_tensor.append((name, "approx", f["codec"], len(p)))
            elif name is not None:
                kind = "lossless: tensor payloads"
                add(kind, len(p), 1)
                per_tensor.append((name, "lossless", f["codec"], len(p)))
            elif hdr_end is not None:
                add("lossless: safetensors header frames", len(p), 1)
                per_tensor.append((o["name"] + " (header)", "lossless", f["codec"], len(p)))
            else:
                add("lossless: other files (%s)" % o["name"], len(p), 1)
                per_tensor.append((o["name"], "lossless", f["codec"], len(p)))
    side = d / "tenpak.lossy.json"
    total = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    if rec:
        add("index: lossy record (JSON bytes, before zstd)", len(rec[0]))
        if flags & 2:
            import zstandard
            body = zstandard.ZstdDecompressor().decompress(idx[32:-8], max_output_size=struct.unpack("<I", idx[28:32])[0])
            n = len(rec[0])
            lenlen = len(spec_decode_uvar(n))
            bare = body[:len(body) - n - lenlen]
            z = zstandard.ZstdCompressor(level=19).compress(bare)
            add("index: lossy record's share (index - index without it)", len(idx) - (40 + min(len(z), len(bare))))
    rep = {"delta_bytes": total, "index_bytes": len(idx), "data_bytes": len(dat),
           "record_bytes": len(rec[0]) if rec else 0,
           "side_file_bytes": side.stat().st_size if side.exists() else 0,
           "frames": len(frames), "out_files": [o["name"] for o in outs],
           "parts": {k: {"bytes": v[0], "count": v[1]} for k, v in parts.items()},
           "frames_detail": [{"what": a, "stored": b, "codec": c, "bytes": n} for a, b, c, n in per_tensor]}
    if "--json" in sys.argv:
        print(json.dumps(rep, indent=1))
        return
    print(f"{d}: {total} B (every file) = tenpak.idx {len(idx)} + tenpak.dat {len(dat)} + side file "
          f"{rep['side_file_bytes']}; lossy record {rep['record_bytes']} B of JSON in the index; {len(frames)} frames")
    for k, v in parts.items():
        print(f"  {k:62s} {v[0]:8d} B  ({v[1]})")
    lossless = [x for x in per_tensor if x[1] == "lossless"]
    print("  lossless frames: " + ", ".join(f"{a} c{c} {n}" for a, _, c, n in lossless))


if __name__ == "__main__":
    main()
