"""What got worse, and why: the queries whose metric fell most from side A to side B, with what each side retrieved.

A side is one row of a saved report (a retriever's results). Per-query values come from the report; the rankings come
from the TREC run files that `bench run` writes beside it (`runs/<set>/<retriever>.trec`). A report without them (the
gate's baseline.json) still shows its values and where its relevant verses are unknown, never a guessed ranking.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from corpus.bible import load_corpus
from corpus.errors import BadInput
from corpus.paths import REPO, atomic_write_bytes, atomic_write_text
from corpus.qsets import load_set, read_run, set_names
from harness.compare import label_of
from harness.metrics import LOWER_IS_BETTER
from harness.plots import scatter
from retrievers.base import config_dict, make, strict_order

TOP = 3
RELEVANT = "relevant (rank under A, B; — = not in the run, ? = unknown)"
SHOW_RELEVANT = 6  # relevant verses listed per query on a terminal; the JSON keeps them all


@dataclass(frozen=True)
class Side:
    label: str
    report: dict
    retriever: str
    folder: Path | None = None  # holds runs/<set>/<retriever>.trec, when the report came from a run folder
    rankings: dict | None = None  # {set: {qid: [docid, ...]}} searched again where the report has no run files


def run_folder(path) -> Path | None:
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return folder if (folder / "runs").is_dir() else None


def _rows(rep: dict, only) -> list[str]:
    present = list(dict.fromkeys(r for by_r in rep["results"].values() for r in by_r))
    return [r for r in only if r in present] if only else present


def pairs(reports: list[tuple[str, dict]], only=()) -> list[tuple[Side, Side]]:
    """(A, B) pairs: the same retriever in two reports, a report's only row against the other's, or two rows of one
    report (in `-r` order when given)."""
    if len(reports) == 1:
        (path, rep), = reports
        rows = _rows(rep, only)
        if len(rows) != 2:
            raise BadInput(f"--worst compares two rows; {path} has {len(rows)} ({', '.join(rows)}): pick two with -r")
        a, b = (Side(f"{r} [{label_of(path)}]", rep, r, run_folder(path)) for r in rows)
        return [(a, b)]
    if len(reports) != 2:
        raise BadInput(f"--worst compares two sides; give two reports (or one report and two -r), not {len(reports)}")
    (pa, ra), (pb, rb) = reports
    la, lb = label_of(pa), label_of(pb)
    if la == lb:
        la, lb = f"1:{la}", f"2:{lb}"
    rows_a, rows_b = _rows(ra, only), _rows(rb, only)
    common = [r for r in rows_a if r in rows_b]
    if common:
        matched = [(r, r) for r in common]
    elif len(rows_a) == 1 and len(rows_b) == 1:
        matched = [(rows_a[0], rows_b[0])]
    else:
        raise BadInput(f"--worst: {pa} ({', '.join(rows_a)}) and {pb} ({', '.join(rows_b)}) share no retriever; "
                       "pick one row of each with -r")
    return [(Side(f"{x} [{la}]", ra, x, run_folder(pa)), Side(f"{y} [{lb}]", rb, y, run_folder(pb)))
            for x, y in matched]


def values(side: Side, set_name: str, metric: str) -> dict | None:
    """{qid: value} of the side's metric on a set, or None when the report did not keep it."""
    return side.report.get("per_query", {}).get(set_name, {}).get(side.retriever, {}).get(metric)


def ranking(side: Side, set_name: str) -> list[str] | None:
    """The side's docids for each query, best first, from its TREC run file; None when there is no run file."""
    if side.rankings is not None and set_name in side.rankings:
        return side.rankings[set_name]
    if side.folder is None:
        return None
    path = side.folder / "runs" / set_name / f"{side.retriever}.trec"
    if not path.is_file():
        return None
    return {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in read_run(path).items()}


