"""The regression gate: is a candidate encoder checkpoint worse than the committed baseline?

The candidate is evaluated as `encoder` and as `hybrid` on the gate sets; each gated metric is compared with the
baseline's per-query values by ranx's paired test. A metric fails when it drops by more than the tolerance AND the
drop is significant at alpha: a noisy wobble does not block a merge, and neither does a tiny real one.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from corpus.errors import BadInput, at
from corpus.paths import REPO, atomic_write_many, atomic_write_text
from harness.metrics import paired_p
from harness.report import git_commit, load_report, rel_path
from harness.runner import RUNS, STAT_TESTS, RunConfig, run_benchmark
from harness.worst import for_gate, gate_summary

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
    base = load_report(path)
    if "per_query" not in base or "gate" not in base.get("meta", {}):
        raise at(path, None, "not a gate baseline (no per-query values or gate metadata); make one with "
                             "`bench gate --checkpoint PATH --update-baseline`")
    return base


def evaluate_candidate(checkpoint, sets=GATE_SETS, progress=None, stat_test: str = "student",
                       out_root: Path = RUNS, *, home: Path) -> tuple[dict, Path]:
    opts = {"encoder": {"checkpoint": str(checkpoint)}, "hybrid": {"checkpoint": str(checkpoint)}}
    cfg = RunConfig(retrievers=GATE_RETRIEVERS, sets=tuple(sets), scope="nt", k=100, stat_test=stat_test,
                    out_root=Path(out_root), options=opts)
    return run_benchmark(cfg, progress=progress, home=home)


def compare(candidate: dict, baseline: dict, tolerance: float, alpha: float, stat_test: str) -> list[Row]:
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


def to_baseline(report: dict, checkpoint, sets=GATE_SETS, allow_dirty: bool = False) -> dict:
    """The baseline is a report cut down to the gated metrics, with where it came from. `allow_dirty`: written from
    a work tree with uncommitted changes, on purpose (`--allow-dirty`), and it says so."""
    keep = set(GATE_METRICS)
    meta = dict(report["meta"])
    meta["gate"] = {"metrics": list(GATE_METRICS), "retrievers": list(GATE_RETRIEVERS), "sets": list(sets),
                    "checkpoint": rel_path(checkpoint),
                    "checkpoint_sha256": report["meta"]["checkpoint_sha256"].get("encoder"),
                    "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **({"allow_dirty": True} if allow_dirty else {})}
    return {
        "meta": meta,
        "results": {s: {r: {m: v for m, v in ms.items() if m in keep} for r, ms in rs.items()}
                    for s, rs in report["results"].items()},
        "per_query": {s: {r: {m: v for m, v in ms.items() if m in keep} for r, ms in rs.items()}
                      for s, rs in report["per_query"].items()},
    }


def write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def check_args(sets, tolerance: float, alpha: float, stat_test: str) -> tuple[str, ...]:
    """The gate's knobs checked; returns the sets to gate (all gate sets when none is named)."""
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha must be between 0 and 1, got {alpha}")
    if tolerance < 0:
        raise BadInput(f"--tolerance must be >= 0, got {tolerance}")
    if stat_test not in STAT_TESTS:
        raise BadInput(f"--stat-test must be one of {', '.join(STAT_TESTS)}, got {stat_test!r}")
    sets = tuple(sets) or GATE_SETS
    bad = [s for s in sets if s not in GATE_SETS]
    if bad:
        raise BadInput(f"{bad[0]!r} is not a gate set ({', '.join(GATE_SETS)})")
    return sets


def refuse_dirty(repo: Path = REPO) -> None:
    """A baseline is committed: it must come from committed code. Refuse a work tree with uncommitted changes to
    tracked files, or one git cannot tell about."""
    state = git_commit(repo)
    if state["dirty"] is None:
        raise BadInput(f"--update-baseline: cannot tell whether the work tree is clean ({state['why']}); "
                       f"pass --allow-dirty to write the baseline anyway")
    if state["dirty"]:
        raise BadInput(f"--update-baseline refuses a dirty work tree ({rel_path(repo)} has uncommitted changes to "
                       f"tracked files): commit them, or pass --allow-dirty and the baseline will say so")


def cut_baseline(path, sets) -> dict:
    """The baseline at `path`, cut to the sets being gated."""
    base = read_baseline(path)
    return {**base, "results": {s: v for s, v in base["results"].items() if s in sets},
            "per_query": {s: v for s, v in base["per_query"].items() if s in sets}}


def run(checkpoint, baseline=None, sets=(), tolerance: float = 0.01, alpha: float = 0.05,
        stat_test: str = "student", verdict_path=None, update_baseline: bool = False, allow_dirty: bool = False,
        worst_n: int = 5, progress=None, repo: Path = REPO, *, home: Path, summary_path=None) -> Verdict:
    """The whole gate: evaluate the candidate, compare it with the baseline, write the verdict; with
    `update_baseline`, rewrite the baseline from a candidate that passed. With no baseline yet and `update_baseline`,
    the candidate becomes the first baseline (the verdict then has no rows and meta["first_baseline"]).

    baseline: default the repository's reports/baseline.json. The run folder goes beside `verdict_path` when one is
    given (nothing is written into reports/runs then), else into reports/runs, with verdict.json inside it.
    On failure the verdict holds, per failing metric, the `worst_n` queries that fell most. `home`: the cache root.
    `summary_path`: the verdict as Markdown too, written together with the verdict (both or neither)."""
    t0 = time.perf_counter()
    sets = check_args(sets, tolerance, alpha, stat_test)
    base_path = Path(baseline) if baseline is not None else BASELINE
    if update_baseline and not allow_dirty:
        refuse_dirty(repo)  # before the evaluation: a refusal costs nothing
    first = update_baseline and not base_path.exists()
    base = None if first else cut_baseline(base_path, sets)
    out_root = Path(verdict_path).parent if verdict_path else RUNS
    report, folder = evaluate_candidate(checkpoint, sets, progress=progress, stat_test=stat_test, out_root=out_root,
                                        home=home)
    if not first:
        check_basis(report, base, base_path)
    rows = () if first else tuple(compare(report, base, tolerance, alpha, stat_test))
    failed = tuple(f"{r.set}/{r.retriever}/{r.metric}" for r in rows if r.status == "worse")
    where = Path(verdict_path) if verdict_path else folder / "verdict.json"
    verdict = Verdict(passed=not failed, candidate=rel_path(checkpoint),
                      candidate_sha256=report["meta"]["checkpoint_sha256"].get("encoder", ""),
                      baseline=rel_path(base_path),
                      baseline_sha256="" if first else base["meta"]["gate"]["checkpoint_sha256"] or "",
                      tolerance=tolerance, alpha=alpha, stat_test=stat_test, rows=rows, failed=failed,
                      date=report["meta"]["date"], seconds=round(time.perf_counter() - t0, 1),
                      meta={"run_folder": rel_path(folder), "corpus": report["meta"]["corpus"]["id"],
                            "verdict": rel_path(where), "first_baseline": first,
                            "baseline_updated": update_baseline and not failed, "allow_dirty": allow_dirty},
                      worst=for_gate(report, folder, base, failed, n=worst_n, home=home) if failed else {})
    files = {where: json.dumps(verdict.to_dict(), indent=1, ensure_ascii=False) + "\n"}
    if summary_path:
        files[Path(summary_path)] = gate_summary(verdict.to_dict())
    atomic_write_many(files)
    if update_baseline and not failed:
        write_json(base_path, to_baseline(report, checkpoint, sets, allow_dirty))
    return verdict
