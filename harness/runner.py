"""`bench run`: corpus -> retrievers -> query sets -> TREC runs -> ranx evaluation -> report files.

Everything a run produces goes to one folder, `reports/runs/<UTC timestamp>/`, assembled in a hidden temp folder
and renamed into place at the end, so an interrupted or failed run never leaves a half-written report.
"""

import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import metrics as M
from corpus.errors import BadInput
from corpus.paths import REPO, atomic_write_text
from corpus.qsets import QuerySet, format_run, load_set, read_set, set_names

MAX_K = 1000


@dataclass(frozen=True)
class RunConfig:
    retrievers: tuple[str, ...]
    sets: tuple[str, ...] = ()  # empty: every committed non-dev set with queries in scope
    scope: str = "nt"
    translation: str = "web"
    k: int = 100
    stat_test: str = "student"
    out_root: Path = REPO / "reports" / "runs"
    options: dict = field(default_factory=dict)  # {retriever: {option: value}}: dsn, checkpoint, dense, ...


def strict_order(run: dict, position: dict) -> dict:
    """Every query's scores made strictly decreasing, ties broken by canonical verse order (earlier verse first).

    Evaluators break ties their own way (ranx by internal order, trec_eval by docid), so a tie would make the same run
    score differently in different tools. Applied to every retriever's output, whatever it did itself.
    """
    from retrievers.base import strictly_decreasing

    return {qid: strictly_decreasing(sorted(docs.items(), key=lambda kv: (-kv[1], position.get(kv[0], math.inf),
                                                                          kv[0])))
            for qid, docs in run.items()}


def resolve_sets(names, scope: str, external: QuerySet | None = None) -> list[QuerySet]:
    if external is not None:
        return [external] + [load_set(n, scope) for n in names]
    # By default every set meant for reporting; dev splits are for tuning and are run only when named.
    chosen = list(names) or [n for n in set_names() if read_set(n).meta.get("split") != "dev"]
    sets = [load_set(n, scope) for n in chosen]
    if names:
        empty = [s.name for s in sets if not s.queries]
        if empty:
            raise BadInput(f"set {empty[0]!r} has no queries in scope {scope!r} (try --scope all)")
    return [s for s in sets if s.queries]


def evaluate_set(qs: QuerySet, runs: dict[str, dict], stat_test: str) -> dict:
    results, per_query = {}, {}
    for name, run in runs.items():
        means, pq = M.evaluate(qs.qrels, run, M.METRICS, name=name)
        if qs.distractors is not None:
            dm, dpq = M.distractor_metrics(run, qs.qrels, qs.distractors)
            means, pq = {**means, **dm}, {**pq, **dpq}
        results[name], per_query[name] = means, pq
    sig = M.significance(qs.qrels, runs, M.METRICS, stat_test=stat_test)
    return {"results": results, "per_query": per_query, "significance": sig}


def run_benchmark(cfg: RunConfig, external: QuerySet | None = None, progress=None) -> tuple[dict, Path]:
    """Runs every retriever over every set; returns (report, folder written)."""
    from harness import report as R
    from corpus.bible import load_corpus
    from retrievers.base import config_dict, make

    if not 1 <= cfg.k <= MAX_K:
        raise BadInput(f"--k must be between 1 and {MAX_K}, got {cfg.k}")
    corpus = load_corpus(cfg.translation, cfg.scope)
    sets = resolve_sets(cfg.sets, cfg.scope, external)
    if not sets:
        raise BadInput(f"no query set has queries in scope {cfg.scope!r}")
    if external is not None:
        unknown = sorted({d for docs in external.qrels.values() for d in docs if d not in corpus.position})
        if unknown:
            raise BadInput(f"{external.meta['qrels_file']}: {len(unknown)} judged docids are not verses of corpus "
                           f"{corpus.corpus_id} (first: {unknown[0]!r})")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(cfg.out_root) / stamp
    n = 1
    while out.exists():
        n += 1
        out = Path(cfg.out_root) / f"{stamp}-{n}"
    tmp = out.parent / f".tmp-{out.name}"
    tmp.mkdir(parents=True, exist_ok=False)
    try:
        timings, configs, runs_by_set = {}, {}, {s.name: {} for s in sets}
        for rname in cfg.retrievers:
            t0 = time.perf_counter()
            retriever = make(rname, corpus, **cfg.options.get(rname, {}))
            built = time.perf_counter() - t0
            configs[rname] = config_dict(retriever)
            timings[rname] = {"build_s": round(built, 3), "search_s": {}, "queries_per_s": {}}
            for qs in sets:
                task = progress.add_task(f"{rname} on {qs.name}", total=None) if progress else None
                t0 = time.perf_counter()
                run = strict_order(retriever.search(qs.queries, cfg.k), corpus.position)
                dt = time.perf_counter() - t0
                if progress:
                    progress.remove_task(task)
                timings[rname]["search_s"][qs.name] = round(dt, 3)
                timings[rname]["queries_per_s"][qs.name] = round(len(qs.queries) / dt, 1) if dt > 0 else None
                runs_by_set[qs.name][rname] = run
                atomic_write_text(tmp / "runs" / qs.name / f"{rname}.trec", format_run(run, rname))
        report = R.new_report(corpus, cfg, configs, timings, sets)
        for qs in sets:
            ev = evaluate_set(qs, runs_by_set[qs.name], cfg.stat_test)
            for key in ("results", "per_query", "significance"):
                report[key][qs.name] = ev[key]
        R.write_report(report, tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report, out
