"""Generated query sets: `thematic-dev`/`thematic-test` from Nave's Topical Bible, and `keyword-xlate`.

Both builders are pure functions of the installed sources (Nave's module, the cached corpora) and fixed seeds: the
same inputs give byte-identical files. They return {relative path: text}; `build()` writes them under a root
folder (default `qrels/`), each file atomically.
"""

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

from corpus.books import NT_BOOKS, scope_of
from corpus.errors import BadInput, at
from corpus.paths import atomic_write_text
from corpus.qsets import QRELS_DIR, format_qrels, format_queries

BUILDERS = ("thematic", "keyword-xlate")

# ---- thematic (Nave's) ----------------------------------------------------------------------------------------------

DEV_PERCENT = 30
MIN_VERSES, MAX_VERSES = 5, 40  # WEB New Testament verses judged relevant per query
PER_TOPIC_CAP = 25  # JESUS, THE CHRIST alone has 228 eligible lines; a cap keeps one topic from being the set
MAX_TEST, MAX_DEV = 1500, 600
MAX_QUERY_WORDS = 16  # longer labels are narrative summaries ("Paul is taken to Rome in the custody of ..."), not queries
TOPICS_FILE = "thematic-topics.json"
# Nave's headings that say how a list is arranged, not what it is about.
_BOILERPLATE = ("general scriptures concerning", "unclassified scriptures relating to", "miscellaneous facts concerning",
                "miscellany of minor sub-topics", "conspicuous instances of", "instances of")


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16)


def split_unit(key: str) -> str:
    """The split is decided per head word of the key, so `CONVICTION OF SIN` and `CONVICTION, OF SIN`, or `FAITH`
    and `FAITH IN CHRIST`, land on the same side and training on dev-side topics cannot see a test topic's twin."""
    return re.split(r"[^A-Z0-9]+", key.upper().strip())[0] or key


def split_of(key: str) -> str:
    """'dev' for about DEV_PERCENT % of head words (by sha256), else 'test'."""
    return "dev" if _h(split_unit(key)) % 100 < DEV_PERCENT else "test"


def topic_slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def clean_label(text: str) -> str:
    """A key or label as query words: `See ...` cross references and (parentheticals) dropped, the boilerplate
    headings dropped, lowercased, punctuation other than inner apostrophes and hyphens turned into spaces."""
    text = re.split(r"\bSee\b", text)[0]
    text = re.sub(r"'\s+s\b", "'s", text.replace("\u2019", "'"), flags=re.I).lower()
    text = re.sub(r"\([^)]*\)?", " ", text)
    text = re.sub(r"[;,:]\s*with\s*$", " ", text.strip())
    for phrase in _BOILERPLATE:
        text = re.sub(rf"\b{re.escape(phrase)}\b", " ", text)
    text = re.sub(r"[^a-z0-9'\- ]+", " ", text)
    words = [w.strip("'-") for w in text.split()]
    return " ".join(w for w in words if w)


def query_text(key: str, path) -> str:
    """Topic words then the labels from the head line down, each cleaned; an immediately repeated word once."""
    words = " ".join(clean_label(p) for p in (key, *path)).split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


