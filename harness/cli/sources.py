"""`bench corpus` and `bench qrels`: build and inspect Bible corpora and query sets."""

import json

import typer
from rich.console import Console

from corpus import qrels_build
from corpus.bible import TRANSLATIONS, load_corpus, parse_ref
from corpus.books import scope_of
from corpus.qsets import read_set, set_names, stats, validate_set
from harness.cli.common import emit_json
from harness.cli.home import default_home
from harness.cli.progress import Bars

# ---- corpus -------------------------------------------------------------------------------------------------------

def _corpus_stats(c) -> dict:
    return {"translation": c.translation, "scope": c.scope, "verses": len(c), "corpus_id": c.corpus_id,
            "words": c.manifest["words"], "books": c.manifest["books"], "sha256": c.manifest["sha256"],
            "source": c.manifest["source"]}


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


def corpus_show(ref: str = typer.Argument(..., help="a verse: John.3.16, 'John 3:16', 'Ezek 36:26'"),
                translation: str = typer.Option("web", "--translation", "-t")) -> None:
    """Print one verse."""
    docid = parse_ref(ref)
    corpus = load_corpus(translation, scope_of(docid), home=default_home())
    typer.echo(f"{docid} ({translation}) {corpus.text(docid)}")


# ---- qrels --------------------------------------------------------------------------------------------------------


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


def qrels_stats(as_json: bool = typer.Option(False, "--json")):
    """Counts per committed set."""
    out = {name: stats(read_set(name)) for name in set_names()}
    if as_json:
        emit_json(out)
        return
    for name, st in out.items():
        typer.echo(f"{name:18} {st['queries']:5} queries {st['relevant']:6} relevant  scope={st['scope']} "
                   f"split={st['split']} kind={st['kind']}" + (f" distractors={st['distractors']}" if "distractors" in st else ""))


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


def register(corpus_app: typer.Typer, qrels_app: typer.Typer) -> None:
    corpus_app.command("build")(corpus_build)
    corpus_app.command("stats")(corpus_stats)
    corpus_app.command("show")(corpus_show)
    qrels_app.command("validate")(qrels_validate)
    qrels_app.command("stats")(qrels_stats)
    qrels_app.command("build")(qrels_build_cmd)
