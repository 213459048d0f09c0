"""Matthew Henry's Concise Commentary (Debian `sword-comm-mhcc`, public domain) as passages with the verses they
comment on: training pairs for the encoder (a commentary sentence, or a chapter-outline line, -> its verses).

The module is SWORD zCom (KJV versification): `nt.bzs` holds (offset, compressed size, size) of each zlib block in
`nt.bzz`; `nt.bzv` has one 10-byte entry per index slot, (block, offset, size: uint32, uint32, uint16). The slots
run: module header, testament header, then per book a book slot, per chapter a chapter slot, then one slot per verse.
A passage that comments on verses a-b is stored once and every one of its verse slots points at it, so a run of equal
entries is one passage with its verses. (pysword reads this module with keys shifted by those heading slots: asked for
Matt 5:3 it returns the note on 5:21-26. Computing the slots here avoids that.)

Each chapter's first passage opens with the chapter outline, `Who are blessed. (3-12) Exhortations ... (13-16)`;
later ones open with their printed label `Verses 3-12`. The printed ranges are checked against the slots the passage
occupies (`label_mismatch` counts the disagreements; the slots win).
"""

import html
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from corpus.books import NT_BOOKS
from corpus.errors import at

MODULE = "modules/comments/zcom/mhcc"
PACKAGE = "sword-comm-mhcc"
_LABEL = re.compile(r"^\s*Verses?\s+(\d+)(?:\s*-\s*(\d+))?\b")
_RANGE = re.compile(r"\((\d+)(?:\s*-\s*(\d+))?\)")
OUTLINE_LINE_MAX = 300  # characters; a longer stretch before the next "(N)" is commentary, not an outline line


@dataclass(frozen=True)
class Passage:
    verses: tuple[str, ...]            # OSIS ids, KJV numbering, in order
    text: str                          # the commentary, cleaned, without its "Verses a-b" label or outline
    outline: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (outline line, its verses) for a chapter's first passage


def clean(tei: str) -> str:
    t = re.sub(r"<title[^>]*>.*?</title>", " ", tei, flags=re.S)   # headings are not commentary
    t = html.unescape(re.sub(r"<[^>]+>", " ", t))
    return re.sub(r"\s+", " ", t).strip()


def _slots(chapters_by_book) -> list[tuple[str, int, int] | None]:
    """Index slot -> (book, chapter, verse); None for header, book and chapter slots."""
    out: list = [None, None]
    for book, verse_counts in chapters_by_book:
        out.append(None)
        for c, n in enumerate(verse_counts, 1):
            out.append(None)
            out += [(book, c, v) for v in range(1, n + 1)]
    return out


def _entries(folder: Path, testament: str):
    try:
        bzs, bzv, bzz = ((folder / f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz"))
    except FileNotFoundError as e:
        raise at(e.filename, None, f"missing: install the Debian package {PACKAGE} (./scripts/setup.sh)") from None
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    cache: dict[int, bytes] = {}
    for i in range(len(bzv) // 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, i * 10)
        if size == 0 or block >= len(blocks):
            yield i, None, ""
            continue
        if block not in cache:
            o, csize, _ = blocks[block]
            cache = {block: zlib.decompress(bzz[o:o + csize])}  # entries come in block order: keep one block
        yield i, (block, offset, size), cache[block][offset:offset + size].decode("utf-8", "replace")


def _outline(text: str, book: str, chapter: int) -> tuple[str, tuple]:
    """Split a chapter's first passage into its outline lines and the commentary that follows the last one.
    Outline: `Line one. (1-4) Line two. (5-8) ...`; a book's first chapter has the book's introduction before it."""
    items, end = [], 0
    for m in _RANGE.finditer(text):  # linear: a lazy "label then (N)" pattern was quadratic (5.7 s for the NT)
        label = text[end:m.start()]
        if items and len(label) > OUTLINE_LINE_MAX:  # past the outline: a "(N)" inside the commentary
            break
        # A book's first chapter opens with the book's introduction: the first line is only its last sentence.
        line = re.split(r"(?<=[.!?])\s+", label.strip())[-1].strip(" .;").removeprefix("Chapter Outline ")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        items.append((line, tuple(f"{book}.{chapter}.{v}" for v in range(a, b + 1))))
        end = m.end()
    rest = text[end:].strip()
    label = _LABEL.match(rest)
    return (rest[label.end():].strip() if label else rest), tuple(items)


def read_passages(sword_dir: Path, canon: dict) -> tuple[list[Passage], dict]:
    """New Testament passages and counts. `canon`: pysword's KJV canon ({"nt": [(name, osis, abbr, chapters)]})."""
    folder = Path(sword_dir) / MODULE
    books = [(osis, chs) for _, osis, _, chs in canon["nt"]]
    if [b for b, _ in books] != list(NT_BOOKS):
        raise at(folder, None, "the KJV canon's New Testament books are not ours")
    slots = _slots(books)
    runs: list[tuple[tuple, str, list]] = []
    for i, key, tei in _entries(folder, "nt"):
        where = slots[i] if i < len(slots) else None
        if key is None or where is None:
            continue
        if runs and runs[-1][0] == key:
            runs[-1][2].append(where)
        else:
            runs.append((key, tei, [where]))
    out, counts = [], {"passages": 0, "outline_lines": 0, "label_mismatch": 0, "verses": 0}
    for _, tei, where in runs:
        text = clean(tei)
        if not text:
            continue
        book, chapter, first = where[0]
        label = _LABEL.match(text)
        outline = ()
        if label:
            a, b = int(label.group(1)), int(label.group(2) or label.group(1))
            counts["label_mismatch"] += (a, b) != (first, where[-1][2])
            text = text[label.end():].strip()
        elif first == 1:
            text, outline = _outline(text, book, chapter)
        out.append(Passage(tuple(f"{b}.{c}.{v}" for b, c, v in where), text, outline))
        counts["passages"] += 1
        counts["outline_lines"] += len(outline)
        counts["verses"] += len(where)
    return out, counts


def sentences(text: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    """The commentary's sentences of a useful length (a fragment says little; a long one gets cut by the model)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text)
    return [p.strip() for p in parts if min_words <= len(p.split()) <= max_words]
