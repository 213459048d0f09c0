"""The regression gate: is a candidate encoder checkpoint worse than the committed baseline?

The candidate is evaluated as `encoder` and as `hybrid` on the gate sets; each gated metric is compared with the
baseline's per-query values by ranx's paired test. A metric fails when it drops by more than the tolerance AND the
drop is significant at alpha: a noisy wobble does not block a merge, and neither does a tiny real one.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from corpus.errors import BadInput, at
from corpus.paths import REPO, atomic_write_text

GATE_SETS = ("keyword", "keyword-xlate", "thematic-test", "thematic-curated", "distractor")
GATE_RETRIEVERS = ("encoder", "hybrid")
GATE_METRICS = ("ndcg@10", "recall@100")
BASELINE = REPO / "reports" / "baseline.json"


@dataclass(frozen=True)
class Row:
    set: str
    retriever: str
    metric: str
    baseline: float
    candidate: float
    delta: float
    p_value: float
    status: str  # better | worse | unchanged


@dataclass(frozen=True)
class Verdict:
    passed: bool
    candidate: str
    candidate_sha256: str
    baseline: str
    baseline_sha256: str
    tolerance: float
    alpha: float
    stat_test: str
    rows: tuple = ()
    failed: tuple = ()  # "set/retriever/metric" of every row that fell
    date: str = ""
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)
    worst: dict = field(default_factory=dict)  # failing "set/retriever/metric" -> its queries that fell most

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        d = dict(d)
        d["rows"] = tuple(Row(**r) for r in d.get("rows", ()))
        d["failed"] = tuple(d.get("failed", ()))
        return cls(**d)


def classify(delta: float, p: float, tolerance: float, alpha: float) -> str:
    if p < alpha and delta < -tolerance:
        return "worse"
    if p < alpha and delta > tolerance:
        return "better"
    return "unchanged"


def read_baseline(path) -> dict:
    from harness.report import load_report

    base = load_report(path)
    if "per_query" not in base or "gate" not in base.get("meta", {}):
        raise at(path, None, "not a gate baseline (no per-query values or gate metadata); make one with "
                             "`bench gate --checkpoint PATH --update-baseline`")
    return base


def evaluate_candidate(checkpoint, sets=GATE_SETS, progress=None, stat_test: str = "student") -> tuple[dict, Path]:
    from harness.runner import RunConfig, run_benchmark

    opts = {"encoder": {"checkpoint": str(checkpoint)}, "hybrid": {"checkpoint": str(checkpoint)}}
    cfg = RunConfig(retrievers=GATE_RETRIEVERS, sets=tuple(sets), scope="nt", k=100, stat_test=stat_test,
                    options=opts)
    return run_benchmark(cfg, progress=progress)


def compare(candidate: dict, baseline: dict, tolerance: float, alpha: float, stat_test: str) -> list[Row]:
    from harness.metrics import paired_p

    rows = []
    for s, by_retriever in baseline["results"].items():
        for r, metrics in by_retriever.items():
            for m in baseline["meta"]["gate"]["metrics"]:
                if m not in metrics:
                    continue
                cand = candidate["results"].get(s, {}).get(r)
                if cand is None:
                    raise BadInput(f"candidate has no {r} results on set {s!r}; run the gate on every baseline set")
                b_pq = baseline["per_query"][s][r][m]
                c_pq = candidate["per_query"][s][r][m]
                if set(b_pq) != set(c_pq):
                    raise BadInput(f"set {s!r}: the candidate was judged on other queries than the baseline")
                p = paired_p(b_pq, c_pq, stat_test)
                delta = cand[m] - metrics[m]
                rows.append(Row(s, r, m, metrics[m], cand[m], delta, p, classify(delta, p, tolerance, alpha)))
    return rows


def check_basis(candidate: dict, baseline: dict, baseline_path) -> None:
    """Refuse a baseline made on another corpus or another version of any gate set."""
    cb, cc = baseline["meta"]["corpus"]["id"], candidate["meta"]["corpus"]["id"]
    if cb != cc:
        raise at(baseline_path, None, f"baseline is for corpus {cb}, the candidate was evaluated on {cc}")
    for s in baseline["results"]:  # the sets being gated, which may be a subset of the baseline's
        info = baseline["meta"]["sets"].get(s, {})
        now = candidate["meta"]["sets"].get(s, {}).get("version")
        if now != info.get("version"):
            raise at(baseline_path, None, f"baseline used set {s!r} version {info.get('version')}, the committed "
                                          f"set is version {now}; update the baseline deliberately")


def to_baseline(report: dict, checkpoint, sets=GATE_SETS) -> dict:
    """The baseline is a report cut down to the gated metrics, with where it came from."""
    keep = set(GATE_METRICS)
    meta = dict(report["meta"])
    meta["gate"] = {"metrics": list(GATE_METRICS), "retrievers": list(GATE_RETRIEVERS), "sets": list(sets),
                    "checkpoint": str(checkpoint),
                    "checkpoint_sha256": report["meta"]["checkpoint_sha256"].get("encoder"),
                    "made": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {
        "meta": meta,
        "results": {s: {r: {m: v for m, v in ms.items() if m in keep} for r, ms in rs.items()}
                    for s, rs in report["results"].items()},
        "per_query": {s: {r: {m: v for m, v in ms.items() if m in keep} for r, ms in rs.items()}
                      for s, rs in report["per_query"].items()},
    }


def write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
