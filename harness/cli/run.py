"""`bench run`, `bench eval`, `bench search`, `bench tune-fusion`: retrievers over query sets, run files made
elsewhere, one query, fusion weights."""

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from corpus.bible import load_corpus
from corpus.errors import BadInput
from corpus.paths import check_writable
from harness import runner
from harness.cli import render, specs
from harness.cli.common import emit_json
from harness.cli.home import default_home
from harness.cli.progress import Bars


def write_frames(report, folder: str | None) -> str:
    """`--csv DIR`: the report's DataFrames; returns what to add to the closing line."""
    if not folder:
        return ""
    from harness import frames

    written = frames.write(report, folder)
    return f"; DataFrames in {folder} ({', '.join(p.name for p in written)})"


def check_outputs(out: str | None, csv: str | None) -> None:
    """`--out` and `--csv` checked writable now, not after the whole run has been made (then refused)."""
    for path, flag in ((out, "--out"), (csv, "--csv")):
        if path:
            check_writable(path, flag, folder=True)


def show_report(report, folder, csv: str | None, as_json: bool, written: str) -> None:
    """What `bench run` and `bench eval` print at the end: the report JSON, or its tables and where it went (and the
    DataFrames, with --csv)."""
    frames_written = write_frames(report, csv)
    if as_json:
        emit_json(report.to_dict())
        return
    render.result_tables(report, Console())
    Console().print(f"{written} written to {folder}" + frames_written)


