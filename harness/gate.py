"""The regression gate: is a candidate retriever worse than a baseline made from the same retriever?

The candidate is one or more retriever specs, each with its options (`{spec: {option: value}}`): any registered
name, plugin or model folder. An encoder checkpoint is the shorthand the committed baseline was made with: it is
evaluated as `encoder` and as `hybrid` on the gate sets. Each gated metric is compared with the baseline's per-query
values by ranx's paired test. A metric fails when it drops by more than the tolerance AND the drop is significant at
alpha: a noisy wobble does not block a merge, and neither does a tiny real one. The baseline records the specs it was
made from; a candidate of other specs is refused (its numbers would be compared with another system's).
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from corpus.errors import BadInput, at
from corpus.paths import REPO, atomic_write_many, atomic_write_text
from harness.metrics import paired_p
from harness.report import Report, git_commit, rel_path
from harness.runner import RUNS, STAT_TESTS, RunConfig, run_benchmark
from harness.worst import for_gate, gate_summary

GATE_SETS = ("keyword", "keyword-xlate", "thematic-test", "thematic-curated", "distractor", "thematic-natural-test")
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


def read_baseline(path) -> Report:
    base = Report.load(path)
    if base.incomplete:
        raise at(path, None, f"is an incomplete report, so the gate gives no verdict against it "
                             f"({base.incomplete_lines()[0].removeprefix('INCOMPLETE: ')})")
    if base.per_query is None or "gate" not in base.meta:
        raise at(path, None, "not a gate baseline (no per-query values or gate metadata); make one with "
                             "`bench gate --checkpoint PATH --update-baseline`")
    return base


def from_checkpoint(checkpoint) -> dict[str, dict]:
    """`--checkpoint X`: the encoder and the hybrid over it, `-r encoder -r hybrid -o checkpoint=X`."""
    return {r: {"checkpoint": str(checkpoint)} for r in GATE_RETRIEVERS}


def candidate_retrievers(candidate) -> tuple[dict[str, dict], str | None]:
    """(`{spec: options}`, the checkpoint or None) of a candidate given as a checkpoint path or as specs."""
    if isinstance(candidate, dict):
        if not candidate:
            raise BadInput("the gate needs a candidate: -r SPEC [-o key=value] or --checkpoint PATH")
        return {spec: dict(opts) for spec, opts in candidate.items()}, None
    return from_checkpoint(candidate), str(candidate)


def describe(retrievers: dict[str, dict]) -> str:
    """The candidate as a command line would give it: `spec -o key=value ...` per retriever."""
    return "; ".join(" ".join([spec, *(f"-o {k}={_shown(v)}" for k, v in opts.items())])
                     for spec, opts in retrievers.items())


def _shown(value) -> str:
    """An option's value as a report may show it: a path as the repository sees it, never this machine's folders."""
    return rel_path(value) if isinstance(value, str) and os.path.sep in value and os.path.exists(value) else str(value)


def identity(report: Report) -> str:
    """The content hash of what was evaluated: the encoder's checkpoint sha256, else the first model sha256 any
    retriever's config records (a model folder's), else ""."""
    if report.meta["checkpoint_sha256"].get("encoder"):
        return report.meta["checkpoint_sha256"]["encoder"]
    for config in report.meta["retrievers"].values():
        for key in ("checkpoint_sha256", "model_sha256"):
            if config.get(key):
                return config[key]
    return ""


def evaluate_candidate(candidate, sets=GATE_SETS, progress=None, stat_test: str = "student",
                       out_root: Path = RUNS, *, home: Path) -> tuple[Report, Path]:
    """`candidate`: a checkpoint path or `{spec: options}`."""
    retrievers, _ = candidate_retrievers(candidate)
    cfg = RunConfig(retrievers=tuple(retrievers), sets=tuple(sets), scope="nt", k=100, stat_test=stat_test,
                    out_root=Path(out_root), options=retrievers)
    return run_benchmark(cfg, progress=progress, home=home)


def baseline_specs(baseline: Report) -> tuple[str, ...]:
    return tuple(baseline.meta["gate"].get("retrievers") or GATE_RETRIEVERS)


def check_specs(retrievers: dict[str, dict], baseline: Report, baseline_path) -> None:
    """Refuse a baseline made from other retrievers: before anything is evaluated, so a refusal costs nothing."""
    made = baseline_specs(baseline)
    if sorted(made) != sorted(retrievers):
        raise at(baseline_path, None, f"baseline was made from {', '.join(made)}, the candidate is "
                                      f"{', '.join(retrievers)}; gate it against a baseline made from the same spec "
                                      f"(--baseline FILE; a FILE not there yet, with --update-baseline, starts one)")


def compare(candidate: Report, baseline: Report, tolerance: float, alpha: float, stat_test: str) -> list[Row]:
    rows = []
    for s, by_retriever in baseline.results.items():
        for r, metrics in by_retriever.items():
            for m in baseline.meta["gate"]["metrics"]:
                if m not in metrics:
                    continue
                cand = candidate.results.get(s, {}).get(r)
                if cand is None:
                    raise BadInput(f"candidate has no {r} results on set {s!r}; run the gate on every baseline set")
                b_pq = baseline.values(s, r, m)
                c_pq = candidate.values(s, r, m)
                if set(b_pq) != set(c_pq):
                    raise BadInput(f"set {s!r}: the candidate was judged on other queries than the baseline")
                p = paired_p(b_pq, c_pq, stat_test)
                delta = cand[m] - metrics[m]
                rows.append(Row(s, r, m, metrics[m], cand[m], delta, p, classify(delta, p, tolerance, alpha)))
    return rows


def check_basis(candidate: Report, baseline: Report, baseline_path) -> None:
    """Refuse a baseline made on another corpus or another version of any gate set."""
    cb, cc = baseline.corpus_id, candidate.corpus_id
    if cb != cc:
        raise at(baseline_path, None, f"baseline is for corpus {cb}, the candidate was evaluated on {cc}")
    for s in baseline.results:  # the sets being gated, which may be a subset of the baseline's
        info = baseline.set_info(s)
        now = candidate.set_info(s).get("version")
        if now != info.get("version"):
            raise at(baseline_path, None, f"baseline used set {s!r} version {info.get('version')}, the committed "
                                          f"set is version {now}; update the baseline deliberately")


def to_baseline(report: Report, candidate, sets=GATE_SETS, allow_dirty: bool = False) -> Report:
    """The baseline is a report cut down to the gated metrics, with where it came from: the specs and options it was
    made from (`candidate`: a checkpoint path or `{spec: options}`). `allow_dirty`: written from a work tree with
    uncommitted changes, on purpose (`--allow-dirty`), and it says so."""
    keep = set(GATE_METRICS)
    meta = dict(report.meta)
    retrievers, checkpoint = candidate_retrievers(candidate)
    meta["gate"] = {"metrics": list(GATE_METRICS), "retrievers": list(retrievers), "sets": list(sets),
                    "candidate": rel_path(checkpoint) if checkpoint else describe(retrievers),
                    **({"checkpoint": rel_path(checkpoint)} if checkpoint else {}),
                    "checkpoint_sha256": identity(report) or None,
                    "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **({"allow_dirty": True} if allow_dirty else {})}
    def cut(by_set: dict) -> dict:
        return {s: {r: {m: v for m, v in ms.items() if m in keep} for r, ms in rs.items()} for s, rs in by_set.items()}

    return Report(meta=meta, results=cut(report.results), per_query=cut(report.per_query))


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


def cut_baseline(path, sets) -> Report:
    """The baseline at `path`, cut to the sets being gated."""
    base = read_baseline(path)
    return replace(base, results={s: v for s, v in base.results.items() if s in sets},
                   per_query={s: v for s, v in base.per_query.items() if s in sets})


def run(candidate, baseline=None, sets=(), tolerance: float = 0.01, alpha: float = 0.05,
        stat_test: str = "student", verdict_path=None, update_baseline: bool = False, allow_dirty: bool = False,
        worst_n: int = 5, progress=None, repo: Path = REPO, *, home: Path, summary_path=None) -> Verdict:
    """The whole gate: evaluate the candidate (a checkpoint path, or `{spec: options}` for any retriever), compare
    it with the baseline made from the same specs, write the verdict (and, with `summary_path`, its markdown
    summary, the two together or neither); with
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
    retrievers, checkpoint = candidate_retrievers(candidate)
    if not first:
        check_specs(retrievers, base, base_path)
    out_root = Path(verdict_path).parent if verdict_path else RUNS
    report, folder = evaluate_candidate(retrievers, sets, progress=progress, stat_test=stat_test, out_root=out_root,
                                        home=home)
    if report.incomplete:  # failed queries scored as unanswered would read as a regression, or hide one
        raise BadInput(f"{rel_path(folder)}: the candidate's run is incomplete, so the gate gives no verdict "
                       f"({report.incomplete_lines()[0].removeprefix('INCOMPLETE: ')})")
    if not first:
        check_basis(report, base, base_path)
    rows = () if first else tuple(compare(report, base, tolerance, alpha, stat_test))
    failed = tuple(f"{r.set}/{r.retriever}/{r.metric}" for r in rows if r.status == "worse")
    where = Path(verdict_path) if verdict_path else folder / "verdict.json"
    verdict = Verdict(passed=not failed, candidate=rel_path(checkpoint) if checkpoint else describe(retrievers),
                      candidate_sha256=identity(report),
                      baseline=rel_path(base_path),
                      baseline_sha256="" if first else base.meta["gate"]["checkpoint_sha256"] or "",
                      tolerance=tolerance, alpha=alpha, stat_test=stat_test, rows=rows, failed=failed,
                      date=report.meta["date"], seconds=round(time.perf_counter() - t0, 1),
                      meta={"run_folder": rel_path(folder), "corpus": report.corpus_id,
                            "verdict": rel_path(where), "first_baseline": first,
                            "baseline_updated": update_baseline and not failed, "allow_dirty": allow_dirty},
                      worst=for_gate(report, folder, base, failed, n=worst_n, home=home) if failed else {})
    files = {where: json.dumps(verdict.to_dict(), indent=1, ensure_ascii=False) + "\n"}
    if summary_path:
        files[Path(summary_path)] = gate_summary(verdict.to_dict())
    atomic_write_many(files)
    if update_baseline and not failed:
        to_baseline(report, checkpoint or retrievers, sets, allow_dirty).write_json(base_path)
    return verdict
