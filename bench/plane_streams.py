#!/usr/bin/env python3
"""Would byte planes coded as separate zstd streams beat the sub_lanes model? (issue 15, item 4)

For one safetensors pair (F32/F16/BF16 tensors matched by name, dtype and shape), the bytes of
the fine-tune's tensor payload coded as:
  xor-planes        XOR with the base, byte planes of equal significance concatenated over the
                    tensors, each plane one zstd -19 stream (the baseline of bench/xor_baseline.h)
  ulp-planes        z = zigzag(ord(ft) - ord(base)) (the ulp difference sub_planes/sub_lanes code),
                    its byte planes, each plane one zstd -19 stream
  ulp-one-stream    the same planes concatenated into one zstd -19 stream
plus the header and unmatched tensors zstd -19 (the same for every row). Compare with TenPak's
frames for the file (`tenpak delta build --json`, files[].delta_bytes).

  /usr/bin/python3 bench/plane_streams.py BASE.safetensors FT.safetensors [--json]
numpy (Debian's python3-numpy) and the zstd CLI.
"""
import json
import subprocess
import sys

import numpy as np

from codec_bounds import read_st  # same directory: one safetensors reader for both bench scripts

UINT = {"F32": np.uint32, "F16": np.uint16, "BF16": np.uint16}


def zstd19(b):
    return len(subprocess.run(["zstd", "-q", "-19", "--single-thread", "-c"], input=b, capture_output=True,
                              check=True).stdout)


def ordered(u, bits):
    # Sign-magnitude float bits to an order-preserving unsigned integer (as f_ord in element_ops.h).
    sign = np.left_shift(np.array(1, dtype=u.dtype), bits - 1)
    return np.where(u & sign, ~u, u | sign)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    braw, boff, bh = read_st(args[0])
    fraw, foff, fh = read_st(args[1])
    planes_x, planes_z, rest = {}, {}, [fraw[:foff]]
    for name, m in fh.items():
        a, b = m["data_offsets"]
        fb = fraw[foff + a:foff + b]
        bm = bh.get(name)
        if not bm or bm["dtype"] != m["dtype"] or bm["shape"] != m["shape"] or m["dtype"] not in UINT:
            rest.append(fb)
            continue
        t = UINT[m["dtype"]]
        w = np.dtype(t).itemsize
        f = np.frombuffer(fb, dtype=t)
        bb = np.frombuffer(braw[boff + bm["data_offsets"][0]:boff + bm["data_offsets"][1]], dtype=t)
        x = f ^ bb
        d = (ordered(f, 8 * w) - ordered(bb, 8 * w)).astype(t)  # wraps: the w-byte difference
        s = d.view({2: np.int16, 4: np.int32}[w])
        z = ((s << 1) ^ (s >> (8 * w - 1))).view(t)  # zigzag
        for k in range(w):  # plane k: byte (w-1-k), most significant first
            planes_x.setdefault((w, k), []).append(((x >> (8 * (w - 1 - k))) & 0xFF).astype(np.uint8).tobytes())
            planes_z.setdefault((w, k), []).append(((z >> (8 * (w - 1 - k))) & 0xFF).astype(np.uint8).tobytes())
    rest_b = zstd19(b"".join(rest))
    xor = sum(zstd19(b"".join(v)) for v in planes_x.values()) + rest_b
    ulp = sum(zstd19(b"".join(v)) for v in planes_z.values()) + rest_b
    one = zstd19(b"".join(b"".join(v) for v in planes_z.values())) + rest_b
    r = {"file_bytes": len(fraw), "xor_planes": xor, "ulp_planes": ulp, "ulp_one_stream": one, "rest": rest_b}
    if "--json" in sys.argv:
        print(json.dumps(r))
    else:
        print(" ".join(f"{k} {v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
