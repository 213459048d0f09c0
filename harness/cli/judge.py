"""`bench gate`, `bench compare`, `bench perf`: judge a candidate against the baseline, put reports side by side,
time the benchmarks."""

from pathlib import Path

import typer
from rich.console import Console

from corpus.errors import BadInput
from corpus.paths import atomic_write_text, check_writable, staged_folder
from harness import compare as C
from harness import gate as G
from harness import worst as W
from harness.cli import render, specs
from harness.cli.common import emit_json
from harness.cli.home import default_home
from harness.cli.progress import Bars
from harness.cli.run import with_retriever_names, write_frames


def gate(
    retriever: list[str] = typer.Option([], "--retriever", "-r", help=specs.RETRIEVER_HELP),
    option: list[str] = typer.Option([], "--option", "-o", help=specs.OPTION_HELP),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Candidate encoder checkpoint folder: shorthand for "
                                                              "-r encoder -r hybrid -o checkpoint=PATH."),
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
    """Refuse a candidate that is significantly worse than a baseline made from the same retriever (exit 1): an
    encoder checkpoint against the committed baseline, or any retriever (-r SPEC -o key=value) against --baseline.
    On failure, show the five queries that fell most on each failing metric."""
    if bool(checkpoint) == bool(retriever):
        raise BadInput("bench gate takes either -r SPEC [-o key=value ...] or --checkpoint PATH")
    if retriever:
        names = specs.expand_retrievers(retriever)
        candidate = specs.retriever_options(names, option)
    elif option:
        raise BadInput("-o goes with -r; --checkpoint PATH takes no -o")
    else:
        candidate = checkpoint
    label = checkpoint or G.describe(candidate)
    for path, flag in ((verdict_path, "--verdict"), (summary, "--summary")):
        if path:
            check_writable(path, flag, folder=False)  # now, not after the evaluation
    err = Console(stderr=True)
    with Bars(quiet=as_json, console=err) as bars:
        verdict = G.run(candidate, baseline, set_, tolerance, alpha, stat_test, verdict_path, update_baseline,
                        allow_dirty, progress=bars.for_run(), home=default_home(), summary_path=summary)
    if as_json:
        emit_json(verdict.to_dict())
    elif verdict.meta["first_baseline"]:
        err.print(f"no baseline at {verdict.baseline}: wrote one from {label}")
        return
    else:
        render.verdict(verdict, label, baseline or G.BASELINE, verdict_path, Console())
    if verdict.failed:
        err.print(f"gate failed: significant drops in {', '.join(verdict.failed)}")
        raise typer.Exit(1)
    if verdict.meta["baseline_updated"]:
        err.print(f"baseline {verdict.baseline} updated from {label}"
                  + (" (from a dirty work tree: --allow-dirty)" if allow_dirty else ""))


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
    folder = Path(out) if out else C.default_out()
    check_writable(folder, "--out", folder=True)
    if csv:
        check_writable(csv, "--csv", folder=True)
    loaded = [(p, C.load(p)) for p in reports]
    table = C.combine(loaded, only=tuple(retriever))
    with staged_folder(folder) as tmp:  # compare.md and every PNG it links, or nothing
        written = C.write(table, tmp, metric)
        views, more = W.for_compare(loaded, tuple(retriever), metric, worst, tmp, home=default_home())
        written = [folder / p.relative_to(tmp) for p in written + more]
    frames_written = write_frames(table, csv)
    if as_json:
        emit_json({**table.to_dict(), "worst": views} if worst else table.to_dict())
        return
    render.result_tables(table, Console())
    render.worst_views(views, Console())
    Console().print(f"wrote {', '.join(str(p) for p in written)}" + frames_written)


def perf(
    part: list[str] = typer.Option([], "--part", "-p",
                                   help="lexical | qps | encoding | wall | gate | http (repeatable); default: all."),
):
    """Speed benchmarks (index build, queries/s, encoding, whole runs cold and warm, gate); writes reports/perf.json."""
    from harness import perf as P

    parts = list(part) or list(P.PARTS)
    bad = [p for p in parts if p not in P.PARTS]
    if bad:
        raise BadInput(f"unknown --part {bad[0]!r}; choose from {', '.join(P.PARTS)}")
    P.run(parts, log=lambda m: typer.echo(m, err=True), home=default_home())
    typer.echo("wrote reports/perf.json")


def agreement(
    report: str = typer.Argument(..., help="a report.json (or run folder) with at least three retrievers"),
    metric: str = typer.Option("ndcg@10", "--metric"),
    out: str = typer.Option(None, "--out", help="also write the table as markdown to this file"),
    as_json: bool = typer.Option(False, "--json"),
):
    """For each pair of the report's sets, Kendall's tau between the orders in which they rank its retrievers: a
    set that ranks systems unlike the others shows a low mean."""
    from harness import agreement as A
    from harness.report import Report

    rep = Report.load(report)
    systems = sorted(set.intersection(*(set(r) for r in rep.results.values())))
    if len(systems) < 3:
        raise BadInput(f"{report}: agreement needs three or more retrievers run on every set, found {len(systems)}")
    tau = A.table(rep.results, metric, systems)
    if as_json:
        emit_json({"metric": metric, "systems": systems, "tau": tau})
    else:
        typer.echo(A.to_markdown(tau, systems, metric))
    if out:
        atomic_write_text(Path(out), A.to_markdown(tau, systems, metric))


def register(app: typer.Typer) -> None:
    app.command()(agreement)
    app.command()(with_retriever_names(gate))
    app.command()(compare)
    app.command()(perf)
