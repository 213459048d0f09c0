"""Fusion tuning for the hybrid: `ranx.optimize_fusion` on dev splits only, written to the weights data file.

The roof's job, not the retriever's: it evaluates (harness.metrics), and the hybrid only reads what it writes.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

from corpus.errors import BadInput
from corpus.paths import atomic_write_text
from harness.metrics import _ranx, evaluate
from retrievers.base import make
from retrievers.hybrid import NOTHING, WEIGHTS_FILE, HybridConfig, fuse, read_weights


def tune(corpus, dense: str, fusion: str, sets, metric: str = "ndcg@10", checkpoint: str | None = None,
         path: Path = WEIGHTS_FILE, *, home: Path) -> dict:
    """`ranx.optimize_fusion` on dev splits only; writes the entry into the weights file and returns it. `home`: the
    cache root of the parts' index and verse vectors."""
    bad = [s.name for s in sets if s.meta.get("split") != "dev"]
    if bad or not sets:
        raise BadInput(f"fusion is tuned on dev splits only; {', '.join(bad) or 'no set'} is not a dev split")
    h = make("hybrid", corpus, home=home, dense=dense, fusion=fusion, checkpoint=checkpoint)
    qrels, sparse, dense_run = {}, {}, {}
    for s in sets:
        sp, dn = h.parts(s.queries, 100)
        for q in s.queries:  # set-prefixed ids: two dev sets may reuse a qid
            qrels[f"{s.name}/{q}"] = s.qrels[q]
            sparse[f"{s.name}/{q}"] = sp.get(q) or {}
            dense_run[f"{s.name}/{q}"] = dn.get(q) or {}
    ranx = _ranx()
    rq = ranx.Qrels(qrels)
    # optimize_fusion needs both runs to hold every query: an empty side gets the placeholder, as in fuse().
    runs = [ranx.Run({q: d or {NOTHING: 0.0} for q, d in r.items()}, name=n)
            for r, n in ((sparse, "sparse"), (dense_run, "dense"))]
    best = ranx.optimize_fusion(qrels=rq, runs=runs, norm=h.config.norm, method=fusion, metric=metric,
                                show_progress=False)
    before = {n: evaluate(qrels, r, (metric,))[0][metric] for n, r in (("sparse", sparse), ("dense", dense_run))}
    cfg = HybridConfig(**{**h.config.__dict__, "params": best})
    after = evaluate(qrels, fuse(sparse, dense_run, cfg, 100), (metric,))[0][metric]
    entry = {
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in best.items()},
        "metric": metric,
        "tuned_on": [s.name for s in sets],
        "set_versions": {s.name: s.version for s in sets},
        "corpus": corpus.corpus_id,
        "checkpoint_sha256": h.dense_sha256,
        "dev_scores": {"sparse": round(before["sparse"], 4), "dense": round(before["dense"], 4),
                       "fused": round(after, 4)},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    data = read_weights(path)
    data.setdefault(dense, {})[fusion] = entry
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return entry
