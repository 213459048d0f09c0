"""Saved reports as pandas DataFrames, for notebooks and for `--csv DIR`.

    from harness import frames
    df = frames.per_query("reports/runs/20261130T013930Z")      # a run folder, report.json, baseline.json, compare.json
    df[df.metric == "ndcg@10"].pivot_table(index="qid", columns="retriever", values="value")

`tidy` gives one row per (set, tag, retriever, metric) mean (tag "all" for the whole set, and one per query tag where
the set has them); `per_query` one row per (set, qid, retriever, metric) with the query's text and tag. Reports store query ids, not texts: the text comes from the committed set, and only when the set's
version is the one the report was made with (an external set, or a set edited since, leaves the text empty rather
than pairing a qid with words it was not asked with).
"""

from pathlib import Path

from corpus.errors import BadInput
from corpus.paths import atomic_write_bytes, atomic_write_text, staged_folder
from corpus.qsets import read_set, set_names
from harness.report import Report

TIDY_COLUMNS = ["set", "tag", "retriever", "metric", "value"]
PER_QUERY_COLUMNS = ["set", "qid", "query", "tag", "retriever", "metric", "value"]
ALL = "all"  # the tag of a set's overall means in `tidy`
UNTAGGED = "untagged"  # the tag of a query that has none in `per_query` (a word, so a CSV reads back the same)


def _pd():
    import pandas  # imported on use: pandas costs ~0.5 s, and `bench --help` imports this module's callers

    return pandas


def load(source) -> Report:
    """A report (or compare table) from a path, or from its JSON as a dict; a Report is returned as it is."""
    if isinstance(source, Report):
        return source
    return Report.from_dict(source) if isinstance(source, dict) else Report.load(source)


def tidy(source):
    """One row per (set, tag, retriever, metric): the report's mean values, overall (tag "all") and, for a set whose
    queries carry tags, for each tag."""
    rep = load(source)
    rows = [(s, ALL, r, m, float(v)) for s, by_r in rep.results.items() for r, ms in by_r.items()
            for m, v in ms.items()]
    rows += [(s, tag, r, m, float(v)) for s, tags in (rep.by_tag or {}).items() for tag, t in tags.items()
             for r, ms in t["results"].items() for m, v in ms.items()]
    return _pd().DataFrame(rows, columns=TIDY_COLUMNS)


def query_texts(rep: Report) -> dict[str, dict[str, str]]:
    """{set: {qid: text}} for every set of the report that is committed in the version the report used."""
    known = set(set_names())
    out = {}
    for s, info in rep.meta.get("sets", {}).items():
        if s in known:
            qs = read_set(s)
            if qs.version == info.get("version"):
                out[s] = qs.queries
    return out


def per_query(source):
    """One row per (set, qid, retriever, metric), with the query text (None where it cannot be known)."""
    rep = load(source)
    if rep.per_query is None:
        raise BadInput("this report has no per-query values (reports written before they were stored)")
    texts, tags = query_texts(rep), {s: rep.tag_of(s) for s in rep.per_query}
    rows = [(s, q, texts.get(s, {}).get(q), tags[s].get(q, UNTAGGED), r, m, float(v))
            for s, by_r in rep.per_query.items() for r, ms in by_r.items()
            for m, values in ms.items() for q, v in values.items()]
    return _pd().DataFrame(rows, columns=PER_QUERY_COLUMNS)


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401  (pandas writes Parquet only through it)
    except ImportError:
        return False
    return True


def write(source, folder) -> list[Path]:
    """summary.csv and per_query.csv (and .parquet of both where pyarrow is installed) under `folder`."""
    import io

    rep = load(source)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{folder}: --csv wants a folder, this is a file")
    written = []
    frames = {"summary": tidy(rep)}
    if rep.per_query is not None:
        frames["per_query"] = per_query(rep)
    with staged_folder(folder) as tmp:  # all of them or none: never summary.csv without per_query.csv
        for name, df in frames.items():
            atomic_write_text(tmp / f"{name}.csv", df.to_csv(index=False))
            written.append(folder / f"{name}.csv")
            if parquet_available():
                buf = io.BytesIO()
                df.to_parquet(buf, index=False)
                atomic_write_bytes(tmp / f"{name}.parquet", buf.getvalue())
                written.append(folder / f"{name}.parquet")
    return written
