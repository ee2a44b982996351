"""Checks the runtime (runtime/) against implementations it shares no code with.

  check_runtime.py transformers DUMP   `tenpak convert llama2c` on stories260K, then the runtime's logits
                                       (full forward and KV-cache decoding) against transformers'
                                       LlamaForCausalLM.from_pretrained(DIR) on the same ids: max |diff| <= 1e-4
  check_runtime.py llama2c DUMP        the converted directory's logits against llama2.c's forward written
                                       here from the .bin file (interleaved RoPE, no q/k permutation,
                                       as run.c computes it): proves the conversion's permutation
  check_runtime.py tokenizer DUMP      the runtime's encoder against llama2.c's encode() (run.c) ported
                                       here literally, on real text, UTF-8 and byte fallbacks

DUMP is tests/runtime's tenpak_runtime_dump. Needs TENPAK_BIN (tenpak, with tenpak-ml beside it) and
../shared/data/llama2c; exits 77 (skipped) when the data or a Python package is missing.
"""
import math
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77
TOL = 1e-4


def skip(why):
    print("SKIP:", why)
    sys.exit(SKIP)


def shared_dir():
    d = os.environ.get("TENPAK_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    return os.path.join(d, "data")


DATA = shared_dir()
BIN = os.path.join(DATA, "llama2c", "stories260K.bin")
TOK = os.path.join(DATA, "llama2c", "tok512.bin")
if not (os.path.exists(BIN) and os.path.exists(TOK)):
    skip(f"{BIN} or {TOK} absent")
try:
    import torch
except ImportError:
    skip("python torch missing (Debian python3-torch)")

torch.set_num_threads(2)
MODE, DUMP = sys.argv[1], sys.argv[2]
STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big, red ball. \"Can I play with you?\" she asked her mom.\nMom said yes, and they "
         "played all day long until the sun went down.")


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"FAIL: {' '.join(args)} exited {r.returncode}")
    return r.stdout


def encode_with_runtime(tok_path, text, tmp):
    p = os.path.join(tmp, "text.txt")
    with open(p, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return [int(x) for x in run(DUMP, "encode", tok_path, p).strip().split(",")]


def convert(tmp):
    tenpak = os.environ.get("TENPAK_BIN")
    if not tenpak:
        raise SystemExit("FAIL: TENPAK_BIN is not set")
    out = os.path.join(tmp, "stories260K")
    run(tenpak, "convert", "llama2c", BIN, "--tokenizer", TOK, "-o", out)
    return out


def runtime_logits(model_dir, ids, tmp, mode="logits"):
    out = os.path.join(tmp, mode + ".f32")
    run(DUMP, mode, model_dir, ",".join(map(str, ids)), out)
    import numpy as np
    a = np.fromfile(out, dtype=np.float32)
    return torch.from_numpy(a.reshape(len(ids), -1).copy())


def report(name, diff):
    print(f"{name}: max |diff| = {diff:.3e} (tolerance {TOL:.0e})")
    if not diff <= TOL:
        raise SystemExit(f"FAIL: {name} differs by {diff}")


# ------------------------------------------------------------- llama2.c side

def read_llama2c(path):
    """stories260K.bin as run.c's checkpoint_init_weights lays it out."""
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, L, H, KV, V, seq = struct.unpack("<7i", raw[:28])
    shared = V > 0
    V = abs(V)
    hs = dim // H
    kv_dim = hs * KV
    data = torch.frombuffer(bytearray(raw[28:]), dtype=torch.float32)
    off = 0

    def take(*shape):
        nonlocal off
        n = math.prod(shape)
        t = data[off:off + n].reshape(shape).to(torch.float64)
        off += n
        return t

    w = dict(emb=take(V, dim), rms_att=take(L, dim), wq=take(L, dim, dim), wk=take(L, kv_dim, dim),
             wv=take(L, kv_dim, dim), wo=take(L, dim, dim), rms_ffn=take(L, dim), w1=take(L, hidden, dim),
             w2=take(L, dim, hidden), w3=take(L, hidden, dim), rms_final=take(dim))
    off += seq * hs  # freq_cis_real, freq_cis_imag
    w["wcls"] = w["emb"] if shared else take(V, dim)
    assert off == data.numel(), (off, data.numel())
    return dict(dim=dim, hidden=hidden, L=L, H=H, KV=KV, V=V, seq=seq, hs=hs), w


def llama2c_forward(cfg, w, ids, interleaved=True):
    """run.c's forward for every position, in float64: RMSNorm (eps 1e-5), RoPE on interleaved pairs
    (2i, 2i+1) with frequency 10000^(-2i/head_size), multi-query heads h -> h // (H/KV), SwiGLU."""
    H, KV, hs, L = cfg["H"], cfg["KV"], cfg["hs"], cfg["L"]
    T = len(ids)

    def rmsnorm(x, g):
        return g * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5))

    pos = torch.arange(T, dtype=torch.float64)
    freq = 1.0 / (10000.0 ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    ang = pos[:, None] * freq[None, :]                                   # [T, hs/2]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]

    def rope(x, heads):                                                   # x [T, heads*hs]
        if not interleaved:  # halves (i, i + hs/2): what the same weights give unpermuted in transformers
            x = x.reshape(T, heads, 2, hs // 2)
            x0, x1 = x[:, :, 0], x[:, :, 1]
            return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], -1)
        x = x.reshape(T, heads, hs // 2, 2)
        x0, x1 = x[..., 0], x[..., 1]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).reshape(T, heads, hs)

    x = w["emb"][torch.tensor(ids)]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(L):
        xb = rmsnorm(x, w["rms_att"][l])
        q = rope(xb @ w["wq"][l].T, H)
        k = rope(xb @ w["wk"][l].T, KV)
        v = (xb @ w["wv"][l].T).reshape(T, KV, hs)
        out = torch.empty(T, H, hs, dtype=torch.float64)
        for h in range(H):
            kh, vh = k[:, h // (H // KV)], v[:, h // (H // KV)]
            att = (q[:, h] @ kh.T) / math.sqrt(hs)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            out[:, h] = att @ vh
        x = x + out.reshape(T, H * hs) @ w["wo"][l].T
        xb = rmsnorm(x, w["rms_ffn"][l])
        hb = torch.nn.functional.silu(xb @ w["w1"][l].T) * (xb @ w["w3"][l].T)
        x = x + hb @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def read_tokenizer(path, vocab):
    with open(path, "rb") as f:
        raw = f.read()
    off = 4
    pieces, scores = [], []
    for _ in range(vocab):
        score, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off:off + n])
        off += n
        scores.append(score)
    return pieces, scores


