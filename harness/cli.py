"""The `bench` command line: each command parses, calls a library function, prints. Imports sit at the top; what is
slow to import (torch, numpy, ranx and numba, the JVM) is imported inside the commands that need it, so `bench --help`
stays fast."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from corpus import qrels_build
from corpus.bible import TRANSLATIONS, load_corpus, parse_ref
from corpus.books import scope_of
from corpus.errors import BadInput
from corpus.paths import REPO, atomic_write_text
from corpus.qsets import read_set, set_names, stats, validate_set
from harness import train_cli
from harness import compare as C
from harness import gate as G
from harness import interrupts, metrics, runner
from harness import report as R
from harness import worst as W
from harness.home import default_home
from harness.progress import Bars

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="versebench: an evaluation harness for verse search.")
corpus_app = typer.Typer(no_args_is_help=True, help="Build and inspect Bible corpora.")
qrels_app = typer.Typer(no_args_is_help=True, help="Build, validate and count query sets.")
data_app = typer.Typer(no_args_is_help=True, help="Look at the encoder's training data.")
app.add_typer(corpus_app, name="corpus")
app.add_typer(qrels_app, name="qrels")
app.add_typer(data_app, name="data")


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    """The edge: process state is set here once (signals, ranx's numba cache and warnings), then the command runs.
    Each command takes the cache root from `default_home()` (the environment) and passes it down.
    Typer turns a KeyboardInterrupt into exit 130 itself; `interrupts.finish` says what was interrupted and leaves
    with 130 or 143 whatever typer made of it."""
    interrupts.install("bench " + " ".join(sys.argv[1:]))
    metrics.configure(default_home())
    code = 0
    try:
        app()
    except BadInput as e:
        typer.echo(f"error: {e}", err=True)
        code = 2
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:
        code = 130
    interrupts.finish(code)


# ---- corpus -------------------------------------------------------------------------------------------------------

def _corpus_stats(c) -> dict:
    return {"translation": c.translation, "scope": c.scope, "verses": len(c), "corpus_id": c.corpus_id,
            "words": c.manifest["words"], "books": c.manifest["books"], "sha256": c.manifest["sha256"],
            "source": c.manifest["source"]}


@corpus_app.command("build")
def corpus_build(translation: str = typer.Option("web", "--translation", "-t", help="web|kjv|asv|ylt|dar|all"),
                 scope: str = typer.Option("nt", "--scope", "-s", help="nt|ot|all"),
                 json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Build (or rebuild) a corpus cache from its source and print its counts."""
    names = TRANSLATIONS if translation == "all" else (translation,)
    rows = []
    with Bars(quiet=json_out) as bars:  # about 2 s a translation: one bar over the translations
        built = bars.callback("building corpora")
        for i, name in enumerate(names):
            built.describe(f"building {name}")
            built(i, len(names))
            rows.append(_corpus_stats(load_corpus(name, scope, home=default_home(), rebuild=True)))
        built(len(names), len(names))
    if json_out:
        emit_json(rows if translation == "all" else rows[0])
        return
    for r in rows:
        typer.echo(f"{r['corpus_id']}: {r['verses']} verses, {r['books']} books, {r['words']} words")


@corpus_app.command("stats")
def corpus_stats(translation: str = typer.Option("web", "--translation", "-t"),
                 scope: str = typer.Option("nt", "--scope", "-s"),
                 json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Counts and content id of a corpus (built on first use)."""
    r = _corpus_stats(load_corpus(translation, scope, home=default_home()))
    if json_out:
        emit_json(r)
        return
    for key in ("corpus_id", "translation", "scope", "verses", "books", "words", "sha256"):
        typer.echo(f"{key:12} {r[key]}")
    typer.echo(f"{'source':12} {json.dumps(r['source'], ensure_ascii=False)}")


@corpus_app.command("show")
def corpus_show(ref: str = typer.Argument(..., help="a verse: John.3.16, 'John 3:16', 'Ezek 36:26'"),
                translation: str = typer.Option("web", "--translation", "-t")) -> None:
    """Print one verse."""
    docid = parse_ref(ref)
    corpus = load_corpus(translation, scope_of(docid), home=default_home())
    typer.echo(f"{docid} ({translation}) {corpus.text(docid)}")


# ---- qrels --------------------------------------------------------------------------------------------------------

@qrels_app.command("validate")
def qrels_validate(
    set_: list[str] = typer.Option([], "--set", "-s", help="Set to check (repeatable); default: all."),
    translation: str = typer.Option("web", "--translation"),
):
    """Check every committed set: format, docids in the corpus for the set's scope, duplicates, unjudged queries."""
    ids = {}

    def corpus_ids(scope):
        if scope not in ids:
            ids[scope] = set(load_corpus(translation, scope, home=default_home()).ids)
        return ids[scope]

    for name in set_ or set_names():
        st = validate_set(name, corpus_ids)
        extra = f", {st['distractors']} distractors" if "distractors" in st else ""
        typer.echo(f"ok  {name}: {st['queries']} queries, {st['relevant']} relevant{extra} (scope {st['scope']})")


@qrels_app.command("stats")
def qrels_stats(as_json: bool = typer.Option(False, "--json")):
    """Counts per committed set."""
    out = {name: stats(read_set(name)) for name in set_names()}
    if as_json:
        emit_json(out)
        return
    for name, st in out.items():
        typer.echo(f"{name:18} {st['queries']:5} queries {st['relevant']:6} relevant  scope={st['scope']} "
                   f"split={st['split']} kind={st['kind']}" + (f" distractors={st['distractors']}" if "distractors" in st else ""))


@qrels_app.command("build")
def qrels_build_cmd(
    name: str = typer.Argument(..., help="thematic (Nave's -> thematic-dev, thematic-test) or keyword-xlate."),
    out: str = typer.Option(None, "--out", help="Root folder to write the set folders into (default: qrels/)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Generate a query set from its sources (deterministic: the same inputs give byte-identical files)."""
    with Console(stderr=True).status(f"building {name} ..."):
        summary = qrels_build.build(name, out, home=default_home())
    if as_json:
        emit_json(summary)
        return
    for path in summary["written"]:
        typer.echo(f"wrote {path}")
    if name == "thematic":
        typer.echo(f"queries: {summary['queries']}  topics: {summary['topics']}  unparsed refs: "
                   f"{summary['unparsed_refs']}")
    else:
        typer.echo(f"queries: {summary['queries']}  by translation: {summary['by_translation']}")

# ---- run / search -------------------------------------------------------------------------------------------------

def _retriever_names() -> list[str]:
    from retrievers.base import names

    return names()


def _retriever_options(retrievers, **given) -> dict:
    """Each retriever-specific flag goes to the retrievers whose options (in the registry) have that name."""
    from retrievers.base import option_names

    out = {r: {} for r in retrievers}
    for opt, val in given.items():
        if val is None:
            continue
        targets = [r for r in retrievers if opt in option_names(r)]
        if not targets:
            takers = [r for r in _retriever_names() if opt in option_names(r)]
            raise BadInput(f"--{opt} applies to {' or '.join(takers)}, which this command does not run")
        for r in targets:
            out[r][opt] = val
    return out


def _expand_retrievers(chosen: list[str]) -> tuple[str, ...]:
    from retrievers.base import ALL

    known = _retriever_names()
    out = []
    for r in chosen:
        if r == "all":
            out += ALL
        elif r not in known:
            raise BadInput(f"unknown retriever {r!r}; choose from: {', '.join(known)}, all")
        else:
            out.append(r)
    return tuple(dict.fromkeys(out))


def _write_frames(report: dict, folder: str | None) -> str:
    """`--csv DIR`: the report's DataFrames; returns what to add to the closing line."""
    if not folder:
        return ""
    from harness import frames

    written = frames.write(report, folder)
    return f"; DataFrames in {folder} ({', '.join(p.name for p in written)})"


@app.command()
def run(
    retriever: list[str] = typer.Option(["bm25"], "--retriever", "-r", help="Retriever name (repeatable), or 'all'."),
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
    ext = runner.external(queries, qrels, distractors)
    names = _expand_retrievers(retriever)
    cfg = runner.RunConfig(retrievers=names, sets=tuple(set_), scope=scope, translation=translation, k=k,
                           stat_test=stat_test, options=_retriever_options(names, checkpoint=checkpoint, dense=dense,
                                                                           fusion=fusion, dsn=dsn))
    if out:
        cfg = replace(cfg, out_root=Path(out))
    with Bars(quiet=as_json) as bars:
        report, folder = runner.run_benchmark(cfg, external=ext, progress=bars, home=default_home())
    frames_written = _write_frames(report, csv)
    if as_json:
        emit_json(report)
        return
    R.print_tables(report, Console())
    Console().print(f"runs and report written to {folder}" + frames_written)


@app.command()
def search(
    query: str = typer.Argument(..., help="What you would type into the app's search box."),
    retriever: str = typer.Option("bm25", "--retriever", "-r"),
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
    from rich.console import Console
    from rich.table import Table

    from corpus.books import SCOPES
    from harness.runner import strict_order
    from retrievers.base import make

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 1 <= k <= 1000:
        raise BadInput(f"--k must be between 1 and 1000, got {k}")
    name = _expand_retrievers([retriever])[0]
    home = default_home()
    corpus = load_corpus(translation, scope, home=home)
    opts = _retriever_options([name], checkpoint=checkpoint, dense=dense, fusion=fusion, dsn=dsn)[name]
    with Bars(quiet=as_json) as bars:  # a first search builds the index or encodes the verses (the hybrid: on search)
        r = make(name, corpus, home=home, on_progress=bars.callback(f"{name}: {corpus.corpus_id} verses"), **opts)
        explained = getattr(r, "search_explained", None)  # the hybrid: one retrieval, fused and explained
        run, parts = explained({"q": query}, k) if explained else (r.search({"q": query}, k), None)
    parts = parts and parts["q"]  # {docid: {part: (score, rank)}}
    hits = strict_order(run, corpus.position).get("q", {})
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    if as_json:
        emit_json([{"rank": i, "docid": d, "score": s, "text": corpus.text(d), **({"parts": parts.get(d)} if parts else {})}
                   for i, (d, s) in enumerate(ranked, 1)])
        return
    table = Table(title=f"{name}: {query!r} ({corpus.corpus_id})", title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("verse")
    table.add_column("score", justify="right")
    part_names = sorted({p for v in (parts or {}).values() for p in v})
    for p in part_names:
        table.add_column(f"{p} score (rank)", justify="right")
    table.add_column("text")
    for i, (d, s) in enumerate(ranked, 1):
        extra = []
        for p in part_names:
            sc = (parts.get(d) or {}).get(p)
            extra.append("-" if sc is None else f"{sc[0]:.3f} ({sc[1]})")
        table.add_row(str(i), d, f"{s:.3f}", *extra, corpus.text(d))
    console = Console()
    console.print(table)
    if not ranked:
        console.print("no verse matched")

@app.command("tune-fusion")
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


# ---- encoder: data / train / finetune / distill / export / ablate (harness/train_cli.py) -------------------------

train_cli.register(app, data_app)


# ---- gate / compare / perf ----------------------------------------------------------------------------------------

@app.command()
def gate(
    checkpoint: str = typer.Option(..., "--checkpoint", help="Candidate encoder checkpoint folder."),
    baseline: str = typer.Option(None, "--baseline", help="Default: the repository's reports/baseline.json."),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Largest drop that never fails (absolute)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the paired test."),
    stat_test: str = typer.Option("student", "--stat-test", help="ranx paired test: student | fisher."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Gate only these sets (default: all gate sets)."),
    verdict_path: str = typer.Option(None, "--verdict", help="Where to write the verdict JSON."),
    update_baseline: bool = typer.Option(False, "--update-baseline",
                                         help="Rewrite the baseline from this candidate if it passes (refused on a "
                                              "work tree with uncommitted changes)."),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help="Let --update-baseline write from a dirty work "
                                                                  "tree; the baseline records that it did."),
    summary: str = typer.Option(None, "--summary", help="Also write the verdict as Markdown here (for a CI job "
                                                        "summary, e.g. $GITHUB_STEP_SUMMARY)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict JSON to stdout."),
):
    """Refuse an encoder checkpoint that is significantly worse than the committed baseline (exit 1); on failure,
    show the five queries that fell most on each failing metric."""
    err = Console(stderr=True)
    with Bars(quiet=as_json, console=err) as bars:
        verdict = G.run(checkpoint, baseline, set_, tolerance, alpha, stat_test, verdict_path, update_baseline,
                        allow_dirty, progress=bars, home=default_home())
    if summary:
        atomic_write_text(summary, W.gate_summary(verdict.to_dict()))
    if as_json:
        emit_json(verdict.to_dict())
    elif verdict.meta["first_baseline"]:
        err.print(f"no baseline at {baseline or G.BASELINE}: wrote one from {checkpoint}")
        return
    else:
        _print_verdict(verdict, checkpoint, baseline or G.BASELINE, verdict_path)
    if verdict.failed:
        err.print(f"gate failed: significant drops in {', '.join(verdict.failed)}")
        raise typer.Exit(1)
    if verdict.meta["baseline_updated"]:
        err.print(f"baseline {baseline or G.BASELINE} updated from {checkpoint}"
                  + (" (from a dirty work tree: --allow-dirty)" if allow_dirty else ""))


def _print_verdict(verdict, checkpoint, baseline, verdict_path) -> None:
    # the baseline as the verdict records it (repository-relative): the title once showed this machine's path
    table = Table(title=f"gate: {_short(checkpoint)} vs {_short(R.rel_path(baseline))} (tolerance {verdict.tolerance}, "
                        f"alpha {verdict.alpha})", title_justify="left")
    for h in ("set", "retriever", "metric", "baseline", "candidate", "delta", "p", "status"):
        table.add_column(h, justify="right" if h in ("baseline", "candidate", "delta", "p") else "left")
    style = {"worse": "red", "better": "green", "unchanged": ""}
    for r in verdict.rows:
        table.add_row(r.set, r.retriever, r.metric, f"{r.baseline:.4f}", f"{r.candidate:.4f}",
                      f"{r.delta:+.4f}", f"{r.p_value:.3g}", f"[{style[r.status]}]{r.status}[/]" if style[r.status]
                      else r.status)
    console = Console()
    console.print(table)
    W.print_views(list(verdict.worst.values()), console)
    where = Path(verdict_path) if verdict_path else REPO / verdict.meta["verdict"]
    console.print(f"verdict: {'PASS' if verdict.passed else 'FAIL'} in {verdict.seconds:.1f} s (written to {where})")


def _short(text, width: int = 80) -> str:
    """Text for a title or a one-line message: at most `width` characters, the cut marked."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


@app.command()
def compare(
    reports: list[str] = typer.Argument(..., help="report.json files (or run folders) to put side by side."),
    out: str = typer.Option(None, "--out", help="Folder for compare.md and the PNG charts."),
    metric: str = typer.Option("ndcg@10", "--metric", help="Metric the charts show."),
    retriever: list[str] = typer.Option([], "--retriever", "-r", help="Only these retrievers (repeatable)."),
    worst: int = typer.Option(None, "--worst", help="List the N queries that fell most from A to B on --metric "
                                                    "(two reports, or one report and two -r)."),
    csv: str = typer.Option(None, "--csv", help="Also write the comparison as DataFrames (CSV, Parquet) here."),
    as_json: bool = typer.Option(False, "--json"),
):
    """One table across saved reports, with significance markers, a PNG bar chart per set (95% bootstrap intervals)
    and, where the reports pair up as A and B, a per-query scatter PNG."""
    if worst is not None and worst < 1:
        raise BadInput(f"--worst must be at least 1, got {worst}")
    loaded = [(p, C.load(p)) for p in reports]
    table = C.combine(loaded, only=tuple(retriever))
    folder = Path(out) if out else C.default_out()
    written = C.write(table, folder, metric)
    views, more = W.for_compare(loaded, tuple(retriever), metric, worst, folder, home=default_home())
    written += more
    frames_written = _write_frames(table, csv)
    if as_json:
        emit_json({**table, "worst": views} if worst else table)
        return
    R.print_tables(table, Console())
    W.print_views(views, Console())
    Console().print(f"wrote {', '.join(str(p) for p in written)}" + frames_written)


@app.command()
def perf(
    part: list[str] = typer.Option([], "--part", "-p",
                                   help="lexical | qps | encoding | wall | gate (repeatable); default: all."),
):
    """Speed benchmarks (index build, queries/s, encoding, whole runs cold and warm, gate); writes reports/perf.json."""
    from harness import perf as P

    parts = list(part) or list(P.PARTS)
    bad = [p for p in parts if p not in P.PARTS]
    if bad:
        raise BadInput(f"unknown --part {bad[0]!r}; choose from {', '.join(P.PARTS)}")
    P.run(parts, log=lambda m: typer.echo(m, err=True), home=default_home())
    typer.echo("wrote reports/perf.json")