def thematic_files(*, home: Path, entries=None, web_nt=None, kjv_ids=None) -> tuple[dict[str, str], dict]:
    """The thematic-dev and thematic-test folders and the topics file, plus a summary. Corpora not given are loaded
    from the cache root `home`."""
    from corpus import naves
    from corpus.bible import load_corpus

    web_nt = web_nt if web_nt is not None else load_corpus("web", "nt", home=home)
    kjv_ids = frozenset(kjv_ids if kjv_ids is not None else load_corpus("kjv", "all", home=home).ids)
    topics, parse = naves.topics(entries)
    verses = naves.VerseList.of(web_nt.ids)
    slugs = Counter(topic_slug(t.key) for t in topics)
    expand_counts: Counter = Counter()
    skipped: Counter = Counter()
    seen_text: set[str] = set()
    per_topic: dict[str, list[dict]] = {}
    for t in topics:
        slug = topic_slug(t.key) if slugs[topic_slug(t.key)] == 1 else f"{topic_slug(t.key)}-{_h(t.key) % 16**6:06x}"
        for s in t.subtopics:
            if not s.refs and not s.chapter_refs:
                continue
            got, c = naves.expand(s.refs, verses, kjv_ids)
            expand_counts += c
            text = query_text(t.key, s.path)
            why = _skip_reason(s, got, c, text, seen_text)
            if why:
                skipped[why] += 1
                continue
            seen_text.add(text)
            order = sorted(got, key=web_nt.position.__getitem__)
            per_topic.setdefault(t.key, []).append(
                {"qid": f"nave-{slug}-{s.ordinal}", "key": t.key, "text": text, "docs": order, "path": s.path})
    eligible = sum(len(v) for v in per_topic.values())
    chosen = {"dev": [], "test": []}
    for key, qs in per_topic.items():
        keep = sorted(qs, key=lambda q: _h(q["qid"]))[:PER_TOPIC_CAP]
        chosen[split_of(key)] += keep
    caps = {"dev": MAX_DEV, "test": MAX_TEST}
    key_order = {t.key: i for i, t in enumerate(topics)}
    for split in chosen:
        chosen[split] = sorted(sorted(chosen[split], key=lambda q: _h(q["qid"]))[:caps[split]],
                               key=lambda q: (key_order[q["key"]], int(q["qid"].rsplit("-", 1)[1])))
    summary = {
        "source": f"Nave's Topical Bible, Debian package sword-dict-naves {naves.package_version()}",
        "corpus": web_nt.corpus_id,
        "parse": parse,
        "nt_expansion": dict(sorted(expand_counts.items())),
        "lines_skipped": dict(sorted(skipped.items())),
        "eligible_queries": eligible,
        "eligible_topics": len(per_topic),
        "queries": {s: len(q) for s, q in chosen.items()},
        "topics": {s: len({q["key"] for q in qs}) for s, qs in chosen.items()},
        "relevant_per_query": {s: round(sum(len(q["docs"]) for q in qs) / max(len(qs), 1), 2)
                               for s, qs in chosen.items()},
        "unparsed_refs": sorted({(t.key, r) for t in topics for s in t.subtopics for r in s.unparsed}),
    }
    files = _thematic_set_files(chosen, summary)
    summary["unparsed_refs"] = len(summary["unparsed_refs"])
    return files, summary


def _skip_reason(s, got: list, c: Counter, text: str, seen_text: set) -> str | None:
    """Why a Nave's subtopic line makes no query (None: it makes one)."""
    nt_chapters = [r for r in s.chapter_refs if scope_of(r) == "nt"]
    if not got and not nt_chapters:
        return "no_nt_verse"
    if nt_chapters:
        return "nt_chapter_only_ref"  # whole chapters relevant but unjudged: incomplete
    if s.unparsed:
        return "unparsed_ref"
    if c["no_such_verse"]:
        return "ref_to_missing_kjv_verse"
    if len(got) < MIN_VERSES:
        return f"fewer_than_{MIN_VERSES}_nt_verses"
    if len(got) > MAX_VERSES:
        return f"more_than_{MAX_VERSES}_nt_verses"
    if not text:
        return "empty_text"
    if len(text.split()) > MAX_QUERY_WORDS:
        return f"more_than_{MAX_QUERY_WORDS}_query_words"
    if text in seen_text:
        return "duplicate_text"
    return None


def _thematic_set_files(chosen: dict, summary: dict) -> dict[str, str]:
    files: dict[str, str] = {}
    for split, qs in chosen.items():
        name = f"thematic-{split}"
        files[f"{name}/queries.tsv"] = format_queries({q["qid"]: q["text"] for q in qs})
        files[f"{name}/qrels.trec"] = format_qrels({q["qid"]: {d: 1 for d in q["docs"]} for q in qs})
        files[f"{name}/set.json"] = _json({"name": name, "scope": "nt", "split": split, "kind": "thematic",
                                           "generated_by": "bench qrels build thematic"})
        files[f"{name}/README.md"] = _thematic_readme(name, summary, qs)
    files[TOPICS_FILE] = _json({
        "rule": f"split_of(key): sha256(head word of the Nave key) % 100 < {DEV_PERCENT} -> dev, else test "
                "(corpus.qrels_build.split_of)",
        "dev": sorted({q["key"] for q in chosen["dev"]}),
        "test": sorted({q["key"] for q in chosen["test"]}),
        "queries": {q["qid"]: q["key"] for split in ("dev", "test") for q in chosen[split]},
    })
    return files