def llama2c_encode(pieces, scores, text):
    """run.c encode(bos=1, eos=0), step by step (bytes throughout)."""
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    toks = [1]
    data = text.encode("utf-8")
    if data:
        toks.append(lookup[b" "])
    buf = b""
    for i, ch in enumerate(data):
        if (ch & 0xC0) != 0x80:
            buf = b""
        buf += bytes([ch])
        if i + 1 < len(data) and (data[i + 1] & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            toks.append(lookup[buf])
        else:
            toks.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for i in range(len(toks) - 1):
            j = lookup.get(pieces[toks[i]] + pieces[toks[i + 1]], -1)
            if j != -1 and scores[j] > best:
                best, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            break
        toks[best_idx:best_idx + 2] = [best_id]
    return toks


def sample_texts():
    texts = [STORY, "", "a", " leading space", "Hello\n\nworld\t tab", "Ünïcödé: naïve café, 日本語, emoji 🙂!",
             "<s> is not special here; neither is <0x41>."]
    for rel, n in (("text/tinyshakespeare.txt", 1000), ("text/wikitext-2/test.txt", 1000)):
        p = os.path.join(DATA, rel)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                texts.append(f.read(n))
    return texts


def main():
    with tempfile.TemporaryDirectory() as tmp:
        if MODE == "tokenizer":
            pieces, scores = read_tokenizer(TOK, 512)
            n = 0
            for t in sample_texts():
                want = llama2c_encode(pieces, scores, t)
                got = encode_with_runtime(TOK, t, tmp)
                if got != want:
                    raise SystemExit(f"FAIL: encode({t[:40]!r}...): runtime {got[:20]}... != llama2.c {want[:20]}...")
                n += len(want)
            print(f"tokenizer: {len(sample_texts())} texts, {n} ids identical to llama2.c's encode()")
            return
        model_dir = convert(tmp)
        ids = encode_with_runtime(TOK, STORY, tmp)
        ours = runtime_logits(model_dir, ids, tmp, "logits")
        print(f"{len(ids)} tokens, logits {tuple(ours.shape)}, |logits| max {ours.abs().max().item():.2f}")
        if MODE == "transformers":
            try:
                import transformers
                from transformers import LlamaForCausalLM
            except ImportError as e:
                skip(f"transformers missing: {e}")
            m, info = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, output_loading_info=True)
            bad = {k: v for k, v in info.items() if v and k != "missing_keys" or (k == "missing_keys" and
                   [x for x in v if x != "lm_head.weight"])}
            if bad:
                raise SystemExit(f"FAIL: transformers loading info {bad}")
            m.eval()
            with torch.no_grad():
                ref = m(torch.tensor([ids])).logits[0].float()
            print(f"transformers {transformers.__version__}, torch {torch.__version__}")
            report("runtime forward vs transformers", (ours - ref).abs().max().item())
            cached = runtime_logits(model_dir, ids, tmp, "cached")
            report("runtime KV-cache decoding vs transformers", (cached - ref).abs().max().item())
        elif MODE == "llama2c":
            cfg, w = read_llama2c(BIN)
            ref = llama2c_forward(cfg, w, ids).float()
            report("runtime on the converted directory vs llama2.c forward", (ours - ref).abs().max().item())
            # The check can fail: rotating halves of the unpermuted weights (a conversion without the
            # permutation) gives other logits.
            wrong = llama2c_forward(cfg, w, ids, interleaved=False).float()
            d = (ours - wrong).abs().max().item()
            print(f"without the q/k permutation the logits would differ by {d:.3f}")
            if not d > 1e-2:
                raise SystemExit("FAIL: the permutation made no difference; the check proves nothing")
        else:
            raise SystemExit(f"unknown mode {MODE}")


if __name__ == "__main__":
    main()
