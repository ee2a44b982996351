"""Loads `tenpak quantize` outputs with the real loaders that run on this CPU, and compares the weights
they dequantize with TenPak's own (tenpak_quant_dump).

  check_real_loaders.py DUMP OUT_DIR [OUT_DIR...]

Today that is GPTQ only: transformers + optimum + auto-gptq (its CPU path: the CUDA extension is absent,
QuantLinear's torch code unpacks qweight/qzeros/g_idx). The quantized layers' forward multiplies in fp16,
which torch 1.13 cannot do on a CPU, so the check runs each QuantLinear's own forward on an identity
input with matmul done in float32 and rounded to fp16 as the layer returns it: the result is the weight
exactly as the loader reconstructs it (transposed), to compare with TenPak's within one fp16 rounding.
AWQ (autoawq, CUDA only), bitsandbytes (no build for torch 1.13) cannot be loaded here: see
docs/BENCHMARKS.md. Run with a venv that has them (pinned versions in the docs), e.g.
  python -m venv --system-site-packages V && V/bin/pip install --no-deps auto-gptq==0.7.1 optimum==1.19.2 ...
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file


def main():
    dump = sys.argv[1]
    import transformers
    from transformers import AutoModelForCausalLM
    failures = 0
    for out in sys.argv[2:]:
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "dump.safetensors")
            subprocess.run([dump, out, d], check=True)
            mine = load_file(d)
        # On a CPU optimum refuses its default exllama kernels; the loading
        # attributes passed here are merged into the file's own config.
        from transformers import GPTQConfig
        with open(os.path.join(out, "config.json")) as fh:
            bits = json.load(fh)["quantization_config"]["bits"]
        model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float16, device_map="cpu",
                                                     quantization_config=GPTQConfig(bits=bits, use_exllama=False))
        orig = torch.matmul

        def matmul_f32(a, b):
            return orig(a.float(), b.float()).to(torch.promote_types(a.dtype, b.dtype))

        n, worst = 0, 0.0
        torch.matmul = matmul_f32
        try:
            for name, mod in model.named_modules():
                if not hasattr(mod, "qweight"):
                    continue
                eye = torch.eye(mod.infeatures, dtype=torch.float16)
                with torch.no_grad():
                    w = mod(eye).float().t()  # [out, in], as the loader computes it
                ref = mine[name + ".weight"]
                tol = ref.abs().max().item() * 2 ** -10 + 1e-6  # one fp16 rounding
                diff = (w - ref).abs().max().item()
                worst = max(worst, diff / max(ref.abs().max().item(), 1e-12))
                n += 1
                if diff > tol:
                    print(f"FAIL {out} {name}: max |diff| {diff:g} > {tol:g}")
                    failures += 1
        finally:
            torch.matmul = orig
        print(f"{out}: transformers {transformers.__version__} loaded it; {n} QuantLinear weights equal TenPak's "
              f"within fp16 rounding (worst relative diff {worst:.2e})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
