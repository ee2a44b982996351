#!/usr/bin/env python3
"""Real Parquet revision pairs written by pyarrow (tests/requirements.txt pins it).

    dataset_parquet_pairs.py OUT ROWS

writes OUT/pq-append/{base,derived}/data.parquet (10% rows appended) and
OUT/pq-column/{base,derived}/data.parquet (the "score" column recomputed for
every row and one "answer" in ten edited), both with pyarrow's defaults
(snappy, dictionary pages, 64k-row groups), seeded: the same bytes every run.
"""
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "pi", "da", "ge", "ho", "ju", "be", "ci", "fo", "ly",
       "qua", "ster", "tion", "ing", "er", "an", "the", "of", "and"]


def main():
    out, rows = sys.argv[1], int(sys.argv[2])
    r = random.Random(1)
    vocab = ["".join(r.choice(SYL) for _ in range(1 + r.randrange(3))) for _ in range(4000)]

    def sentence(n):
        return " ".join(vocab[min(int(len(vocab) ** r.random()) - 1, len(vocab) - 1)] for _ in range(n))

    def table(lo, hi):
        ids = list(range(lo, hi))
        return pa.table({
            "id": pa.array(ids, pa.int64()),
            "question": [sentence(8 + r.randrange(20)) + "?" for _ in ids],
            "answer": [sentence(10 + r.randrange(40)) + "." for _ in ids],
            "label": pa.array([r.randrange(5) for _ in ids], pa.int32()),
            "score": pa.array([r.random() for _ in ids], pa.float64()),
        })

    base = table(0, rows)
    kw = dict(row_group_size=65536)
    for kind in ("pq-append", "pq-column"):
        for side in ("base", "derived"):
            import os
            os.makedirs(f"{out}/{kind}/{side}", exist_ok=True)
        pq.write_table(base, f"{out}/{kind}/base/data.parquet", **kw)
    pq.write_table(pa.concat_tables([base, table(rows, rows + rows // 10)]), f"{out}/pq-append/derived/data.parquet", **kw)
    answers = base.column("answer").to_pylist()
    for i in range(0, rows, 10):
        answers[i] = answers[i] + " " + sentence(3) + "."
    edited = base.set_column(base.schema.get_field_index("answer"), "answer", pa.array(answers))
    edited = edited.set_column(edited.schema.get_field_index("score"), "score",
                               pa.array([round(s * 100, 1) for s in base.column("score").to_pylist()], pa.float64()))
    pq.write_table(edited, f"{out}/pq-column/derived/data.parquet", **kw)


if __name__ == "__main__":
    main()
