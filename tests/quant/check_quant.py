"""Checks `tenpak quantize` outputs with code that shares nothing with TenPak's.

  check_quant.py DUMP

For each preset, on stories260K (converted with `tenpak convert llama2c`): the output directory is read with
the `safetensors` package and every quantized linear is dequantized here, following the loaders' own code
paths as published (AutoGPTQ qlinear_cuda_old's torch unpacking with its shift table and the fix-ups of the
3-bit codes 10 and 21; AutoAWQ's unpack with AWQ_REVERSE_ORDER; bitsandbytes' default-backend 4-bit
dequantization, nested absmax and int8 row scales; docs/QUANT_FORMATS.md cites each). The result must
equal, tensor for tensor, what TenPak's own loader returns (DUMP = tests/quant's tenpak_quant_dump, which
writes load_model_any's tensors).

Then it tries transformers' AutoModelForCausalLM.from_pretrained on each output (CPU, the .venv's versions)
and prints what happened: informative only, these loaders need CUDA or packages this machine lacks.

Needs TENPAK_BIN (tenpak with tenpak-ml beside it) and ../shared/data; exits 77 (skipped) without them
or without torch / safetensors.
"""
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def skip(why):
    print("SKIP:", why)
    sys.exit(SKIP)


try:
    import torch
    from safetensors.torch import load_file
except Exception as e:  # noqa: BLE001
    skip(f"torch / safetensors not importable: {e}")

DATA = os.path.join(os.environ.get("TENPAK_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"), "data")
BIN = os.path.join(DATA, "llama2c", "stories260K.bin")
TOK = os.path.join(DATA, "llama2c", "tok512.bin")
CALIB = os.path.join(DATA, "text", "tinyshakespeare.txt")
for p in (BIN, TOK, CALIB):
    if not os.path.exists(p):
        skip(f"{p} absent")
TENPAK = os.environ.get("TENPAK_BIN")
if not TENPAK or not os.path.exists(os.path.join(os.path.dirname(TENPAK), "tenpak-ml")):
    skip("TENPAK_BIN with tenpak-ml beside it is needed")
DUMP = sys.argv[1]


