"""`bench compare`: saved reports side by side, with paired significance between rows and a bar chart per set."""

import json
from datetime import datetime, timezone
from pathlib import Path

from corpus.errors import BadInput
from harness import metrics as M
from harness.metrics import paired_p
from harness.plots import bars
from corpus.paths import REPO, atomic_write_bytes, atomic_write_text
from harness.report import Report, rel_path, require_same_basis, set_table_rows, tag_table


def load(path) -> Report:
    return Report.load(path)


def label_of(path) -> str:
    p = Path(path)
    if p.is_dir() or p.name == "report.json":
        return (p if p.is_dir() else p.parent).name
    return p.stem


def combine(reports: list[tuple[str, Report]], only: tuple[str, ...] = ()) -> Report:
    """A report whose rows are `retriever [report]`, so the usual table rendering applies.
    `only`: keep just these retrievers (in the reports' order)."""
    if not reports:
        raise BadInput("give at least one report")
    first_path, first = reports[0]
    for path, rep in reports[1:]:
        require_same_basis(first, rep, str(first_path), str(path))
        if not set(first.results) & set(rep.results):
            raise BadInput(f"{path}: no query set in common with {first_path} ({', '.join(rep.results) or 'none'} "
                           f"against {', '.join(first.results) or 'none'}); nothing to compare")
    labels = [label_of(p) for p, _ in reports]
    if len(set(labels)) < len(labels):  # two files with the same name: fall back to their position
        labels = [f"{i + 1}:{lab}" for i, lab in enumerate(labels)]
    def row_name(rep, r):
        dense = rep.meta.get("retrievers", {}).get(r, {}).get("dense")
        return f"{r}+{dense}" if dense else r

    # A row is named by its retriever (hybrid with its dense side); the report's label is added only where two
    # reports hold the same row.
    per_report = [{row_name(rep, r) for r in rep.retrievers()} for _, rep in reports]
    clash = {n for n in set().union(*per_report) if sum(n in names for names in per_report) > 1}
    results, per_query, sets_meta, failed = {}, {}, {}, {}
    for lab, (_, rep) in zip(labels, reports):
        for s, by_r in rep.results.items():
            sets_meta.setdefault(s, rep.set_info(s))
            for r, ms in by_r.items():
                if only and r not in only:
                    continue
                row = row_name(rep, r)
                row = f"{row} [{lab}]" if row in clash else row
                results.setdefault(s, {})[row] = ms
                per_query.setdefault(s, {})[row] = (rep.per_query or {}).get(s, {}).get(r, {})
                if rep.failed(s, r):  # an incomplete row stays marked in the comparison
                    failed.setdefault(s, {})[row] = rep.failed(s, r)
    if not results:
        raise BadInput(f"none of the reports has results for {', '.join(only)}")
    stat_test = first.meta.get("run", {}).get("stat_test", "student")
    significance = {}
    for s, rows in per_query.items():
        sig: dict = {}
        for a in rows:
            for b in rows:
                if a == b:
                    continue
                for m, pa in rows[a].items():
                    pb = rows[b].get(m)
                    if pb and len(set(pa) & set(pb)) >= 2:
                        sig.setdefault(m, {}).setdefault(a, {})[b] = paired_p(pa, pb, stat_test)
        significance[s] = sig
    by_tag = {}
    for s, rows in per_query.items():  # sets whose queries are tagged: every row's metrics by tag, tested per tag
        tags = {q: t for _, rep in reports for q, t in rep.tag_of(s).items()}
        if tags:
            by_tag[s] = M.by_tag(tags, rows, stat_test)
    meta = {"corpus": first.meta["corpus"], "sets": sets_meta,
            "reports": dict(zip(labels, [rel_path(p) for p, _ in reports])), "stat_test": stat_test,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    # per_query: the bars' confidence intervals and the DataFrames (`--csv`) read these
    return Report(meta=meta, results=results, per_query=per_query, significance=significance,
                  by_tag=by_tag or None, failed_queries=failed or None)


def to_markdown(table: Report) -> str:
    meta = table.meta
    lines = ["# versebench comparison", "",
             f"Corpus `{meta['corpus']['id']}`. Reports: " + ", ".join(f"`{k}` = {v}" for k, v in meta["reports"].items()),
             "", f"Superscript letters: the row beats those rows with p < 0.05 (ranx paired {meta['stat_test']} test on "
                 "per-query values). Bold: best in column.", "",
             *(f"**{line}**" for line in table.incomplete_lines()), *([""] if table.incomplete else [])]
    for s in table.results:
        header, rows = set_table_rows(table, s)
        lines += [f"## {s} ({meta['sets'].get(s, {}).get('queries', '?')} queries)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", f"![{s}]({s}.png)", ""] + tag_table(table, s)
    return "\n".join(lines)


def chart(table: Report, set_name: str, metric: str) -> bytes:
    rows = table.results[set_name]
    names = [n for n in rows if metric in rows[n]]
    per_query = [table.values(set_name, n, metric) for n in names]
    return bars(names, [rows[n][metric] for n in names], per_query, f"{set_name}: {metric}", metric)


def default_out() -> Path:
    return REPO / "reports" / "runs" / f"compare-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def write(table: Report, folder: Path, metric: str = "ndcg@10") -> list[Path]:
    known = {m for rows in table.results.values() for ms in rows.values() for m in ms}
    if metric not in known:
        raise BadInput(f"--metric {metric!r} is in none of the reports; they have: {', '.join(sorted(known))}")
    written = [atomic_write_text(folder / "compare.md", to_markdown(table)),
               atomic_write_text(folder / "compare.json", json.dumps(table.to_dict(), indent=1) + "\n")]
    for s in table.results:
        written.append(atomic_write_bytes(folder / f"{s}.png", chart(table, s, metric)))
    return written
