"""Nave's Topical Bible from Debian's `sword-dict-naves`: a reader for SWORD's zLD format and a parser for its TEI.

pysword cannot read zLD dictionaries, so the format is read here with `struct` and `zlib` (all integers little-endian
uint32):
  nave.idx  per key: (offset, size) of its record in nave.dat
  nave.dat  record: key text, "\\r\\n" (or NUL), then (block number, entry number) into the compressed store
  nave.zdx  per block: (offset, size) of a zlib stream in nave.zdt
  nave.zdt  block = zlib(count, then `count` (offset, size) pairs relative to the block, then the entries, each
            ending in NUL, which the size includes)

An entry is TEI: `<entryFree n="KEY"><def>` then lines. `<lb/>→ LABEL refs` and `<lb/>1. LABEL refs` head a
subtopic; `<list><item>LABEL refs</item></list>` are its children; a plain `<lb/>LABEL refs` after a list is a child of
the last item (the printed book indents them under it). Lists never nest in this module. References are
`<ref osisRef="Rom.5.6">`, ranges `<ref osisRef="Rom.5.6-Rom.5.8">` (possibly across chapters), chapter-only
`<ref osisRef="1Chr.24">` and cross references `<ref target="Nave:FAITH">`.

Every reference into a one-chapter book (Obad, Phlm, 2John, 3John, Jude) is malformed the same way: osisRef `Jude.1.1`,
shown as "Jude 1", with the verses printed as plain text right after the element: `<ref osisRef="Jude.1.1">Jude 1</ref>:8-13`.
The printed text is the reference the book makes, so when it reads exactly `:V[-V][,V[-V]]...` the verses are taken from
it (counted as `one_chapter_recovered`); anything else (`Obadiah 1` followed by `Ki 18:12`, a misparse of "1 Ki 18:12"
about Obadiah the steward; or no verse text at all) is counted as `unparsed_one_chapter` and dropped. The same
misparse of a person's name hits other books ("Micah, 2 Ch 34:20" tagged `<ref osisRef="Mic.2">Micah 2</ref>Ch 34:20`;
"Azariah, 2 Ch 15:1" tagged as the apocryphal `PrAzar.1.2`): a ref followed by printed text like `Ch 34:20` is counted
as `unparsed_name_misparse` and dropped. Nothing is guessed.
"""

import html
import re
import struct
import subprocess
import zlib
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from corpus.bible import sword_dir
from corpus.books import BOOKS
from corpus.errors import at

MODULE = "modules/lexdict/zld/nave"  # under the SWORD folder ($SWORD_PATH, default /usr/share/sword), as the Bibles
ONE_CHAPTER_BOOKS = ("Obad", "Phlm", "2John", "3John", "Jude")
_BOOK_INDEX = {b: i for i, b in enumerate(BOOKS)}

_VERSE = re.compile(r"([1-3]?[A-Za-z]+)\.(\d+)\.(\d+)")
_CHAPTER = re.compile(r"([1-3]?[A-Za-z]+)\.(\d+)")
_TRAILING_VERSES = re.compile(r":\s*(\d+(?:\s*-\s*\d+)?(?:\s*,\s*\d+(?:\s*-\s*\d+)?)*)")
_NAME_MISPARSE = re.compile(r"\s*[A-Z][a-z]{0,3}\s+\d+:\d+")
_TOKEN = re.compile(r"<lb/>|<list>|</list>|<item>|</item>|</def>|<ref\s[^>]*>.*?</ref>", re.S)


# ---- the zLD container ----------------------------------------------------------------------------------------------

def _u32s(buf: bytes, offset: int, n: int, path) -> tuple[int, ...]:
    if offset + 4 * n > len(buf):
        raise at(path, None, f"truncated: need {4 * n} bytes at offset {offset}, file has {len(buf)}")
    return struct.unpack_from(f"<{n}I", buf, offset)