def _json(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _thematic_readme(name: str, s: dict, qs: list[dict]) -> str:
    split = name.rsplit("-", 1)[1]
    parse = "\n".join(f"| {k} | {v} |" for k, v in s["parse"].items())
    nt = "\n".join(f"| {k} | {v} |" for k, v in s["nt_expansion"].items())
    skipped = "\n".join(f"| {k} | {v} |" for k, v in s["lines_skipped"].items())
    unparsed = "\n".join(f"- {k}: `{r}`" for k, r in s["unparsed_refs"])
    examples = "\n".join(f"| `{q['qid']}` | {q['text']} | {' / '.join(q['path'])} | {len(q['docs'])} |"
                         for q in sorted(qs, key=lambda q: _h("example" + q["qid"]))[:8])
    return f"""# {name}

Thematic queries generated from **Nave's Topical Bible** (Orville J. Nave, public domain), as packaged by Debian
(`{s['source'].split('Debian package ')[1]}`, SWORD module `Nave`, read by `corpus/naves.py`).

This is the **{split}** split: {s['queries'][split]} queries from {s['topics'][split]} topics, {s['relevant_per_query'][split]} relevant verses per query on average, judged against the World English Bible New
Testament, corpus `{s['corpus']}` (KJV verse numbering, which Nave uses). Rebuild with
`bench qrels build thematic` (deterministic; the test suite checks it).

## How it was built
- Each line of an entry (a `→` heading, a numbered sense, a list item, or a line indented under an item) is a
  subtopic. Its verse references are expanded over the WEB NT verse list; ranges take every verse between their ends,
  across chapters too. All listed verses have relevance 1 (Nave grades nothing).
- A line becomes a query when it has {MIN_VERSES} to {MAX_VERSES} WEB NT verses, and is left out when its judgments
  would be incomplete: a chapter-only reference into the NT (never expanded to the whole chapter), a reference that
  could not be parsed, or a reference to a verse that does not exist in the KJV (e.g. `Col.8.16`, Nave's slip for
  2 Cor 8:16). Verses the WEB omits (e.g. Acts 8:37) are simply not judged.
- Query text: the topic key, then the labels from the heading down to the line, each cleaned: `See ...` cross
  references cut off, parentheticals dropped, the arrangement headings ("{'", "'.join(_BOILERPLATE)}")
  dropped, lowercased, punctuation other than inner apostrophes/hyphens removed, an immediately repeated word kept once.
  Example: FAITH / INSTANCES OF / "Noah, in building the ark" -> "faith noah in building the ark". Identical texts
  are kept once (the first in key order); texts over {MAX_QUERY_WORDS} words (Nave's narrative summaries, such as
  Paul's voyage to Rome) are left out.
- Query ids: `nave-<topic slug>-<n>`, n the line's position in the entry (stable when other lines are filtered).
- Split by topic: a topic goes to dev when sha256 of its key's head word (the key up to its first non-alphanumeric
  character) mod 100 is below {DEV_PERCENT}, else to test; so all lines of a topic, and topics sharing a head word
  (FAITH, FAITH IN CHRIST), are on one side. `qrels/{TOPICS_FILE}` lists the topics of each split and the topic of
  every query; `corpus.qrels_build.test_topic_keys()` reads it (train only on topics outside it).
- Caps, chosen by sha256 of the query id: at most {PER_TOPIC_CAP} queries per topic, then at most {MAX_DEV} dev and
  {MAX_TEST} test queries. {s['eligible_queries']} lines from {s['eligible_topics']} topics were eligible.

## Counts
| split | queries | topics |
|---|---|---|
| dev | {s['queries']['dev']} | {s['topics']['dev']} |
| test | {s['queries']['test']} | {s['topics']['test']} |

Parse of the whole module (all 66 books):

| count | value |
|---|---|
{parse}

`unparsed_name_misparse`: the module tagged a person's name and the next book number as a chapter reference
("Micah, 2 Ch 34:20" became `<ref osisRef="Mic.2">Micah 2</ref>Ch 34:20`). `one_chapter_recovered`: every reference
into Obad, Phlm, 2John, 3John, Jude is tagged `Jude.1.1` with the verses printed after the tag (`Jude 1</ref>:8-13`);
the printed verses were taken. `chapter_only`: references to a whole chapter, never expanded.

Expansion of subtopic references over the WEB NT (per reference):

| count | value |
|---|---|
{nt}

Lines with references that did not become queries:

| reason | lines |
|---|---|
{skipped}

References that could not be parsed (topic: osisRef as tagged):

{unparsed}

## Examples
| qid | query | Nave path | relevant |
|---|---|---|---|
{examples}
"""


def test_topic_keys(root: Path = QRELS_DIR) -> frozenset[str]:
    """Nave topic keys with a query in thematic-test: anything trained on Nave must leave these out."""
    path = Path(root) / TOPICS_FILE
    if not path.is_file():
        raise at(path, None, "no such file (run `bench qrels build thematic`)")
    return frozenset(json.loads(path.read_text("utf-8"))["test"])


test_topic_keys.__test__ = False  # not a pytest test, despite the name


# ---- keyword-xlate ------------------------------------------------------------------------------------------------

XLATE_SEED = 0
XLATE_TARGET = 400  # verses, allocated to books in proportion to their size
XLATE_MIN_PER_BOOK = 4
XLATE_TRANSLATIONS = ("kjv", "asv", "ylt")
SPAN_MIN, SPAN_MAX = 5, 9
SPAN_TRIES = 8
_STOP = frozenset("""
a about after again against all also am an and any are as at be because been before being but by can could did do
does for from had has have he her here him his how i if in into is it its let may me more most my no nor not now o
of on one or our out over said say saith shall she should so some such than that the their them then there these
they this those through thus to too up upon us was we were what when where which while who whom why will with would
yet you your unto thee thou thy thine ye hath doth art shalt wilt hast dost didst hadst verily lo behold also even
""".split())


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower().replace("\u2019", "'")).split())


