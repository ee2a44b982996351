#!/usr/bin/env python3
"""What APGR the router's targets ask for, against what the data allows (issue 19).

Scores that need no training, computed on the shared RouteLLM outcomes with RouteLLM's APGR definition
(docs/ROUTER.md; prompts sorted by score, the top fraction sent to the strong model, trapezoid area):

  - routing by prompt length (characters, words), the baseline the issue quotes;
  - a *subject oracle* for MMLU: every prompt scored by the true net gain (strong - weak accuracy) of its
    own subject, measured on the test prompts themselves. No router that sees a prompt's subject but not
    the prompt's own outcome can rank unseen subjects better than this on subject-level information;
  - single prompt features (option similarity: mean pairwise Jaccard of the answer options' words,
    negation words), each in its better direction per the whole set (so optimistic by construction);
  - the weak-wrong oracle (the label itself): the ceiling.

Standard library only; reads ../shared/data/router/routellm by default.

  python3 bench/router_bounds.py [DATA_DIR] [--json]
"""
import csv
import glob
import json
import os
import re
import sys


def apgr(scores, weak, strong):
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    w, s = sum(weak) / n, sum(strong) / n
    cur = sum(weak)
    acc = [cur / n]
    for i in order:
        cur += strong[i] - weak[i]
        acc.append(cur / n)
    area = sum((acc[k] + acc[k + 1]) / 2 for k in range(n)) / n
    return (area - w) / (s - w)


def options(p):
    return re.findall(r"^[A-J][.)] (.*)$", p, re.M)


def option_jaccard(p):
    o = [set(x.lower().split()) for x in options(p)]
    sims = [len(o[i] & o[j]) / len(o[i] | o[j]) for i in range(len(o)) for j in range(i + 1, len(o))
            if o[i] | o[j]]
    return sum(sims) / len(sims) if sims else 0.0


def negations(p):
    return len(re.findall(r"\b(not|except|false|least)\b", p.lower()))


def load_mmlu(data):
    rows = []
    for f in sorted(glob.glob(os.path.join(data, "mmlu", "mmlu_*.csv"))):
        subject = os.path.basename(f)[5:-4]
        rd = csv.reader(open(f, newline=""))
        next(rd)
        for r in rd:
            rows.append((subject, r[0], r[1] == "True", r[2] == "True"))
    return rows


def load_gsm8k(data):
    csv.field_size_limit(1 << 30)
    rd = csv.reader(open(os.path.join(data, "gsm8k_responses.csv"), newline=""))
    hdr = next(rd)
    wi = next(i for i, h in enumerate(hdr) if h.startswith("mistralai/") and not h.endswith("_response"))
    si = next(i for i, h in enumerate(hdr) if h.startswith("gpt-4") and not h.endswith("_response"))
    return [("gsm8k", r[0], r[wi] == "True", r[si] == "True") for r in rd]


def report(name, rows):
    W = [r[2] for r in rows]
    S = [r[3] for r in rows]
    P = [r[1] for r in rows]
    out = {"set": name, "prompts": len(rows), "weak": sum(W) / len(W), "strong": sum(S) / len(S)}
    out["length_chars"] = apgr([len(p) for p in P], W, S)
    out["length_words"] = apgr([len(p.split()) for p in P], W, S)
    subjects = {}
    for r in rows:
        subjects.setdefault(r[0], []).append(r)
    if len(subjects) > 1:
        gain = {s: (sum(r[3] for r in rs) - sum(r[2] for r in rs)) / len(rs) for s, rs in subjects.items()}
        out["subject_oracle"] = apgr([gain[r[0]] for r in rows], W, S)
    for fname, f in (("option_jaccard", option_jaccard), ("negations", negations)):
        v = [f(p) for p in P]
        out[fname] = max(apgr(v, W, S), apgr([-x for x in v], W, S))
    out["weak_wrong_oracle"] = apgr([0.0 if w else 1.0 for w in W], W, S)
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    data = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                             "router", "routellm")
    if not os.path.isdir(os.path.join(data, "mmlu")):
        print(f"router_bounds: {data}: no mmlu/ folder (shared data absent)", file=sys.stderr)
        return 2
    mmlu = load_mmlu(data)
    names = sorted({r[0] for r in mmlu})
    half = {s: ("A" if i % 2 == 0 else "B") for i, s in enumerate(names)}
    results = [report("mmlu_all_38", mmlu),
               report("mmlu_half_A", [r for r in mmlu if half[r[0]] == "A"]),
               report("mmlu_half_B", [r for r in mmlu if half[r[0]] == "B"]),
               report("gsm8k", load_gsm8k(data))]
    if "--json" in sys.argv:
        print(json.dumps(results, indent=1))
        return 0
    cols = ["length_chars", "length_words", "subject_oracle", "option_jaccard", "negations", "weak_wrong_oracle"]
    print("| set | prompts | weak / strong | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for r in results:
        cells = [f"{r[c]:.3f}" if c in r else "—" for c in cols]
        print(f"| {r['set']} | {r['prompts']} | {r['weak']:.3f} / {r['strong']:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
