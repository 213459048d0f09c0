"""`bench run`: corpus -> retrievers -> query sets -> TREC runs -> ranx evaluation -> report files.

Everything a run produces goes to one folder, `reports/runs/<UTC timestamp>/`, assembled in a hidden temp folder
and renamed into place at the end, so an interrupted or failed run never leaves a half-written report. The temp
folder carries the process id (swept on a later start once that process is gone) and the final name is claimed
by the rename itself, so two runs started in the same second with the same output root get two folders.
"""

import contextlib
import errno
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from corpus.bible import load_corpus
from corpus.books import SCOPES
from corpus.errors import BadInput, at
from corpus.paths import REPO, atomic_write_text, sweep_stale, temp_name
from corpus.qsets import QuerySet, external_set, format_run, load_set, read_set, set_names
from harness import metrics as M
from harness import report as R

MAX_K = 1000
STAT_TESTS = ("student", "fisher")
RUNS = REPO / "reports" / "runs"
OnProgress = Callable[[int, int], None]


def _quiet(*args) -> None:
    return None


@dataclass(frozen=True)
class RunProgress:
    """How a run reports its progress: plain callables (the CLI draws them as bars, harness/cli/progress.py).
    `step(done, total, what)`: the run's own steps (one build per retriever, one search per retriever and set, one
    evaluation per set). `build(what)`: an `on_progress(done, total)` for one retriever's build (indexing or
    encoding the verses)."""
    step: Callable[[int, int, str], None] = _quiet
    build: Callable[[str], OnProgress] = lambda what: _quiet


@dataclass(frozen=True)
class RunConfig:
    retrievers: tuple[str, ...]
    sets: tuple[str, ...] = ()  # empty: every committed non-dev set with queries in scope
    scope: str = "nt"
    translation: str = "web"
    k: int = 100
    stat_test: str = "student"
    out_root: Path = RUNS
    options: dict = field(default_factory=dict)  # {retriever: {option: value}}: dsn, checkpoint, dense, ...


def check(cfg: RunConfig) -> None:
    if cfg.scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {cfg.scope!r}")
    if cfg.stat_test not in STAT_TESTS:
        raise BadInput(f"--stat-test must be one of {', '.join(STAT_TESTS)}, got {cfg.stat_test!r}")
    if not 1 <= cfg.k <= MAX_K:
        raise BadInput(f"--k must be between 1 and {MAX_K}, got {cfg.k}")


def external(queries, qrels, distractors=None) -> QuerySet | None:
    """The set given as files (`--queries`, `--qrels`, optional `--distractors`), or None when none is given."""
    if (queries is None) != (qrels is None):
        raise BadInput("--queries and --qrels go together")
    if queries is None:
        return None
    for path in (queries, qrels, distractors):
        if path is not None and Path(path).is_dir():
            raise at(path, None, "is a folder; give the file")
    return external_set(queries, qrels, distractors)


def resolve_sets(names, scope: str, external: QuerySet | None = None) -> list[QuerySet]:
    if external is not None:
        if external.name in set_names():  # a file called keyword.tsv is not the committed keyword set
            external = replace(external, name=f"{external.name}-external")
        return [external] + [load_set(n, scope) for n in names]
    # By default every set meant for reporting; dev splits are for tuning and are run only when named.
    chosen = list(names) or [n for n in set_names() if read_set(n).meta.get("split") != "dev"]
    sets = [load_set(n, scope) for n in chosen]
    if names:
        empty = [s.name for s in sets if not s.queries]
        if empty:
            raise BadInput(f"set {empty[0]!r} has no queries in scope {scope!r} (try --scope all)")
    return [s for s in sets if s.queries]


def judged_by_pooling(qs: QuerySet) -> bool:
    """A set whose qrels record what was judged not relevant (grade 0), or whose set.json says it was pooled: there
    `judged@10` tells how much of a system's top 10 the judges ever saw."""
    return bool(qs.meta.get("pooled")) or any(r == 0 for docs in qs.qrels.values() for r in docs.values())