def drops(a: dict, b: dict, metric: str) -> list[tuple[str, float, float, float]]:
    """(qid, value under A, value under B, how much worse B is), worst first, only queries that got worse."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    out = [(q, a[q], b[q], sign * (a[q] - b[q])) for q in a if q in b]
    return sorted((d for d in out if d[3] > 0), key=lambda d: (-d[3], d[0]))


def _judged(rep: dict, set_name: str):
    """The committed set as the report judged it, or None (external set, or changed since the report)."""
    if set_name not in set_names():
        return None
    qs = load_set(set_name, rep["meta"]["corpus"]["scope"])
    return qs if qs.version == rep["meta"].get("sets", {}).get(set_name, {}).get("version") else None


def _top(ranked, qid, qrels, distractors, corpus) -> list[dict] | None:
    if ranked is None:
        return None
    return [{"rank": i, "docid": d, "rel": qrels.get(d, 0), "distractor": d in distractors, "text": corpus.text(d)}
            for i, d in enumerate(ranked.get(qid, [])[:TOP], 1)]


def _found_first(judged, pos_a, pos_b, corpus):
    """Most relevant first, then the verses either side ranked highest, then canonical order."""
    d, rel = judged
    best = min([p.get(d, math.inf) for p in (pos_a, pos_b) if p is not None] + [math.inf])
    return -rel, best, corpus.position.get(d, 0)


def view(a: Side, b: Side, set_name: str, metric: str, n: int, *, home: Path) -> dict:
    """The n queries of one set that fell most from A to B on `metric`, each with its relevant verses (and their
    ranks on both sides) and each side's top 3; the verse texts come from the corpus cached under `home`."""
    pa, pb = values(a, set_name, metric), values(b, set_name, metric)
    if pa is None or pb is None:
        raise BadInput(f"{set_name}: no per-query {metric} for {a.label if pa is None else b.label}")
    corpus_meta = b.report["meta"]["corpus"]
    corpus = load_corpus(corpus_meta["translation"], corpus_meta["scope"], home=home)
    qs = _judged(b.report, set_name)
    rank_a, rank_b = ranking(a, set_name), ranking(b, set_name)
    fell = drops(pa, pb, metric)
    queries = []
    for qid, va, vb, drop in fell[:n]:
        qrels = qs.qrels.get(qid, {}) if qs else {}
        distractors = (qs.distractors or {}).get(qid, {}) if qs else {}
        pos_a = {d: i for i, d in enumerate(rank_a.get(qid, []), 1)} if rank_a is not None else None
        pos_b = {d: i for i, d in enumerate(rank_b.get(qid, []), 1)} if rank_b is not None else None
        relevant = [{"docid": d, "rel": r, "text": corpus.text(d),
                     "rank_a": pos_a.get(d) if pos_a is not None else None,
                     "rank_b": pos_b.get(d) if pos_b is not None else None}
                    for d, r in sorted(qrels.items(), key=lambda kv: _found_first(kv, pos_a, pos_b, corpus)) if r > 0]
        queries.append({"qid": qid, "query": qs.queries.get(qid) if qs else None, "a": va, "b": vb, "drop": drop,
                         "relevant": relevant, "top_a": _top(rank_a, qid, qrels, distractors, corpus),
                         "top_b": _top(rank_b, qid, qrels, distractors, corpus)})
    return {"set": set_name, "metric": metric, "a": a.label, "b": b.label, "queries_worse": len(fell),
            "queries": len(set(pa) & set(pb)), "runs_a": rank_a is not None, "runs_b": rank_b is not None,
            "searched_a": set_name in (a.rankings or {}), "searched_b": set_name in (b.rankings or {}),
            "judged": qs is not None, "worst": queries}


def views(side_pairs, metric: str, n: int, *, home: Path) -> list[dict]:
    out = [view(a, b, s, metric, n, home=home) for a, b in side_pairs for s in common_sets(a, b)]
    if not out:
        raise BadInput("--worst: the two sides have no set in common")
    return out


# ---- rendering --------------------------------------------------------------------------------------------------------

