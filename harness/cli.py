"""The `bench` command line. Command bodies import their modules lazily so `bench --help` stays fast."""

import json
import sys

import typer

from harness.errors import BadInput

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
    try:
        app()
    except BadInput as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


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
    from rich.progress import Progress

    from harness.corpus import TRANSLATIONS, load_corpus

    names = TRANSLATIONS if translation == "all" else (translation,)
    rows = []
    with Progress(transient=True, disable=json_out) as progress:
        task = progress.add_task("building corpora", total=len(names))
        for name in names:
            progress.update(task, description=f"building {name}")
            rows.append(_corpus_stats(load_corpus(name, scope, rebuild=True)))
            progress.advance(task)
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
    from harness.corpus import load_corpus

    r = _corpus_stats(load_corpus(translation, scope))
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
    from harness.books import scope_of
    from harness.corpus import load_corpus, parse_ref

    docid = parse_ref(ref)
    typer.echo(f"{docid} ({translation}) {load_corpus(translation, scope_of(docid)).text(docid)}")


# ---- qrels --------------------------------------------------------------------------------------------------------

@qrels_app.command("validate")
def qrels_validate(
    set_: list[str] = typer.Option([], "--set", "-s", help="Set to check (repeatable); default: all."),
    translation: str = typer.Option("web", "--translation"),
):
    """Check every committed set: format, docids in the corpus for the set's scope, duplicates, unjudged queries."""
    from harness.corpus import load_corpus
    from harness.qsets import set_names, validate_set

    ids = {}

    def corpus_ids(scope):
        if scope not in ids:
            ids[scope] = set(load_corpus(translation, scope).ids)
        return ids[scope]

    for name in set_ or set_names():
        st = validate_set(name, corpus_ids)
        extra = f", {st['distractors']} distractors" if "distractors" in st else ""
        typer.echo(f"ok  {name}: {st['queries']} queries, {st['relevant']} relevant{extra} (scope {st['scope']})")


@qrels_app.command("stats")
def qrels_stats(as_json: bool = typer.Option(False, "--json")):
    """Counts per committed set."""
    from harness.qsets import read_set, set_names, stats

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
    from rich.console import Console

    from harness import qrels_build

    with Console(stderr=True).status(f"building {name} ..."):
        summary = qrels_build.build(name, out)
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


def _retriever_options(checkpoint, dense, fusion, dsn) -> dict:
    opts = {}
    if checkpoint is not None:
        opts["checkpoint"] = checkpoint
    if dense is not None:
        opts["dense"] = dense
    if fusion is not None:
        opts["fusion"] = fusion
    if dsn is not None:
        opts["dsn"] = dsn
    return opts


def _expand_retrievers(chosen: list[str]) -> tuple[str, ...]:
    known = _retriever_names()
    out = []
    for r in chosen:
        if r == "all":
            out += [n for n in ("ilike", "bm25", "encoder", "minilm", "hybrid") if n in known]
        elif r not in known:
            raise BadInput(f"unknown retriever {r!r}; choose from: {', '.join(known)}, all")
        else:
            out.append(r)
    return tuple(dict.fromkeys(out))


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
):
    """Run retrievers over query sets, evaluate with ranx, write runs and reports under reports/runs/."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dataclasses import replace
    from pathlib import Path

    from harness import report as R
    from harness.books import SCOPES
    from harness.qsets import external_set
    from harness.runner import RunConfig, run_benchmark

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if stat_test not in ("student", "fisher"):
        raise BadInput(f"--stat-test must be student or fisher, got {stat_test!r}")
    if (queries is None) != (qrels is None):
        raise BadInput("--queries and --qrels go together")
    ext = external_set(queries, qrels, distractors) if queries else None
    cfg = RunConfig(retrievers=_expand_retrievers(retriever), sets=tuple(set_), scope=scope, translation=translation,
                    k=k, stat_test=stat_test, options=_retriever_options(checkpoint, dense, fusion, dsn))
    if out:
        cfg = replace(cfg, out_root=Path(out))
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=as_json) as progress:
        report, folder = run_benchmark(cfg, external=ext, progress=progress)
    if as_json:
        emit_json(report)
        return
    R.print_tables(report, Console())
    Console().print(f"runs and report written to {folder}")


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

    from harness.books import SCOPES
    from harness.corpus import load_corpus
    from harness.runner import strict_order
    from retrievers.base import make

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 1 <= k <= 1000:
        raise BadInput(f"--k must be between 1 and 1000, got {k}")
    name = _expand_retrievers([retriever])[0]
    corpus = load_corpus(translation, scope)
    r = make(name, corpus, **_retriever_options(checkpoint, dense, fusion, dsn))
    explain = getattr(r, "explain", None)
    parts = explain(query, k) if explain else None  # {docid: {part: (score, rank)}}
    hits = strict_order(r.search({"q": query}, k), corpus.position).get("q", {})
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

# ---- encoder: data / train / finetune -----------------------------------------------------------------------------

# ---- gate / compare / perf ----------------------------------------------------------------------------------------