# --- GPTQ, as AutoGPTQ's QuantLinear (qlinear_cuda_old) unpacks in its torch path ---------------------
def gptq_unpack_rows(q, bits):
    """int32 [R, N] packed along dim 0 -> codes [R/bits*32, N]."""
    n = q.shape[1]
    if bits in (2, 4, 8):
        wf = torch.tensor(list(range(0, 32, bits)), dtype=torch.int32).unsqueeze(0)
        w = torch.bitwise_right_shift(q.unsqueeze(1).expand(-1, 32 // bits, -1), wf.unsqueeze(-1))
        w = torch.bitwise_and(w, (2 ** bits) - 1)
        return w.reshape(-1, n)
    wf = torch.tensor([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                       [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                       [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=torch.int32).reshape(1, 3, 12)
    w = q.reshape(q.shape[0] // 3, 3, 1, n).expand(-1, -1, 12, -1)
    w = (w >> wf.unsqueeze(-1)) & 0x7
    w[:, 0, 10] = (w[:, 0, 10] & 0x3) | ((w[:, 1, 0] << 2) & 0x4)
    w[:, 1, 11] = (w[:, 1, 11] & 0x1) | ((w[:, 2, 0] << 1) & 0x6)
    w = w & 0x7
    return torch.cat([w[:, 0, :11], w[:, 1, 1:12], w[:, 2, 1:11]], dim=1).reshape(-1, n)


def gptq_dequant(t, base, bits):
    qw, qz, sc, g = t[base + ".qweight"], t[base + ".qzeros"], t[base + ".scales"], t[base + ".g_idx"]
    q = gptq_unpack_rows(qw, bits)                       # [in, out]
    z = gptq_unpack_rows(qz.t().contiguous(), bits).t() + 1  # along the output dim: the same runs, transposed
    g = g.long()
    w = sc.float()[g] * (q.float() - z.float()[g])
    return w.t().contiguous()


# --- AWQ GEMM, as AutoAWQ's unpack_awq / reverse_awq_order / dequantize_gemm --------------------------
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def awq_unpack(q):
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    w = torch.bitwise_right_shift(q[:, :, None], shifts[None, None, :]).reshape(q.shape[0], -1)
    order = torch.arange(w.shape[-1]).reshape(-1, 8)[:, AWQ_REVERSE_ORDER].reshape(-1)
    return torch.bitwise_and(w[:, order], 0xF)


def awq_dequant(t, base, group):
    q, z, s = awq_unpack(t[base + ".qweight"]), awq_unpack(t[base + ".qzeros"]), t[base + ".scales"].float()
    z = z.repeat_interleave(group, dim=0)
    s = s.repeat_interleave(group, dim=0)
    return ((q.float() - z.float()) * s).t().contiguous()


# --- bitsandbytes (default backend) --------------------------------------------------------------------
def bnb4_dequant(t, name):
    qs_key = [k for k in t if k.startswith(name + ".quant_state.bitsandbytes__")]
    assert len(qs_key) == 1, qs_key
    qs = json.loads(bytes(t[qs_key[0]].tolist()).decode("utf-8"))
    code = t[name + ".quant_map"].float()
    absmax = t[name + ".absmax"]
    if "nested_offset" in qs:
        code2, a2 = t[name + ".nested_quant_map"].float(), t[name + ".nested_absmax"].float()
        v = code2[absmax.long()]
        nb = qs["nested_blocksize"]
        blocks = torch.arange(v.numel()) // nb
        absmax = v * a2[blocks]
        absmax = absmax + torch.tensor(float(qs["nested_offset"]), dtype=torch.float32)
    packed = t[name].reshape(-1).to(torch.int32)
    n = qs["shape"][0] * qs["shape"][1]
    out = torch.empty(packed.numel() * 2, dtype=torch.int32)
    out[1::2] = packed & 0xF
    out[::2] = packed >> 4
    vals = code[out.long()][:n]
    bs = qs["blocksize"]
    scale = absmax.float()[torch.arange(n) // bs]
    w = (vals * scale).reshape(qs["shape"])
    return w.to(getattr(torch, qs["dtype"])).float()


def bnb8_dequant(t, name, base):
    return t[name].float() * t[base + ".SCB"].float().view(-1, 1) * 7.874015718698502e-3


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def main():
    presets = ["gptq-4bit-128g", "gptq-3bit-128g", "gptq-8bit-128g", "rtn-2bit-32g", "awq-4bit-64g",
               "bnb-nf4", "bnb-fp4", "bnb-int8"]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, "fp32")
        run(TENPAK, "convert", "llama2c", BIN, "--tokenizer", TOK, "-o", fp32)
        for p in presets:
            out = os.path.join(tmp, p)
            run(TENPAK, "quantize", fp32, "--preset", p, "-o", out, "--calib", CALIB, "--calib-samples", "8",
                "--seq-len", "128")
            dump = os.path.join(tmp, p + ".dump.safetensors")
            run(DUMP, out, dump)
            mine = load_file(dump)
            t = {}
            for f in sorted(os.listdir(out)):
                if f.endswith(".safetensors"):
                    t.update(load_file(os.path.join(out, f)))
            cfg = json.load(open(os.path.join(out, "config.json")))
            qc = cfg["quantization_config"]
            checked, worst = 0, 0.0
            for name, ref in mine.items():
                base = name[: -len(".weight")] if name.endswith(".weight") else name
                if qc["quant_method"] == "gptq" and base + ".qweight" in t:
                    w = gptq_dequant(t, base, qc["bits"])
                elif qc["quant_method"] == "awq" and base + ".qweight" in t:
                    w = awq_dequant(t, base, qc["group_size"])
                elif qc["quant_method"] == "bitsandbytes" and name in t and t[name].dtype == torch.uint8:
                    w = bnb4_dequant(t, name)
                elif qc["quant_method"] == "bitsandbytes" and name in t and t[name].dtype == torch.int8:
                    w = bnb8_dequant(t, name, base)
                else:
                    w = t[name].float()  # stored in float: must be what TenPak read
                if w.shape != ref.shape:
                    print(f"FAIL {p} {name}: shape {tuple(w.shape)} != {tuple(ref.shape)}")
                    failures += 1
                    continue
                d = (w - ref).abs().max().item() if w.numel() else 0.0
                worst = max(worst, d)
                checked += 1
                if d != 0.0:
                    print(f"FAIL {p} {name}: max |diff| {d:g}")
                    failures += 1
            print(f"{p}: {checked} tensors, loader-rule dequantization equals TenPak's (max |diff| {worst:g})")
            # transformers itself (informative: its quantizers need CUDA and auto-gptq / autoawq / bitsandbytes).
            try:
                import transformers  # noqa: F401
                from transformers import AutoModelForCausalLM
                try:
                    AutoModelForCausalLM.from_pretrained(out)
                    print(f"  transformers {transformers.__version__}: loaded {p}")
                except Exception as e:  # noqa: BLE001
                    print(f"  transformers {transformers.__version__} cannot load {p} here: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            except Exception as e:  # noqa: BLE001
                print(f"  transformers not importable: {e}")
    if failures:
        print(f"{failures} failures")
        sys.exit(1)


if __name__ == "__main__":
    main()