def run(
    retriever: list[str] = typer.Option(["bm25"], "--retriever", "-r", help=specs.RETRIEVER_HELP),
    option: list[str] = typer.Option([], "--option", "-o", help=specs.OPTION_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help="Query set (repeatable); default: every set in scope."),
    queries: str = typer.Option(None, "--queries", help="External queries TSV (with --qrels)."),
    qrels: str = typer.Option(None, "--qrels", help="External qrels TREC (with --queries)."),
    distractors: str = typer.Option(None, "--distractors", help="External distractors TREC (optional)."),
    k: int = typer.Option(100, "--k", help="Depth of each run."),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all"),
    translation: str = typer.Option("web", "--translation"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Encoder checkpoint folder (encoder, hybrid)."),
    dense: str = typer.Option(None, "--dense", help="Hybrid's dense side: encoder | minilm."),
    fusion: str = typer.Option(None, "--fusion", help="Hybrid's ranx fusion method (wsum, rrf, ...)."),
    dsn: str = typer.Option(None, "--dsn", help="postgresql://... to run ILIKE on PostgreSQL instead of SQLite."),
    stat_test: str = typer.Option("student", "--stat-test", help="ranx paired test: student | fisher."),
    out: str = typer.Option(None, "--out", help="Folder under which the run folder is written."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON to stdout."),
    csv: str = typer.Option(None, "--csv", help="Also write the results as DataFrames (CSV, Parquet) to this folder."),
):
    """Run retrievers over query sets, evaluate with ranx, write runs and reports under reports/runs/."""
    check_outputs(out, csv)
    ext = runner.external(queries, qrels, distractors)
    names = specs.expand_retrievers(retriever)
    cfg = runner.RunConfig(retrievers=names, sets=tuple(set_), scope=scope, translation=translation, k=k,
                           stat_test=stat_test, options=specs.retriever_options(names, option, checkpoint=checkpoint,
                                                                                dense=dense, fusion=fusion, dsn=dsn))
    if out:
        cfg = replace(cfg, out_root=Path(out))
    with Bars(quiet=as_json) as bars:
        report, folder = runner.run_benchmark(cfg, external=ext, progress=bars.for_run(), home=default_home())
    show_report(report, folder, csv, as_json, "runs and report")


def search(
    query: str = typer.Argument(..., help="What you would type into the app's search box."),
    retriever: str = typer.Option("bm25", "--retriever", "-r", help=specs.RETRIEVER_HELP),
    option: list[str] = typer.Option([], "--option", "-o", help=specs.OPTION_HELP),
    k: int = typer.Option(10, "--k"),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all"),
    translation: str = typer.Option("web", "--translation"),
    checkpoint: str = typer.Option(None, "--checkpoint"),
    dense: str = typer.Option(None, "--dense"),
    fusion: str = typer.Option(None, "--fusion"),
    dsn: str = typer.Option(None, "--dsn"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Top hits for one query, with reference, score and verse text (hybrid also shows its parts)."""
    from corpus.books import SCOPES
    from retrievers.base import make, strict_order

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 1 <= k <= 1000:
        raise BadInput(f"--k must be between 1 and 1000, got {k}")
    name = specs.expand_retrievers([retriever])[0]
    home = default_home()
    corpus = load_corpus(translation, scope, home=home)
    opts = specs.retriever_options([name], option, checkpoint=checkpoint, dense=dense, fusion=fusion, dsn=dsn)[name]
    with Bars(quiet=as_json) as bars:  # a first search builds the index or encodes the verses (the hybrid: on search)
        r = make(name, corpus, home=home, on_progress=bars.callback(f"{name}: {corpus.corpus_id} verses"), **opts)
        explained = getattr(r, "search_explained", None)  # the hybrid: one retrieval, fused and explained
        run, parts = explained({"q": query}, k) if explained else (r.search({"q": query}, k), None)
    if getattr(r, "failed", None):  # a live service that did not answer (tolerated by max_failures): no result
        raise BadInput(f"retriever {name}: the query failed: {r.failed['q']}")
    parts = parts and parts["q"]  # {docid: {part: (score, rank)}}
    hits = strict_order(run, corpus.position).get("q", {})
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    if as_json:
        emit_json([{"rank": i, "docid": d, "score": s, "text": corpus.text(d), **({"parts": parts.get(d)} if parts else {})}
                   for i, (d, s) in enumerate(ranked, 1)])
        return
    render.search_hits(f"{name}: {query!r} ({corpus.corpus_id})", ranked, parts, corpus.text, Console())


def tune_fusion(
    dense: str = typer.Option("encoder", "--dense", help="encoder | minilm"),
    fusion: str = typer.Option("wsum", "--fusion"),
    set_: list[str] = typer.Option([], "--set", "-s", help="Dev split(s) to tune on; default: every dev split."),
    metric: str = typer.Option("ndcg@10", "--metric"),
    checkpoint: str = typer.Option(None, "--checkpoint"),
    scope: str = typer.Option("nt", "--scope"),
):
    """Tune hybrid fusion parameters with ranx.optimize_fusion on dev splits only; saves reports/fusion/weights.json."""
    from corpus.qsets import load_set, read_set, set_names
    from harness.fusion import tune

    names = list(set_) or [n for n in set_names() if read_set(n).meta.get("split") == "dev"]
    sets = [load_set(n, scope) for n in names]
    home = default_home()
    entry = tune(load_corpus("web", scope, home=home), dense, fusion, sets, metric=metric, checkpoint=checkpoint,
                 home=home)
    emit_json(entry)


def eval_(
    runs: list[str] = typer.Argument(..., help="TREC run files (qid Q0 docid rank score tag); verse ids as OSIS "
                                               "(John.3.16) or references ('John 3:16', 'Jn 3:16', '1 Cor 13:4')."),
    set_: str = typer.Option(None, "--set", "-s", help="The committed query set the runs answer."),
    queries: str = typer.Option(None, "--queries", help="External queries TSV (with --qrels), instead of -s."),
    qrels: str = typer.Option(None, "--qrels", help="External qrels TREC (with --queries)."),
    distractors: str = typer.Option(None, "--distractors", help="External distractors TREC (optional)."),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all: the corpus the verse ids must belong to."),
    translation: str = typer.Option("web", "--translation"),
    stat_test: str = typer.Option("student", "--stat-test", help="ranx paired test: student | fisher."),
    out: str = typer.Option(None, "--out", help="Folder under which the run folder is written."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON to stdout."),
    csv: str = typer.Option(None, "--csv", help="Also write the results as DataFrames (CSV, Parquet) to this folder."),
):
    """Score TREC run files made elsewhere exactly as `bench run` scores its retrievers: metrics, distractor metrics,
    significance, report folder (and DataFrames with --csv). Each run is a row, named by its tag."""
    from harness.runfiles import evaluate_run_files

    check_outputs(out, csv)
    ext = runner.external(queries, qrels, distractors)
    if (set_ is None) == (ext is None):
        raise BadInput("give the runs' query set: -s SET, or --queries and --qrels (not both)")
    cfg = runner.RunConfig(retrievers=(), sets=(set_,) if set_ else (), scope=scope, translation=translation,
                           stat_test=stat_test)
    if out:
        cfg = replace(cfg, out_root=Path(out))
    with Bars(quiet=as_json) as bars:
        report, folder = evaluate_run_files(runs, cfg, ext, progress=bars.for_run(), home=default_home())
    show_report(report, folder, csv, as_json, "report")


def with_retriever_names(command):
    """`command` with its `--retriever` help listing every name it takes. Filled in when the app is assembled, not
    written in the signature: installed plugins' entry points are only known then."""
    import inspect

    for p in inspect.signature(command).parameters.values():
        if isinstance(p.default, typer.models.OptionInfo) and "--retriever" in (p.default.param_decls or ()):
            p.default.help = specs.retriever_help()
    return command


def register(app: typer.Typer) -> None:
    app.command()(with_retriever_names(run))
    app.command("eval")(eval_)
    app.command()(with_retriever_names(search))
    app.command("tune-fusion")(tune_fusion)
