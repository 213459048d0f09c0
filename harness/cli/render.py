"""Every rich table and verdict the commands print. The library makes plain data (reports, verdicts, worst-query
views); this module alone turns it into terminal output."""

from pathlib import Path

from rich.console import Console
from rich.table import Table

from corpus.paths import REPO
from harness import report as R
from harness import worst as W


def result_tables(report: R.Report, console: Console) -> None:
    """One table per set: the report's metrics, significance letters, no markdown bold."""
    for s in report.results:
        header, rows = R.set_table_rows(report, s)
        info = report.set_info(s)
        table = Table(title=f"{s} ({info.get('queries', '?')} queries)", title_justify="left")
        for h in header:
            table.add_column(h, justify="left" if h in ("", "retriever") else "right")
        for r in rows:
            table.add_row(*[c.replace("**", "") for c in r])
        console.print(table)
        tags = tag_table(report, s)
        if tags is not None:
            console.print(tags)
    for line in report.incomplete_lines():  # rows scored with failed queries as unanswered: never a complete result
        console.print(line, style="bold red", markup=False, highlight=False)


def tag_table(report: R.Report, set_name: str, metric: str = "ndcg@10") -> Table | None:
    """The terminal's form of report.tag_table_rows (no markdown bold, as in result_tables); None for an untagged
    set."""
    table_rows = R.tag_table_rows(report, set_name, metric)
    if table_rows is None:
        return None
    header, rows = table_rows
    table = Table(title=f"{set_name} by query tag ({metric})", title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[c.replace("**", "") for c in r])
    return table


def worst_views(vs: list[dict], console: Console) -> None:
    """The queries that fell most: a headline per view, then each query's top hits under A and B side by side."""
    for v in vs:
        console.print(f"[bold]{W.headline(v)}[/]")
        for n in W.view_notes(v):
            console.print(f"  [dim]{n}[/]")
        for i, q in enumerate(v["worst"], 1):
            table = Table(title=f"{i}. {q['qid']} {W.short_text(q['query'] or '', 80)!r}: {v['metric']} "
                                f"{q['a']:.3f} → {q['b']:.3f} (−{q['drop']:.3f})", title_justify="left",
                          caption=f"{W.RELEVANT}: {W.relevant_line(q, W.SHOW_RELEVANT)}"
                          if q["relevant"] else None, caption_justify="left")
            table.add_column("#", justify="right")
            table.add_column(f"A: {v['a']}", ratio=1)
            table.add_column(f"B: {v['b']}", ratio=1)
            for r, (ha, hb) in enumerate(zip(W.padded(q["top_a"]), W.padded(q["top_b"])), 1):
                table.add_row(str(r), W.hit_text(ha, 90), W.hit_text(hb, 90))
            console.print(table)


def verdict(v, checkpoint, baseline, verdict_path, console: Console) -> None:
    """The gate's table (every gated metric with its delta, p and status), the worst queries, the verdict line."""
    # the baseline as the verdict records it (repository-relative): the title once showed this machine's path
    table = Table(title=f"gate: {short(checkpoint)} vs {short(R.rel_path(baseline))} (tolerance {v.tolerance}, "
                        f"alpha {v.alpha})", title_justify="left")
    for h in ("set", "retriever", "metric", "baseline", "candidate", "delta", "p", "status"):
        table.add_column(h, justify="right" if h in ("baseline", "candidate", "delta", "p") else "left")
    style = {"worse": "red", "better": "green", "unchanged": ""}
    for r in v.rows:
        table.add_row(r.set, r.retriever, r.metric, f"{r.baseline:.4f}", f"{r.candidate:.4f}",
                      f"{r.delta:+.4f}", f"{r.p_value:.3g}", f"[{style[r.status]}]{r.status}[/]" if style[r.status]
                      else r.status)
    console.print(table)
    worst_views(list(v.worst.values()), console)
    where = Path(verdict_path) if verdict_path else REPO / v.meta["verdict"]
    console.print(f"verdict: {'PASS' if v.passed else 'FAIL'} in {v.seconds:.1f} s (written to {where})")


def search_hits(title: str, ranked: list[tuple[str, float]], parts: dict | None, text_of, console: Console) -> None:
    """`bench search`: rank, verse, score, each part's score and rank (the hybrid), the verse text."""
    table = Table(title=title, title_justify="left", show_lines=False)
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
        table.add_row(str(i), d, f"{s:.3f}", *extra, text_of(d))
    console.print(table)
    if not ranked:
        console.print("no verse matched")


def short(text, width: int = 80) -> str:
    """Text for a title or a one-line message: at most `width` characters, the cut marked."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."