def read_entries(module_dir: Path | None = None) -> dict[str, str]:
    """Every key -> its TEI text, in the module's (alphabetical) key order. Default: the SWORD folder the Bibles are
    read from (`corpus.bible.sword_dir`, which $SWORD_PATH moves)."""
    base = Path(module_dir if module_dir is not None else sword_dir() / MODULE) / "nave"
    try:
        idx, dat, zdx, zdt = (Path(f"{base}.{ext}").read_bytes() for ext in ("idx", "dat", "zdx", "zdt"))
    except FileNotFoundError as e:
        raise at(e.filename, None, "Nave's module not found (install the Debian package sword-dict-naves)") from None
    blocks: dict[int, list[bytes]] = {}

    def block(n: int) -> list[bytes]:
        if n not in blocks:
            off, size = _u32s(zdx, 8 * n, 2, f"{base}.zdx")
            raw = zlib.decompress(zdt[off:off + size])
            (count,) = _u32s(raw, 0, 1, f"{base}.zdt")
            table = _u32s(raw, 4, 2 * count, f"{base}.zdt")
            blocks[n] = [raw[table[2 * i]:table[2 * i] + table[2 * i + 1]] for i in range(count)]
        return blocks[n]

    entries: dict[str, str] = {}
    for i in range(len(idx) // 8):
        off, size = _u32s(idx, 8 * i, 2, f"{base}.idx")
        rec = dat[off:off + size]
        key, sep, rest = rec.partition(b"\r\n")
        if not sep:  # SWORD also allows a NUL terminator
            key, sep, rest = rec.partition(b"\0")
        if not sep or len(rest) < 8:
            raise at(f"{base}.dat", None, f"record {i} at offset {off} has no key terminator or block pointer")
        b, e = _u32s(rest, 0, 2, f"{base}.dat")
        tei = block(b)[e].rstrip(b"\0").decode("utf-8")
        # Two keys occur twice with different entries (REVERENCE; SIN the sin and Sin the desert): keep both, in
        # index order, under the one key, so a topic stays one unit for the dev/test split.
        k = key.decode("utf-8")
        entries[k] = entries[k] + "\n" + tei if k in entries else tei
    return entries


def package_version(package: str = "sword-dict-naves") -> str:
    """The installed Debian package's version (`3.0-1`), or "unknown" where dpkg cannot say."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


# ---- TEI -> subtopics -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subtopic:
    path: tuple[str, ...]  # labels from the head line down to this line, cleaned of references, as printed
    refs: tuple[str, ...]  # verse refs and verse ranges (`Rom.5.6`, `Rom.5.6-Rom.5.8`) in order of appearance
    chapter_refs: tuple[str, ...] = ()  # chapter-only refs (`1Chr.24`), kept aside: never expanded into qrels
    see: tuple[str, ...] = ()  # cross references to other topics (`FAITH IN CHRIST`)
    unparsed: tuple[str, ...] = ()  # osisRef values of references that could not be read (see the module docstring)
    ordinal: int = 0  # 1-based position among the topic's lines: a stable id even when others are filtered out


@dataclass(frozen=True)
class Topic:
    key: str
    subtopics: tuple[Subtopic, ...]


def _clean_label(raw: str) -> str:
    """A line's text without its verse references: tags and the arrow dropped, a leading `1. ` dropped, the verse
    numbers printed after malformed one-chapter refs dropped, runs of separators left by removed refs collapsed."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw)).replace("\u2192", " ")
    text = re.sub(r"(?<![\w:]):\s*\d+(?:\s*[-,]\s*\d+)*", " ", text)
    # untagged printed references left by misparsed names ("Azariah 2 Ch 15:1" -> "Ch 15:1", "with 17:25")
    text = re.sub(r"\b(?:[A-Z][a-z]{0,3}\s+)?\d+:\d+(?:\s*[-,]\s*\d+(?::\d+)?)*", " ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r" ([,;:.])", r"\1", text)
    text = re.sub(r"\s*([;,])(?:\s*[;,])+", r"\1", text)
    text = re.sub(r"^\s*\d+\.\s+", "", text)
    return text.strip(" ;,:")


def _verse_ok(ref: str) -> bool:
    m = _VERSE.fullmatch(ref)
    return bool(m) and m.group(1) in _BOOK_INDEX and int(m.group(2)) > 0 and int(m.group(3)) > 0


def parse_entry(key: str, tei: str, counts: Counter | None = None) -> Topic:
    """One entry's lines as subtopics (lines without a verse reference are kept too: they carry labels and `see`)."""
    counts = Counter() if counts is None else counts
    body = tei
    lines: list[dict] = []
    cur: dict | None = None
    pos = entry = 0
    for m in _TOKEN.finditer(body):
        if cur is not None:
            cur["raw"].append(body[pos:m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok in ("<lb/>", "<item>"):
            cur = {"kind": tok, "entry": entry, "raw": [], "refs": [], "chapter": [], "see": [], "unparsed": []}
            lines.append(cur)
        elif tok.startswith("<ref"):
            if cur is None:  # a reference outside any line: does not occur in 3.0-1; give it a line of its own
                cur = {"kind": "<lb/>", "entry": entry, "raw": [], "refs": [], "chapter": [], "see": [], "unparsed": []}
                lines.append(cur)
            # A verse ref leaves a space in the label; a cross reference leaves its words ("OF GOD, LOVE OF").
            cur["raw"].append(" " if _add_ref(tok, body[m.end():m.end() + 60], cur, counts) else tok)
        else:  # </item>, <list>, </list>, </def>
            cur = None
            entry += tok == "</def>"

    subtopics = []
    head: str | None = None
    item: str | None = None
    for i, line in enumerate(lines, 1):
        raw = "".join(line["raw"])
        label = _clean_label(raw)
        if i > 1 and line["entry"] != lines[i - 2]["entry"]:  # a second entry under the same key starts afresh
            head = item = None
        if line["kind"] == "<item>":
            item = label
            path = (head, label) if head is not None else (label,)
        elif head is None or raw.lstrip().startswith("\u2192") or re.match(r"\s*\d+\.\s", raw):
            head, item = label, None
            path = (label,)
        else:  # a plain <lb/> line: under the last item when the head has a list, else under the head
            path = tuple(p for p in (head, item, label) if p is not None)
        subtopics.append(Subtopic(path=path, refs=tuple(line["refs"]), chapter_refs=tuple(line["chapter"]),
                                  see=tuple(line["see"]), unparsed=tuple(line["unparsed"]), ordinal=i))
    return Topic(key=key, subtopics=tuple(subtopics))


def _add_ref(tok: str, after: str, line: dict, counts: Counter) -> bool:
    """File one `<ref>` under `line` (`after` is the text that follows it); False for a cross reference to another
    topic, whose words stay in the label."""
    target = re.search(r'target="Nave:([^"]*)"', tok)
    if target:
        line["see"].append(html.unescape(target.group(1)))
        counts["see_also"] += 1
        return False
    counts["refs"] += 1
    m = re.search(r'osisRef="([^"]*)"', tok)
    ref = m.group(1) if m else tok
    book = ref.split(".", 1)[0]
    ends = ref.split("-")
    if not m:
        problem = "unparsed_malformed"
    elif _NAME_MISPARSE.match(after):
        # "Micah, 2 Ch 34:20" tagged as <ref osisRef="Mic.2">Micah 2</ref>Ch 34:20: the real reference is untagged.
        problem = "unparsed_name_misparse"
    elif book not in _BOOK_INDEX:
        problem = "unparsed_noncanonical_book"
    elif book in ONE_CHAPTER_BOOKS:
        tm = _TRAILING_VERSES.match(after)
        if ref != f"{book}.1.1" or not tm:
            problem = "unparsed_one_chapter"
        else:
            for part in tm.group(1).split(","):
                a, _, b = (p.strip() for p in part.partition("-"))
                line["refs"].append(f"{book}.1.{int(a)}" + (f"-{book}.1.{int(b)}" if b else ""))
            counts["one_chapter_recovered"] += 1
            return True
    elif _CHAPTER.fullmatch(ref):
        line["chapter"].append(ref)
        counts["chapter_only"] += 1
        return True
    elif len(ends) <= 2 and all(_verse_ok(e) for e in ends) and _verse_key(ends[0]) <= _verse_key(ends[-1]):
        line["refs"].append(ref)
        counts["verse_ranges" if len(ends) == 2 else "verses"] += 1
        return True
    else:
        problem = "unparsed_malformed"
    counts[problem] += 1
    line["unparsed"].append(ref)
    return True


def _verse_key(ref: str) -> tuple[int, int, int]:
    b, c, v = ref.split(".")
    return _BOOK_INDEX[b], int(c), int(v)


def topics(entries: dict[str, str] | None = None) -> tuple[list[Topic], dict]:
    """All topics in key order, and parse counts (refs by kind; what was not parsed, by reason)."""
    entries = read_entries() if entries is None else entries
    counts: Counter = Counter()
    out = [parse_entry(k, v, counts) for k, v in entries.items()]
    counts["topics"] = len(out)
    counts["lines"] = sum(len(t.subtopics) for t in out)
    counts["lines_with_verse_refs"] = sum(1 for t in out for s in t.subtopics if s.refs)
    return out, dict(sorted(counts.items()))


@dataclass(frozen=True)
class VerseList:
    """A canonical-order verse list (a corpus's ids) with sort keys, for range expansion."""
    ids: tuple[str, ...]
    keys: tuple[tuple[int, int, int], ...]
    books: frozenset

    @classmethod
    def of(cls, ids) -> "VerseList":
        keys = tuple(_verse_key(i) for i in ids)
        if list(keys) != sorted(keys):
            raise ValueError("verse ids are not in canonical order")
        return cls(tuple(ids), keys, frozenset(k[0] for k in keys))


def expand(refs, verses: VerseList, known=None) -> tuple[list[str], Counter]:
    """Verse refs and ranges -> the ids of `verses` they cover, deduplicated, in order of first mention.

    A range takes every listed verse between its ends, so ranges across chapters work and an end missing from the
    list (a verse the translation omits) does not lose the rest. `known` (a set of ids, e.g. the whole KJV) rejects
    refs naming a verse that does not exist (`Col.8.16`, Nave's slip for 2 Cor 8:16), counted as `no_such_verse`,
    rather than letting a bad end swallow a stretch of text. Refs whose books are not in the list are counted as
    `out_of_scope`; one inside scope that covers no listed verse as `not_in_corpus` (a verse the WEB omits).
    """
    out: dict[str, None] = {}
    counts: Counter = Counter()
    for ref in refs:
        a, _, b = ref.partition("-")
        lo, hi = _verse_key(a), _verse_key(b or a)
        if lo[0] not in verses.books and hi[0] not in verses.books:
            counts["out_of_scope"] += 1
            continue
        if known is not None and (a not in known or (b and b not in known)):
            counts["no_such_verse"] += 1
            continue
        got = verses.ids[bisect_left(verses.keys, lo):bisect_right(verses.keys, hi)]
        if not got:
            counts["not_in_corpus"] += 1
            continue
        counts["expanded"] += 1
        for i in got:
            out.setdefault(i, None)
    return list(out), counts
