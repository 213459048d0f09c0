"""`bench eval`: runs made elsewhere (TREC files) scored exactly as the runner scores its own retrievers.

A run's verse ids may be OSIS (`John.3.16`) or references as people write them ("John 3:16", "Jn 3:16",
"1 Cor 13:4"); each is read into the corpus's OSIS id by corpus.books. Ids that are no verse of the corpus (an
unknown book, a verse the corpus lacks, an Old Testament verse against the New Testament) are all named in one
error: a run scored with verses silently dropped would look worse than it is.
"""

from dataclasses import replace
from pathlib import Path

from corpus.books import normalize_ref
from corpus.errors import BadInput, at
from corpus.paths import atomic_write_text
from corpus.qsets import QuerySet, format_run, read_run_tagged
from harness import runner
from harness.report import Report, rel_path


def read_runs(paths, corpus) -> dict[str, tuple[Path, dict]]:
    """{label: (path, run)} with every verse id the corpus's OSIS id; BadInput naming every unknown id. A run's
    label is its tag when the file has one tag (`bench run` tags by retriever), else the file's name."""
    out, unknown = {}, {}
    for path in map(Path, paths):
        if path.is_dir():
            raise at(path, None, "is a folder; give the run files (e.g. RUN_FOLDER/runs/SET/*.trec)")
        if not path.is_file():
            raise at(path, None, "no such run file")
        raw, tags = read_run_tagged(path, spaced_ids=True)
        run, bad = normalize_run(raw, corpus.position, path)
        if bad:
            unknown[path] = bad
        tag = next(iter(tags)) if len(tags) == 1 else ""
        base = tag if tag and "/" not in tag and not tag.startswith(".") else path.stem  # a label is a file name too
        label, n = base, 2
        while label in out:  # two runs with one tag: the later ones numbered
            label, n = f"{base}-{n}", n + 1
        out[label] = (path, run)
    if unknown:
        count = sum(len(b) for b in unknown.values())
        listed = "; ".join(f"{p.name}: {', '.join(repr(d) for d in bad)}" for p, bad in unknown.items())
        raise BadInput(f"{count} verse id(s) are not verses of corpus {corpus.corpus_id}: {listed}")
    return out


def normalize_run(run: dict, position: dict, path) -> tuple[dict, list[str]]:
    """(the run with OSIS ids, the ids that are no verse of the corpus, in first-seen order)."""
    out, bad = {}, []
    for qid, docs in run.items():
        for docid, score in docs.items():
            osis = docid if docid in position else normalize_ref(docid)
            if osis is None or osis not in position:
                if docid not in bad:
                    bad.append(docid)
                continue
            if osis in out.get(qid, {}):
                raise at(path, None, f"query {qid}: {docid!r} is {osis} a second time")
            out.setdefault(qid, {})[osis] = score
    return out, bad


def evaluate_run_files(paths, cfg: runner.RunConfig, external: QuerySet | None = None, progress=None, *,
                       home: Path) -> tuple[Report, Path]:
    """Score the run files on the set (`cfg.sets`, one) or the external set; returns (report, folder written). The
    folder is a run folder like `bench run`'s: report.json, report.md and runs/<set>/<label>.trec (the runs as
    scored: OSIS ids, ties in canonical verse order)."""
    from retrievers.base import strict_order

    if not paths:
        raise BadInput("give at least one run file")
    if len(cfg.sets) + (external is not None) != 1:
        raise BadInput("bench eval scores runs on one set: give -s SET or --queries and --qrels")
    corpus, sets = runner.prepare(cfg, external, home=home)
    (qs,) = sets
    runs = {}
    for label, (path, run) in read_runs(paths, corpus).items():
        if not set(run) & set(qs.queries):
            raise at(path, None, f"none of its queries is a query of set {qs.name}")
        runs[label] = (path, strict_order(run, corpus.position))
    depth = max((len(docs) for _, run in runs.values() for docs in run.values()), default=0)
    cfg = replace(cfg, retrievers=tuple(runs), k=depth)
    configs = {label: {"name": label, "source": "TREC run file", "file": rel_path(path)}
               for label, (path, _) in runs.items()}
    with runner.RunFolder(cfg.out_root) as folder:
        for label, (_, run) in runs.items():
            atomic_write_text(folder.tmp / "runs" / qs.name / f"{label}.trec", format_run(run, label))
        report = runner.score(cfg, corpus, sets, {qs.name: {label: run for label, (_, run) in runs.items()}},
                              configs, {}, progress)
        report.save(folder.tmp)
    return report, folder.final
