#!/usr/bin/env python3
"""Checks tenpak-train's output (OUT/{bf16,fp32}/{base,finetune}) against its
--json summary, from the files alone: every safetensors file parses, names and
shapes are Llama-like, the BF16 base is the FP32 base rounded to nearest even,
the fine-tune really differs from the base (in BF16 some but not all weights),
the bit-identical counts match the summary, and the losses fell.
Usage: check_outputs.py OUT SUMMARY_JSON. Exit 0 when all checks pass."""
import json, struct, sys

out, summary = sys.argv[1], json.load(open(sys.argv[2]))
fails = 0


def check(cond, what):
    global fails
    print(("ok: " if cond else "FAIL: ") + what)
    fails += 0 if cond else 1


def read_st(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), f"{path}: header past end of file"
    hdr = json.loads(data[8:8 + n])
    hdr.pop("__metadata__", None)
    end = 0
    tensors = {}
    for name, t in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        es = {"BF16": 2, "F32": 4}[t["dtype"]]
        numel = 1
        for d in t["shape"]:
            numel *= d
        assert b == end and e - b == numel * es, f"{path}: {name}: bad offsets"
        end = e
        tensors[name] = (t["dtype"], t["shape"], data[8 + n + b:8 + n + e])
    assert 8 + n + end == len(data), f"{path}: trailing bytes"
    return tensors


cfg = summary["config"]
st = {}
for dt in ("bf16", "fp32"):
    for side in ("base", "finetune"):
        d = f"{out}/{dt}/{side}"
        try:
            st[dt, side] = read_st(d + "/model.safetensors")
            c = json.load(open(d + "/config.json"))
            tok = json.load(open(d + "/tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - report any parse failure as a failed check
            check(False, f"{d} parses: {e}")
            continue
        check(c["hidden_size"] == cfg["dim"] and c["num_hidden_layers"] == cfg["layers"]
              and c["torch_dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[dt], f"{d}/config.json matches")
        check(len(tok["model"]["vocab"]) == cfg["vocab"], f"{d}/tokenizer.json has {cfg['vocab']} tokens")
        t = st[dt, side]
        want = {"model.embed_tokens.weight": [cfg["vocab"], cfg["dim"]],
                "model.layers.0.self_attn.q_proj.weight": [cfg["dim"], cfg["dim"]],
                "model.layers.0.mlp.down_proj.weight": [cfg["dim"], cfg["intermediate"]],
                f"model.layers.{cfg['layers'] - 1}.post_attention_layernorm.weight": [cfg["dim"]],
                "model.norm.weight": [cfg["dim"]], "lm_head.weight": [cfg["vocab"], cfg["dim"]]}
        check(all(n in t and t[n][1] == s for n, s in want.items()), f"{d}: Llama names and shapes")
        check(len(t) == 3 + 9 * cfg["layers"], f"{d}: {len(t)} tensors")
        check(all(v[0] == {"bf16": "BF16", "fp32": "F32"}[dt] for v in t.values()), f"{d}: dtype {dt}")

if fails:
    sys.exit(1)

# BF16 base == FP32 base rounded to nearest even (what saving in BF16 does).
rne_ok = True
for name, (_, _, f32) in st["fp32", "base"].items():
    u = struct.unpack(f"<{len(f32) // 4}I", f32)
    r = struct.pack(f"<{len(u)}H", *(((x + 0x7FFF + ((x >> 16) & 1)) >> 16) & 0xFFFF for x in u))
    rne_ok &= r == st["bf16", "base"][name][2]
check(rne_ok, "bf16 base is the fp32 base rounded to nearest even")

for dt, es in (("bf16", 2), ("fp32", 4)):
    same = total = 0
    for name, (_, _, b) in st[dt, "base"].items():
        f = st[dt, "finetune"][name][2]
        n = len(b) // es
        total += n
        same += sum(b[i * es:(i + 1) * es] == f[i * es:(i + 1) * es] for i in range(n))
    s = summary["finetune"][dt]
    frac = same / total
    print(f"{dt}: {same}/{total} weights bit-identical to the base ({100 * frac:.2f}%)")
    check(same == s["weights_identical"] and total == s["weights"], f"{dt}: summary counts match the files")
    check(same < total, f"{dt}: the fine-tune changed weights")
    if dt == "bf16":
        check(same > 0, "bf16: some weights stay bit-identical (updates under half an ulp)")
    check(s["loss_after"] < s["loss_before"], f"{dt}: fine-tune loss fell {s['loss_before']:.4f} -> {s['loss_after']:.4f}")

b = summary["base"]
check(b["loss_final"] < b["loss_init"] - 0.5, f"pre-train loss fell {b['loss_init']:.4f} -> {b['loss_final']:.4f}")
sys.exit(1 if fails else 0)