def short_text(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def _rank(r, known: bool = True) -> str:
    if not known:
        return "?"
    return "—" if r is None else f"#{r}"


def relevant_line(q: dict, limit: int | None) -> str:
    shown = q["relevant"] if limit is None else q["relevant"][:limit]
    known_a, known_b = q["top_a"] is not None, q["top_b"] is not None
    parts = [f"{r['docid']} (A {_rank(r['rank_a'], known_a)}, B {_rank(r['rank_b'], known_b)})" for r in shown]
    more = len(q["relevant"]) - len(shown)
    return ", ".join(parts) + (f", +{more} more" if more else "")


def hit_text(h: dict | None, width: int) -> str:
    if h is None:
        return ""
    mark = " ✓" if h["rel"] > 0 else (" ✗ distractor" if h["distractor"] else "")
    return f"{h['docid']}{mark}: {short_text(h['text'], width)}"


def headline(v: dict) -> str:
    return (f"{v['set']} · {v['metric']} · A = {v['a']} → B = {v['b']}: {v['queries_worse']} of {v['queries']} "
            f"queries worse under B" + (f", the {len(v['worst'])} that fell most" if v["worst"] else ""))


def view_notes(v: dict) -> list[str]:
    notes = []
    for side in ("a", "b"):
        if not v[f"runs_{side}"]:
            notes.append(f"{side.upper()} has no run files beside its report: its top {TOP} and ranks are unknown (?)")
        elif v.get(f"searched_{side}"):
            notes.append(f"{side.upper()}'s rankings: searched again with its recorded checkpoint and config (the "
                         f"report keeps no run files)")
    if not v["judged"]:
        notes.append(f"{v['set']} is not a committed set in the report's version: no query texts or judgments")
    return notes


def padded(top: list | None) -> list:
    return (top or []) + [None] * (TOP - len(top or []))


def to_markdown(vs: list[dict], level: int = 1) -> str:
    h = "#" * level
    lines = [f"{h} What got worse", ""]
    for v in vs:
        lines += [f"{h}# {headline(v)}", ""] + [f"- {n}" for n in view_notes(v)] + ([""] if view_notes(v) else [])
        for i, q in enumerate(v["worst"], 1):
            lines += [f"{h}## {i}. {q['qid']} {q['query']!r}: {q['a']:.3f} → {q['b']:.3f} (−{q['drop']:.3f})", ""]
            if q["relevant"]:
                lines += [f"{RELEVANT[0].upper()}{RELEVANT[1:]}: {relevant_line(q, None)}", ""]
            lines += ["| rank | A | B |", "|---|---|---|"]
            for r, (ha, hb) in enumerate(zip(padded(q["top_a"]), padded(q["top_b"])), 1):
                lines.append(f"| {r} | {hit_text(ha, 160)} | {hit_text(hb, 160)} |".replace("\n", " "))
            lines.append("")
    return "\n".join(lines)


# ---- files ------------------------------------------------------------------------------------------------------------

def common_sets(a: Side, b: Side) -> list[str]:
    return [s for s in a.report["results"]
            if a.retriever in a.report["results"][s] and b.retriever in b.report["results"].get(s, {})]


def scatter_pngs(side_pairs, metric: str, folder) -> list[Path]:
    """One PNG per (pair, set): each query's metric under A against under B."""
    written = []
    for a, b in side_pairs:
        slug = a.retriever if a.retriever == b.retriever else f"{a.retriever}-vs-{b.retriever}"
        for s in common_sets(a, b):
            pa, pb = values(a, s, metric), values(b, s, metric)
            if pa and pb:
                png = scatter(pa, pb, a.label, b.label, s, metric)
                written.append(atomic_write_bytes(Path(folder) / f"scatter-{s}-{slug}.png", png))
    return written


def write(vs: list[dict], folder) -> list[Path]:
    return [atomic_write_text(Path(folder) / "worst.md", to_markdown(vs)),
            atomic_write_text(Path(folder) / "worst.json", json.dumps(vs, indent=1, ensure_ascii=False) + "\n")]


def for_compare(reports: list[tuple[str, dict]], only, metric: str, n: int | None, folder, *,
                home: Path) -> tuple[list, list]:
    """`bench compare`'s extras: the per-query scatter PNGs wherever the reports pair up, and with `--worst N` the
    N queries that fell most. Returns (views, files written)."""
    try:
        side_pairs = pairs(reports, only)
    except BadInput:
        if n:
            raise
        return [], []  # many rows side by side: no A and B to plot against each other, and none was asked for
    written = scatter_pngs(side_pairs, metric, folder)
    vs = views(side_pairs, metric, n, home=home) if n else []
    return vs, written + (write(vs, folder) if vs else [])


# ---- the gate ---------------------------------------------------------------------------------------------------------

def search_again(rep: dict, retriever: str, set_name: str, qids, *, home: Path) -> dict | None:
    """The report's retriever rebuilt from its recorded options and asked these queries again: {qid: [docid, ...]}.

    A baseline keeps per-query values but no run files. The retrievers are deterministic, so the rebuilt one ranks as
    the recorded one did, provided it is the same one: same corpus, same config (fusion weights included) and the
    same checkpoint sha256. Anything else returns None, and its rankings show as unknown.
    """
    from encoder import checkpoint as ckpt  # imports torch (~2 s): only the gate, on failure, needs it here

    meta = rep["meta"]
    options = dict(meta.get("run", {}).get("options", {}).get(retriever, {}))
    recorded = dict(meta.get("retrievers", {}).get(retriever) or {})
    want_sha = meta.get("checkpoint_sha256", {}).get("encoder")
    if "checkpoint" in options:
        path = Path(options["checkpoint"])
        options["checkpoint"] = str(path if path.is_absolute() else REPO / path)
        if not (path := Path(options["checkpoint"])).joinpath("config.json").is_file() or ckpt.sha256(path) != want_sha:
            return None
    corpus = load_corpus(meta["corpus"]["translation"], meta["corpus"]["scope"], home=home)
    qs = load_set(set_name, meta["corpus"]["scope"])
    if corpus.corpus_id != meta["corpus"]["id"] or not recorded:
        return None
    found = make(retriever, corpus, home=home, **options)
    if {k: v for k, v in config_dict(found).items() if k != "checkpoint"} != \
            {k: v for k, v in recorded.items() if k != "checkpoint"}:
        return None
    run = strict_order(found.search({q: qs.queries[q] for q in qids}, meta["run"]["k"]), corpus.position)
    return {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in run.items()}


def for_gate(candidate: dict, folder, baseline: dict, failed, n: int = 5, *, home: Path) -> dict:
    """{"set/retriever/metric": view} for each failing metric: the n queries that fell most from the baseline."""
    out = {}
    for name in failed:
        s, r, m = name.split("/")
        fell = drops(baseline["per_query"][s][r][m], candidate["per_query"][s][r][m], m)[:n]
        again = search_again(baseline, r, s, [q for q, *_ in fell], home=home) if fell else None
        a = Side("baseline", baseline, r, None, {s: again} if again is not None else None)
        b = Side("candidate", candidate, r, Path(folder))
        out[name] = view(a, b, s, m, n, home=home)
    return out


def gate_summary(verdict: dict) -> str:
    """A Markdown verdict for a CI job summary: the decision, every gated number, and on failure what fell."""
    v = verdict
    head = "PASS" if v["passed"] else "FAIL"
    lines = [f"# versebench gate: {head}", "",
             f"Candidate `{v['candidate']}` (sha256 `{v['candidate_sha256'][:12]}`) against `{v['baseline']}` "
             f"(tolerance {v['tolerance']}, alpha {v['alpha']}, paired {v['stat_test']} test), {v['seconds']} s.", ""]
    if v["failed"]:
        lines += ["Significant drops: " + ", ".join(f"`{f}`" for f in v["failed"]), ""]
    lines += ["| set | retriever | metric | baseline | candidate | delta | p | status |", "|---" * 8 + "|"]
    for r in v["rows"]:
        status = f"**{r['status']}**" if r["status"] == "worse" else r["status"]
        lines.append(f"| {r['set']} | {r['retriever']} | {r['metric']} | {r['baseline']:.4f} | {r['candidate']:.4f} | "
                     f"{r['delta']:+.4f} | {r['p_value']:.3g} | {status} |")
    worst = v.get("worst") or {}
    if worst:
        lines += ["", to_markdown(list(worst.values()), level=2)]
    return "\n".join(lines) + "\n"