def evaluate_set(qs: QuerySet, runs: dict[str, dict], stat_test: str) -> dict:
    """One set's parts of a Report: {"results": {retriever: {metric: mean}}, "per_query": {retriever: {metric: {qid:
    value}}}, "significance": {metric: {retriever: {other: p}}}, and for a tagged set "by_tag" (metrics.by_tag)}."""
    results, per_query = {}, {}
    pooled = judged_by_pooling(qs)
    for name, run in runs.items():
        means, pq = M.evaluate(qs.qrels, run, M.METRICS, name=name)
        if qs.distractors is not None:
            dm, dpq = M.distractor_metrics(run, qs.qrels, qs.distractors)
            means, pq = {**means, **dm}, {**pq, **dpq}
        if pooled:
            jm, jpq = M.judged_at(run, qs.qrels)
            means, pq = {**means, **jm}, {**pq, **jpq}
        results[name], per_query[name] = means, pq
    sig = M.significance(qs.qrels, runs, M.METRICS, stat_test=stat_test)
    out = {"results": results, "per_query": per_query, "significance": sig}
    if qs.tags:
        out["by_tag"] = M.by_tag(qs.tags, per_query, stat_test)
    return out


def run_benchmark(cfg: RunConfig, external: QuerySet | None = None, progress: RunProgress | None = None, *,
                  home: Path) -> tuple[R.Report, Path]:
    """Runs every retriever over every set; returns (report, folder written). `progress`: where the run reports its
    steps and each retriever's build. `home`: the cache root (corpus, index, verse vectors); no part of the config,
    since it never changes a result."""
    from retrievers.base import make  # here, not at the top: numpy's start-up, not for `bench --help`

    corpus, sets = prepare(cfg, external, home=home)

    def build(name: str, on_progress):
        return make(name, corpus, home=home, on_progress=on_progress, **cfg.options.get(name, {}))

    with RunFolder(cfg.out_root) as folder:
        def keep(set_name: str, name: str, run: dict) -> None:  # each run on disk as soon as it is made
            atomic_write_text(folder.tmp / "runs" / set_name / f"{name}.trec", format_run(run, name))

        report = evaluate_retrievers(cfg, corpus, sets, build, progress, on_run=keep)
        report.save(folder.tmp)
    return report, folder.final


def prepare(cfg: RunConfig, external: QuerySet | None = None, *, home: Path):
    """The config checked, the corpus (built on first use) and the query sets: (corpus, [QuerySet])."""
    check(cfg)
    corpus = load_corpus(cfg.translation, cfg.scope, home=home)
    sets = resolve_sets(cfg.sets, cfg.scope, external)
    if not sets:
        raise BadInput(f"no query set has queries in scope {cfg.scope!r}")
    if external is not None:
        unknown = sorted({d for docs in external.qrels.values() for d in docs if d not in corpus.position})
        if unknown:
            raise BadInput(f"{external.meta['qrels_file']}: {len(unknown)} judged docids are not verses of corpus "
                           f"{corpus.corpus_id} (first: {unknown[0]!r})")
    return corpus, sets