def _span(tokens: list[str], rng: random.Random) -> str:
    n = rng.randint(SPAN_MIN, min(SPAN_MAX, len(tokens)))
    start = rng.randint(0, len(tokens) - n)
    return re.sub(r"^\W+|\W+$", "", " ".join(tokens[start:start + n]))


def keyword_xlate_files(*, home: Path, corpora=None) -> tuple[dict[str, str], dict]:
    """Spans of KJV/ASV/YLT verses as queries for the WEB verse. `corpora`: {name: Corpus} for web and the three;
    loaded from the cache root `home` when not given."""
    from corpus.bible import load_corpus

    corpora = corpora or {t: load_corpus(t, "nt", home=home) for t in ("web", *XLATE_TRANSLATIONS)}
    web = corpora["web"]
    # Every translation's verses as one " w w w \n w w \n" string: a span occurring twice is not specific to a verse.
    haystack = {t: "\n".join(f" {_norm(x)} " for x in corpora[t].texts) for t in XLATE_TRANSLATIONS}
    rng = random.Random(XLATE_SEED)
    by_book: dict[str, list[str]] = {}
    for docid in web.ids:
        by_book.setdefault(docid.split(".", 1)[0], []).append(docid)
    total = len(web.ids)
    chosen: list[dict] = []
    skipped: Counter = Counter()
    for book in NT_BOOKS:
        ids = list(by_book.get(book, []))
        quota = min(len(ids), max(XLATE_MIN_PER_BOOK, round(XLATE_TARGET * len(ids) / total)))
        rng.shuffle(ids)
        got = 0
        for docid in ids:
            if got == quota:
                break
            t = XLATE_TRANSLATIONS[len(chosen) % len(XLATE_TRANSLATIONS)]
            src = corpora[t]
            if docid not in src.position:
                skipped[f"missing_in_{t}"] += 1
                continue
            # YLT's backtick quotes and `--` dashes are typography, not words someone would type.
            tokens = [w for w in src.text(docid).replace("`", "").split() if re.search(r"\w", w)]
            if len(tokens) < SPAN_MIN:
                skipped["verse_too_short"] += 1
                continue
            for _ in range(SPAN_TRIES):
                span = _span(tokens, rng)
                norm = _norm(span)
                content = [w for w in norm.split() if w not in _STOP and len(w) > 2]
                if len(content) >= 2 and haystack[t].count(f" {norm} ") == 1:
                    break
            else:
                skipped["no_specific_span"] += 1
                continue
            web_words = set(_norm(web.text(docid)).split())
            chosen.append({"qid": f"xlate-{t}-{docid}", "docid": docid, "translation": t, "text": span,
                           "overlap": sum(w in web_words for w in norm.split()) / len(norm.split())})
            got += 1
        if got < quota:
            raise BadInput(f"keyword-xlate: {book} gave only {got} of {quota} verses")
    summary = {
        "seed": XLATE_SEED,
        "queries": len(chosen),
        "by_translation": dict(Counter(q["translation"] for q in chosen)),
        "by_book": {b: n for b, n in Counter(q["docid"].split(".", 1)[0] for q in chosen).items()},
        "skipped": dict(sorted(skipped.items())),
        "mean_word_overlap_with_web": round(sum(q["overlap"] for q in chosen) / max(len(chosen), 1), 3),
        "exact_web_substring": sum(_norm(q["text"]) in _norm(web.text(q["docid"])) for q in chosen),
        "corpora": {t: c.corpus_id for t, c in corpora.items()},
    }
    files = {
        "keyword-xlate/queries.tsv": format_queries({q["qid"]: q["text"] for q in chosen}),
        "keyword-xlate/qrels.trec": format_qrels({q["qid"]: {q["docid"]: 2} for q in chosen}),
        "keyword-xlate/set.json": _json({"name": "keyword-xlate", "scope": "nt", "split": None, "kind": "keyword",
                                         "generated_by": "bench qrels build keyword-xlate"}),
        "keyword-xlate/README.md": _xlate_readme(summary, chosen, corpora),
    }
    return files, summary


