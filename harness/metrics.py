"""Evaluation with ranx: metric means, per-query values, paired significance tests, distractor metrics.

Metric names are ranx's (`ndcg@10`, `precision@10`, `recall@100`, `mrr@10`). The two distractor metrics are ours and
use the same shape: `distractor@10` is the fraction of the top 10 that are known distractors (lower is better) and
`win_rate` is the fraction of queries whose best relevant verse ranks above every distractor. `judged@10`, for sets
judged by pooling (set.json `"pooled": true`, whose qrels hold the 0 grades too), is the share of the top 10 that was
judged at all: a system whose verses were never in the pool shows a low value instead of a silently low score.
"""

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

METRICS = ("ndcg@10", "precision@10", "recall@10", "recall@100", "mrr@10")
DISTRACTOR_METRICS = ("distractor@10", "win_rate")
POOL_METRICS = ("judged@10",)
LOWER_IS_BETTER = frozenset({"distractor@10"})


def configure() -> None:
    """Process state for ranx, set once at the edge (the CLI's main, the test suite's conftest), never per call:
    where numba keeps ranx's compiled code (see `numba_cache_dir`: not under the cache root) and silence for ranx's
    and numba's warnings. Must run before ranx is first imported."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))
    warnings.filterwarnings("ignore", module="ranx")
    warnings.filterwarnings("ignore", message=".*unsafe cast.*")


def numba_cache_dir() -> Path:
    """Where numba caches ranx's compiled functions: inside the Python environment (`sys.prefix`), beside the
    installed code, never under the cache root. numba's cache files are pickles that it loads and runs, so they get
    the trust of the `.pyc` files in `__pycache__`: whoever can write them can already change the code. A cache root
    can be shared more widely (a CI cache restored from another job); a pickle planted there must never run.
    Where the environment is not writable, a private folder made for this process (compiled again each run, tens of
    seconds, but never read from anywhere another user could write)."""
    target = Path(sys.prefix) / "var" / "versebench" / "numba"
    try:
        target.mkdir(parents=True, exist_ok=True)
        if os.access(target, os.W_OK | os.X_OK):
            return target
    except OSError:
        pass
    private = Path(tempfile.mkdtemp(prefix="versebench-numba-"))
    atexit.register(shutil.rmtree, private, True)
    return private


def _ranx():
    import ranx  # here, not at the top: importing ranx starts numba (seconds), too slow for `bench --help`

    return ranx


def to_ranx(qrels: dict, run: dict, name: str):
    ranx = _ranx()
    # ranx wants every judged query in the run: a query a retriever returned nothing for scores zero, not skipped.
    filled = {q: (run.get(q) or {"__none__": 0.0}) for q in qrels}
    return ranx.Qrels({q: d for q, d in qrels.items()}), ranx.Run(filled, name=name)


def evaluate(qrels: dict, run: dict, metrics=METRICS, name: str = "run") -> tuple[dict, dict]:
    """(mean per metric, {metric: {qid: value}}) over the judged queries."""
    ranx = _ranx()
    q, r = to_ranx(qrels, run, name)
    means = ranx.evaluate(q, r, list(metrics), make_comparable=True)
    if len(metrics) == 1:
        means = {metrics[0]: means}
    per_query = {m: {qid: float(v) for qid, v in r.scores[m].items()} for m in metrics}
    return {m: float(v) for m, v in means.items()}, per_query


def distractor_metrics(run: dict, qrels: dict, distractors: dict, k: int = 10) -> tuple[dict, dict]:
    at_k, wins = {}, {}
    for qid in qrels:
        ranked = [d for d, _ in sorted((run.get(qid) or {}).items(), key=lambda kv: -kv[1])]
        bad = distractors.get(qid, {})
        good = {d for d, rel in qrels[qid].items() if rel > 0}
        at_k[qid] = sum(1 for d in ranked[:k] if d in bad) / k
        first_good = next((i for i, d in enumerate(ranked) if d in good), None)
        first_bad = next((i for i, d in enumerate(ranked) if d in bad), None)
        wins[qid] = float(first_good is not None and (first_bad is None or first_good < first_bad))
    per_query = {f"distractor@{k}": at_k, "win_rate": wins}
    means = {m: sum(v.values()) / max(len(v), 1) for m, v in per_query.items()}
    return means, per_query


def judged_at(run: dict, qrels: dict, k: int = 10) -> tuple[dict, dict]:
    """Share of each query's top k that has a judgment of any grade (0 included); a run shorter than k counts its
    missing places as judged, since nothing unjudged stands there."""
    per = {}
    for qid, judged in qrels.items():
        ranked = [d for d, _ in sorted((run.get(qid) or {}).items(), key=lambda kv: -kv[1])][:k]
        per[qid] = (sum(1 for d in ranked if d in judged) + k - len(ranked)) / k
    return {f"judged@{k}": sum(per.values()) / max(len(per), 1)}, {f"judged@{k}": per}


def by_tag(tags: dict, per_query: dict, stat_test: str = "student") -> dict:
    """Every metric broken down by query tag: {tag: {"qids": [...], "results": {retriever: {metric: mean}},
    "significance": {metric: {a: {b: p}}}}}, the paired test run on the tag's queries alone. `per_query` is one set's
    {retriever: {metric: {qid: value}}}; queries without a tag are only in the overall numbers."""
    out = {}
    for tag in sorted(set(tags.values())):
        qids = sorted(q for q, t in tags.items() if t == tag)
        keep = set(qids)
        values = {r: {m: {q: x for q, x in v.items() if q in keep} for m, v in ms.items()}
                  for r, ms in per_query.items()}
        results = {r: {m: sum(v.values()) / max(len(v), 1) for m, v in ms.items()} for r, ms in values.items()}
        sig: dict = {}
        names = list(values)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for m, v in values[a].items():  # the paired test is symmetric: once per pair, stored both ways
                    p = paired_p(v, values[b][m], stat_test)
                    sig.setdefault(m, {}).setdefault(a, {})[b] = p
                    sig[m].setdefault(b, {})[a] = p
        out[tag] = {"qids": qids, "results": results, "significance": sig}
    return out


def significance(qrels: dict, runs: dict[str, dict], metrics=METRICS, stat_test: str = "student") -> dict:
    """Paired test between every pair of runs: {metric: {a: {b: p}}}. Needs at least two runs and two queries."""
    if len(runs) < 2 or len(qrels) < 2:
        return {}
    ranx = _ranx()
    rq = ranx.Qrels(qrels)
    rr = [to_ranx(qrels, run, name)[1] for name, run in runs.items()]
    rep = ranx.compare(rq, rr, list(metrics), stat_test=stat_test, make_comparable=True, random_seed=42)
    d = rep.to_dict()
    out: dict = {}
    for a in runs:
        for b, per_metric in d[a]["comparisons"].items():
            for m, p in per_metric.items():
                out.setdefault(m, {}).setdefault(a, {})[b] = float(p)
    return out


def paired_p(per_query_a: dict, per_query_b: dict, stat_test: str = "student") -> float:
    """ranx's paired test (student t or fisher randomisation) between two {qid: value} dicts on shared queries.

    The gate compares a candidate's per-query values with the baseline's stored ones, so it calls ranx's tests
    on the arrays rather than on runs.
    """
    # here, not at the top: numpy and ranx (numba) cost seconds of start-up that `bench --help` should not pay
    import numpy as np
    from ranx.statistical_tests import fisher_randomization_test, paired_student_t_test

    qids = sorted(set(per_query_a) & set(per_query_b))
    a = np.array([per_query_a[q] for q in qids], dtype=np.float64)
    b = np.array([per_query_b[q] for q in qids], dtype=np.float64)
    if len(qids) < 2 or np.array_equal(a, b):
        return 1.0
    if stat_test == "fisher":
        p, _ = fisher_randomization_test(a, b, 1000, 0.05, 42)
    else:
        p, _ = paired_student_t_test(a, b, 0.05)
    return float(p)
