#!/usr/bin/env bash
# GPTQ outputs of `tenpak quantize` loaded by the real loader that runs on a
# CPU with Debian's torch 1.13: transformers + optimum + auto-gptq (torch
# fallback kernels), each QuantLinear's own dequantization compared with
# TenPak's (check_real_loaders.py). Skips (77) when $TENPAK_LOADER_PYTHON
# (default: the repository's .venv) cannot import auto_gptq and optimum: CI's
# .venv does not carry them (auto-gptq's wheel bundles CUDA kernels); the
# versions that work are in docs/QUANT_FORMATS.md ("Real loaders").
# usage: real_loaders.sh TENPAK_ML QUANT_DUMP
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ml=$1
dump=$2
py=${TENPAK_LOADER_PYTHON:-$here/../../.venv/bin/python}
shared=${TENPAK_SHARED:-$here/../../../shared}
bin=$shared/data/llama2c/stories260K.bin
tok=$shared/data/llama2c/tok512.bin
calib=$shared/data/text/tinyshakespeare.txt
[ -x "$py" ] || { echo "SKIP: $py missing"; exit 77; }
"$py" -c "import auto_gptq, optimum.gptq" 2>/dev/null ||
  { echo "SKIP: $py cannot import auto_gptq and optimum (see docs/QUANT_FORMATS.md, Real loaders)"; exit 77; }
for f in "$bin" "$tok" "$calib"; do [ -e "$f" ] || { echo "SKIP: $f absent"; exit 77; }; done
work=$(mktemp -d /tmp/tenpak-real-loaders.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$ml" convert llama2c "$bin" --tokenizer "$tok" -o "$work/fp32" >/dev/null
outs=()
q() {  # NAME PRESET [flags]
  local name=$1 preset=$2
  shift 2
  "$ml" quantize "$work/fp32" --preset "$preset" -o "$work/$name" --calib "$calib" --calib-samples 8 --seq-len 128 \
    --threads 1 "$@" >/dev/null
  outs+=("$work/$name")
}
# Groups of 32 only: on stories260K's in_features 64 a group of 128 is
# larger than the row, which AutoGPTQ's torch fallback cannot reshape
# ("shape '[-1, 128, 32]' is invalid"; docs/QUANT_FORMATS.md).
q gptq4-32 gptq-4bit-32g
q gptq4-32-act gptq-4bit-32g --act-order --static-groups true
q rtn3-32 rtn-3bit-32g
q rtn8-32 rtn-8bit-32g
q rtn2-32 rtn-2bit-32g
"$py" "$here/check_real_loaders.py" "$dump" "${outs[@]}"