def _xlate_readme(s: dict, chosen: list[dict], corpora) -> str:
    books = " | ".join(f"{b} {s['by_book'].get(b, 0)}" for b in NT_BOOKS)
    trans = ", ".join(f"{t} {n}" for t, n in s["by_translation"].items())
    sources = "\n".join(f"- `{t}`: corpus `{c.corpus_id}`" for t, c in corpora.items())
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "none"
    step = max(len(chosen) // 8, 1)
    examples = "\n".join(f"| `{q['qid']}` | {q['text']} |" for q in chosen[::step + 1][:8])
    return f"""# keyword-xlate

Known-item queries across translations: the user remembers a phrase in an older wording (KJV, ASV or Young's
Literal Translation) and searches the World English Bible. Each query is a {SPAN_MIN} to {SPAN_MAX} word contiguous
span of one New Testament verse in that translation; the one relevant document is the same verse in the WEB
(relevance 2). Rebuild with `bench qrels build keyword-xlate` (seed {s['seed']}, deterministic; the test suite checks
it).

## How it was built
- Verses drawn per book with `random.Random({s['seed']})`: each of the 27 books gets
  max({XLATE_MIN_PER_BOOK}, round({XLATE_TARGET} x book verses / NT verses)) verses, in canonical book order,
  each book's WEB verse ids shuffled and taken in turn.
- The translation rotates kjv, asv, ylt over accepted queries. A verse the translation lacks is skipped.
- Span: length uniform in {SPAN_MIN}..{SPAN_MAX} (at most the verse length), start uniform; punctuation stripped at its
  edges; YLT's backtick quote marks and word-less tokens such as `--` removed first. A span is too generic, and
  another is drawn (up to {SPAN_TRIES} tries, else the verse is skipped), when it has fewer than two content words
  (not a stopword, 3+ letters; the stopwords include thee/thou/ye/hath/unto) or when its words occur in more than one
  verse of that translation's NT (lowercased, punctuation ignored).
- Query ids: `xlate-<translation>-<verse id>`.

## Counts
{s['queries']} queries; by translation: {trans}. Skipped draws: {skipped}.

By book: {books}

Mean share of a query's words that also occur in the WEB verse: {s['mean_word_overlap_with_web']}; queries whose words
appear verbatim in the WEB verse: {s['exact_web_substring']}.

Sources (public domain; texts are never committed, only ids and short spans):
{sources}

## Examples
| qid | query |
|---|---|
{examples}
"""


# ---- writing ------------------------------------------------------------------------------------------------------

def build(name: str, root: Path | None = None, *, home: Path) -> dict:
    """Build one generated set family and write it under `root` (default `qrels/`); returns the summary. `home`: the
    cache root the corpora are read from."""
    if name not in BUILDERS:
        raise BadInput(f"unknown generated set {name!r}; choose one of {', '.join(BUILDERS)}")
    files, summary = thematic_files(home=home) if name == "thematic" else keyword_xlate_files(home=home)
    root = Path(root) if root is not None else QRELS_DIR
    for rel, text in files.items():
        atomic_write_text(root / rel, text)
    summary["written"] = sorted(str(root / rel) for rel in files)
    return summary


# ---- thematic-natural: hand-written queries, judged by pooling, split here -------------------------------------------

NATURAL_SEED = 0
NATURAL_DEV_SHARE = 0.5


def natural_split(tags: dict[str, str], seed: int = NATURAL_SEED,
                  dev_share: float = NATURAL_DEV_SHARE) -> tuple[list[str], list[str]]:
    """(dev qids, test qids): within each style tag, the qids in sorted order, shuffled by `seed`, the first
    floor(n * dev_share) to dev. Stratified, so every style is tuned on and reported on in the same proportion; a
    function of the tags alone, so the split is rebuilt exactly from the two committed halves."""
    dev, test = [], []
    for tag in sorted(set(tags.values())):
        qids = sorted(q for q, t in tags.items() if t == tag)
        random.Random(f"{seed}:{tag}").shuffle(qids)
        cut = int(len(qids) * dev_share)
        dev += qids[:cut]
        test += qids[cut:]
    return sorted(dev), sorted(test)
