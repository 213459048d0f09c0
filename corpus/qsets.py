"""Query sets: strict TREC/TSV reading and writing, set folders under qrels/, scope filtering and validation.

A set is a folder `qrels/<name>/` holding `queries.tsv` (`qid<TAB>text[<TAB>tag]`: the optional tag is a query
style such as `question` or `episode`, by which reports break their metrics down), `qrels.trec` (`qid 0 docid rel`),
optionally `distractors.trec` (same format), `set.json` (name, scope, split, kind, generated_by) and a README.
Parsing is strict in the manner of ir_measures: the first bad line stops everything with `FILE:LINE: problem`.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from corpus.books import scope_of
from corpus.errors import BadInput, at
from corpus.paths import REPO, atomic_write_text

QRELS_DIR = REPO / "qrels"
MAX_REL = 2


@dataclass(frozen=True)
class QuerySet:
    name: str
    queries: dict  # qid -> text
    qrels: dict  # qid -> {docid: rel}
    distractors: dict | None = None  # qid -> {docid: 1}
    meta: dict = field(default_factory=dict)  # set.json, plus "version" (content hash of the files)
    tags: dict = field(default_factory=dict)  # qid -> style tag, for the queries that carry one

    @property
    def version(self) -> str:
        return self.meta.get("version", "")


def _lines(path: Path):
    """(line number, text) for each line; refuses missing, empty and non-UTF-8 files with the line at fault."""
    path = Path(path)
    if not path.is_file():
        raise at(path, None, "no such file")
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Windows editors) is no text
    if not raw.strip():
        raise at(path, None, "file is empty")
    out = []
    for n, chunk in enumerate(raw.split(b"\n"), 1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise at(path, n, f"not UTF-8 (byte {chunk[e.start]:#04x} at column {e.start + 1})") from None
        out.append((n, line.rstrip("\r")))
    return out


def read_queries(path) -> dict[str, str]:
    return read_tagged_queries(path)[0]


def read_tagged_queries(path) -> tuple[dict[str, str], dict[str, str]]:
    """({qid: text}, {qid: tag}) from `qid<TAB>text[<TAB>tag]` lines; a query without a third column has no tag."""
    queries: dict[str, str] = {}
    tags: dict[str, str] = {}
    for n, line in _lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) not in (2, 3):
            raise at(path, n, f"expected 2 or 3 tab-separated columns (qid, text[, tag]), found {len(cols)}")
        qid, text = cols[0].strip(), cols[1].strip()
        if not qid or any(c.isspace() for c in qid):
            raise at(path, n, f"bad query id {cols[0]!r}")
        if qid in queries:
            raise at(path, n, f"duplicate query id {qid!r}")
        queries[qid] = text
        if len(cols) == 3:
            tag = cols[2].strip()
            if not tag or any(c.isspace() for c in tag):
                raise at(path, n, f"bad tag {cols[2]!r} (one word, such as question or episode)")
            tags[qid] = tag
    return queries, tags


def read_qrels(path) -> dict[str, dict[str, int]]:
    """TREC qrels `qid iter docid rel`; rel an integer 0..2; a (qid, docid) pair at most once."""
    qrels: dict[str, dict[str, int]] = {}
    for n, line in _lines(path):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 4:
            raise at(path, n, f"expected 4 columns (qid iter docid rel), found {len(cols)}")
        qid, _, docid, rel = cols
        try:
            r = int(rel)
        except ValueError:
            raise at(path, n, f"relevance {rel!r} is not an integer") from None
        if not 0 <= r <= MAX_REL:
            raise at(path, n, f"relevance {r} out of range 0..{MAX_REL}")
        if docid in qrels.get(qid, {}):
            raise at(path, n, f"duplicate judgment for {qid} {docid}")
        qrels.setdefault(qid, {})[docid] = r
    return qrels


def read_run(path) -> dict[str, dict[str, float]]:
    """TREC run `qid Q0 docid rank score tag`."""
    return read_run_tagged(path)[0]


def read_run_tagged(path, spaced_ids: bool = False) -> tuple[dict[str, dict[str, float]], set[str]]:
    """(run, the tags it names). `spaced_ids`: a docid may hold spaces ("John 3:16", from a run made elsewhere):
    it is every column between Q0 and the rank."""
    run: dict[str, dict[str, float]] = {}
    tags: set[str] = set()
    for n, line in _lines(path):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6 and not (spaced_ids and len(cols) > 6):
            raise at(path, n, f"expected 6 columns (qid Q0 docid rank score tag), found {len(cols)}")
        qid, docid, score, tag = cols[0], " ".join(cols[2:-3]), cols[-2], cols[-1]
        try:
            s = float(score)
        except ValueError:
            s = float("nan")
        if s != s:  # NaN (or no number at all) has no place in a ranking
            raise at(path, n, f"score {score!r} is not a number")
        if docid in run.get(qid, {}):
            raise at(path, n, f"duplicate document {docid} for query {qid}")
        run.setdefault(qid, {})[docid] = s
        tags.add(tag)
    return run, tags


def format_queries(queries: dict[str, str]) -> str:
    for qid, text in queries.items():
        if "\t" in text or "\n" in text:
            raise BadInput(f"query {qid}: text contains a tab or newline")
    return "".join(f"{qid}\t{text}\n" for qid, text in queries.items())


def format_qrels(qrels: dict[str, dict[str, int]]) -> str:
    return "".join(f"{qid} 0 {docid} {rel}\n" for qid, docs in qrels.items() for docid, rel in docs.items())


def format_run(run: dict[str, dict[str, float]], tag: str) -> str:
    lines = []
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: -kv[1])
        lines += [f"{qid} Q0 {d} {i} {float(s)!r} {tag}\n" for i, (d, s) in enumerate(ranked, 1)]
    return "".join(lines)


def write_queries(path, queries) -> Path:
    return atomic_write_text(path, format_queries(queries))


def write_qrels(path, qrels) -> Path:
    return atomic_write_text(path, format_qrels(qrels))


def write_run(path, run, tag) -> Path:
    return atomic_write_text(path, format_run(run, tag))


# ---- set folders ----------------------------------------------------------------------------------------------------

def set_names(root: Path = QRELS_DIR) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if (p / "set.json").is_file())


def read_set(name: str, root: Path = QRELS_DIR) -> QuerySet:
    """The set as committed, unfiltered. Unknown names are refused with the list of known ones."""
    folder = Path(root) / name
    if not (folder / "set.json").is_file():
        raise BadInput(f"unknown query set {name!r}; known sets: {', '.join(set_names(root))}")
    try:
        meta = json.loads((folder / "set.json").read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise at(folder / "set.json", None, f"not valid JSON ({e})") from None
    files = ["set.json", "queries.tsv", "qrels.trec", "distractors.trec"]
    h = hashlib.sha256()
    for f in files:
        if (folder / f).is_file():
            h.update(f.encode() + b"\0" + (folder / f).read_bytes())
    meta = {**meta, "name": name, "version": h.hexdigest()[:12]}
    dpath = folder / "distractors.trec"
    queries, tags = read_tagged_queries(folder / "queries.tsv")
    return QuerySet(
        name=name,
        queries=queries,
        qrels=read_qrels(folder / "qrels.trec"),
        distractors=read_qrels(dpath) if dpath.is_file() else None,
        meta=meta,
        tags=tags,
    )


def restrict(qs: QuerySet, scope: str) -> QuerySet:
    """Keep judgments on verses inside `scope` and the queries that still have a relevant verse there.

    A set curated over the whole Bible (keyword) is evaluated on the New Testament by dropping its Old Testament
    queries, rather than counting them as failures no New Testament retriever could avoid.
    """
    if scope == "all":
        return qs

    def keep(judged):
        return {q: {d: r for d, r in docs.items() if scope_of(d) == scope} for q, docs in judged.items()}

    qrels = keep(qs.qrels)
    qids = [q for q in qs.queries if any(r > 0 for r in qrels.get(q, {}).values())]
    dis = keep(qs.distractors) if qs.distractors is not None else None
    return QuerySet(
        name=qs.name,
        queries={q: qs.queries[q] for q in qids},
        qrels={q: qrels[q] for q in qids},
        distractors={q: dis.get(q, {}) for q in qids} if dis is not None else None,
        meta={**qs.meta, "scope_evaluated": scope, "queries_dropped_by_scope": len(qs.queries) - len(qids)},
        tags={q: qs.tags[q] for q in qids if q in qs.tags},
    )


def load_set(name: str, scope: str, root: Path = QRELS_DIR) -> QuerySet:
    return restrict(read_set(name, root), scope)


def external_set(queries_path, qrels_path, distractors_path=None) -> QuerySet:
    """A set from files elsewhere (`bench run --queries F --qrels F`); its ids must line up."""
    queries, tags = read_tagged_queries(queries_path)
    qrels = read_qrels(qrels_path)
    check_ids(queries, qrels, queries_path, qrels_path)
    h = hashlib.sha256(Path(queries_path).read_bytes() + b"\0" + Path(qrels_path).read_bytes()).hexdigest()[:12]
    return QuerySet(
        name=Path(queries_path).stem if Path(queries_path).stem != "queries" else Path(queries_path).parent.name,
        queries=queries,
        qrels=qrels,
        distractors=read_qrels(distractors_path) if distractors_path else None,
        meta={"scope": None, "split": None, "kind": "external", "version": h,
              "queries_file": str(queries_path), "qrels_file": str(qrels_path)},
        tags=tags,
    )


def check_ids(queries, qrels, queries_path, qrels_path) -> None:
    """Every judged query exists and every query has a relevant judgment; otherwise nothing can be evaluated."""
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        raise at(qrels_path, None, f"{len(unknown)} judged query ids are not in {queries_path} "
                                   f"(first: {unknown[0]!r})")
    unjudged = [q for q in queries if not any(r > 0 for r in qrels.get(q, {}).values())]
    if unjudged:
        raise at(queries_path, None, f"{len(unjudged)} queries have no relevant judgment in {qrels_path} "
                                     f"(first: {unjudged[0]!r})")


def validate_set(name: str, corpus_ids_by_scope, root: Path = QRELS_DIR) -> dict:
    """All checks for one committed set; returns its counts. `corpus_ids_by_scope(scope)` -> set of docids."""
    folder = Path(root) / name
    qs = read_set(name, root)
    meta = qs.meta
    for key in ("scope", "kind"):
        if key not in meta:
            raise at(folder / "set.json", None, f"missing key {key!r}")
    if meta["scope"] not in ("nt", "ot", "all"):
        raise at(folder / "set.json", None, f"scope {meta['scope']!r} is not nt, ot or all")
    if not (folder / "README.md").is_file():
        raise at(folder / "README.md", None, "every set needs a README with its provenance")
    check_ids(qs.queries, qs.qrels, folder / "queries.tsv", folder / "qrels.trec")
    known = corpus_ids_by_scope(meta["scope"])
    for fname, judged in (("qrels.trec", qs.qrels), ("distractors.trec", qs.distractors or {})):
        lines = {}
        for n, line in _lines(folder / fname) if judged else []:
            cols = line.split()
            if cols:
                lines.setdefault(cols[2], n)
        for docs in judged.values():
            for d in docs:
                if d not in known:
                    raise at(folder / fname, lines.get(d), f"docid {d!r} is not a verse of the "
                                                           f"{meta['scope']} corpus")
    if qs.distractors is not None:
        for q, docs in qs.distractors.items():
            if q not in qs.queries:
                raise at(folder / "distractors.trec", None, f"query id {q!r} is not in queries.tsv")
            both = [d for d in docs if qs.qrels.get(q, {}).get(d, 0) > 0]
            if both:
                raise at(folder / "distractors.trec", None, f"{q}: {both[0]} is both relevant and a distractor")
    return stats(qs)


def stats(qs: QuerySet) -> dict:
    rel = [sum(1 for r in docs.values() if r > 0) for docs in qs.qrels.values()]
    out = {
        "queries": len(qs.queries),
        "judgments": sum(len(d) for d in qs.qrels.values()),
        "relevant": sum(rel),
        "relevant_per_query": round(sum(rel) / max(len(rel), 1), 2),
        "scope": qs.meta.get("scope"),
        "split": qs.meta.get("split"),
        "kind": qs.meta.get("kind"),
        "version": qs.version,
    }
    if qs.distractors is not None:
        out["distractors"] = sum(len(d) for d in qs.distractors.values())
    return out
