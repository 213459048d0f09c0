"""The model card's table: ndcg@10 and recall@100 per reporting set for several encoders, each compared with a
reference (MiniLM) by ranx's paired t-test on per-query values.

    .venv/bin/python scripts/model_card_table.py REF=run/report.json:minilm A=other/report.json:encoder ...

Each argument is LABEL=REPORT:RETRIEVER (a run folder or its report.json); the first is the reference. A cell is
`ndcg@10 / recall@100`; an arrow marks a significant difference from the reference (p < 0.05): up better, down worse.
"""

import sys

from harness.metrics import paired_p
from harness.report import Report

SETS = ("keyword", "keyword-xlate", "thematic-test", "thematic-curated", "distractor")
METRICS = ("ndcg@10", "recall@100")


def cell(rep, ret, ref, ref_ret, s, m) -> str:
    v = rep.results[s][ret][m]
    if rep is ref and ret == ref_ret:
        return f"{v:.3f}"
    p = paired_p(rep.values(s, ret, m), ref.values(s, ref_ret, m))
    base = ref.results[s][ref_ret][m]
    return f"{v:.3f}" + (("↑" if v > base else "↓") if p < 0.05 else "")


def main(argv: list[str]) -> None:
    rows = []
    for arg in argv:
        label, _, spec = arg.partition("=")
        path, _, ret = spec.rpartition(":")
        rows.append((label, Report.load(path), ret))
    _, ref, ref_ret = rows[0]
    print("| encoder | " + " | ".join(SETS) + " | mean ndcg@10 |")
    print("|---" * (len(SETS) + 2) + "|")
    for label, rep, ret in rows:
        cells = [" / ".join(cell(rep, ret, ref, ref_ret, s, m) for m in METRICS) for s in SETS]
        mean = sum(rep.results[s][ret]["ndcg@10"] for s in SETS) / len(SETS)
        print(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