def evaluate_retrievers(cfg: RunConfig, corpus, sets: list[QuerySet], build, progress: RunProgress | None = None,
                        on_run=None) -> R.Report:
    """Build each retriever of `cfg.retrievers` with `build(name, on_progress)`, search every set, score the runs.
    `on_run(set, name, run)` hears each run (strictly ordered) as soon as it is made."""
    from retrievers.base import config_dict, run_key, strict_order

    progress = progress or RunProgress()
    done, steps = 0, len(cfg.retrievers) * (1 + len(sets)) + len(sets)
    timings, configs, runs_by_set, failed = {}, {}, {s.name: {} for s in sets}, {}
    held = {s.name: {} for s in sets}  # each set's runs as searched, by run_key: the hybrid fuses these
    for rname in cfg.retrievers:
        progress.step(done, steps, f"building {rname}")
        t0 = time.perf_counter()
        retriever = build(rname, progress.build(f"{rname}: {corpus.corpus_id} verses"))
        built = time.perf_counter() - t0
        done += 1
        configs[rname] = config_dict(retriever)
        timings[rname] = {"build_s": round(built, 3), "search_s": {}, "queries_per_s": {}}
        for qs in sets:
            progress.step(done, steps, f"{rname} on {qs.name}")
            t0 = time.perf_counter()
            fuses = getattr(retriever, "search_explained", None) is not None  # made of other retrievers' runs
            raw = retriever.search(qs.queries, cfg.k, held[qs.name]) if fuses else retriever.search(qs.queries, cfg.k)
            held[qs.name][run_key(rname, getattr(retriever, "options", None), cfg.k)] = raw
            if getattr(retriever, "failed", None):  # queries a live service could not answer: the report says so
                failed.setdefault(qs.name, {})[rname] = dict(retriever.failed)
            run = strict_order(raw, corpus.position)
            dt = time.perf_counter() - t0
            done += 1
            timings[rname]["search_s"][qs.name] = round(dt, 3)
            timings[rname]["queries_per_s"][qs.name] = round(len(qs.queries) / dt, 1) if dt > 0 else None
            runs_by_set[qs.name][rname] = run
            if on_run is not None:
                on_run(qs.name, rname, run)
    return score(cfg, corpus, sets, runs_by_set, configs, timings, progress, done, steps, failed=failed or None)


def score(cfg: RunConfig, corpus, sets: list[QuerySet], runs_by_set: dict, configs: dict, timings: dict,
          progress: RunProgress | None = None, done: int = 0, steps: int | None = None, *,
          failed: dict | None = None) -> R.Report:
    """Evaluate each set's runs ({set: {name: run}}) with ranx: the Report. `done`/`steps`: where the run's progress
    stands when scoring starts (scoring is one step a set). `failed`: {set: {retriever: {qid: problem}}} of the
    queries that got no answer (the report is then incomplete)."""
    progress = progress or RunProgress()
    steps = len(sets) if steps is None else steps
    parts = {key: {} for key in ("results", "per_query", "significance", "by_tag")}
    for qs in sets:
        progress.step(done, steps, f"evaluating {qs.name}")
        for key, value in evaluate_set(qs, runs_by_set[qs.name], cfg.stat_test).items():
            parts[key][qs.name] = value
        done += 1
        progress.step(done, steps, f"evaluating {qs.name}")
    return R.Report(R.new_meta(corpus, cfg, configs, timings, sets), parts["results"], parts["per_query"],
                    parts["significance"], by_tag=parts["by_tag"] or None, failed_queries=failed)


class RunFolder:
    """`with RunFolder(root) as folder:` a hidden temp folder `folder.tmp` under `root` to write a run's files into.
    On a clean exit it is renamed to `root/<UTC stamp>` (`folder.final`); on any error or interrupt it is removed, and
    so are the folders made for it. Stale temp folders of dead processes under `root` are swept first."""

    def __init__(self, root):
        self.root = Path(root)
        self.tmp: Path | None = None
        self.final: Path | None = None

    def __enter__(self) -> "RunFolder":
        sweep_stale(self.root)
        self.made = [p for p in (self.root, *self.root.parents) if not p.exists()]
        self.stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.tmp = self.root / temp_name(self.stamp)
        self.tmp.mkdir(parents=True, exist_ok=False)
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            try:
                self.final = claim(self.tmp, self.root, self.stamp)
                return
            except BaseException:
                self._remove()
                raise
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        for p in self.made:  # deepest first; a folder someone else has since put something in stays
            with contextlib.suppress(OSError):
                p.rmdir()


def claim(tmp: Path, root: Path, stamp: str) -> Path:
    """Rename the finished temp folder to `root/<stamp>`, or `<stamp>-2`, ... if another run took that name first.
    The rename itself claims the name (a folder with files in it is never replaced), so there is no race."""
    for n in range(1, 10_000):
        out = root / (stamp if n == 1 else f"{stamp}-{n}")
        if out.exists():
            continue
        try:
            tmp.rename(out)
            return out
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise BadInput(f"{root}: no free run folder name for {stamp}")
