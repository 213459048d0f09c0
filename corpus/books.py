"""The 66-book Protestant canon as OSIS book ids, in canonical order (document ids are `Book.chapter.verse`), and
references as people write them ("John 3:16", "Jn 3:16", "1 Cor 13:4", "I John 4:8") read into those ids."""

import re

from corpus.errors import BadInput, at

OT_BOOKS = (
    "Gen", "Exod", "Lev", "Num", "Deut", "Josh", "Judg", "Ruth", "1Sam", "2Sam", "1Kgs", "2Kgs", "1Chr", "2Chr",
    "Ezra", "Neh", "Esth", "Job", "Ps", "Prov", "Eccl", "Song", "Isa", "Jer", "Lam", "Ezek", "Dan", "Hos", "Joel",
    "Amos", "Obad", "Jonah", "Mic", "Nah", "Hab", "Zeph", "Hag", "Zech", "Mal",
)
NT_BOOKS = (
    "Matt", "Mark", "Luke", "John", "Acts", "Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess", "2Thess",
    "1Tim", "2Tim", "Titus", "Phlm", "Heb", "Jas", "1Pet", "2Pet", "1John", "2John", "3John", "Jude", "Rev",
)
BOOKS = OT_BOOKS + NT_BOOKS
SCOPES = ("nt", "ot", "all")


def books_for(scope: str) -> tuple[str, ...]:
    return {"nt": NT_BOOKS, "ot": OT_BOOKS, "all": BOOKS}[scope]


def scope_of(docid: str) -> str:
    """'nt' or 'ot' for an OSIS verse id like `Matt.5.3`."""
    return "nt" if docid.split(".", 1)[0] in NT_BOOKS else "ot"


# How people write each book in a reference ("1 Corinthians 13:4", "Psalm 23:1"); `parse_ref` reads them all back.
_DISPLAY = dict(zip(BOOKS, (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel",
    "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job", "Psalm", "Proverbs",
    "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel",
    "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians",
    "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon",
    "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
)))


def reference(docid: str) -> str:
    """An OSIS verse id as people write it: `1Cor.13.4` -> `1 Corinthians 13:4` (the inverse of `parse_ref`)."""
    book, chapter, verse = docid.split(".")
    return f"{_DISPLAY[book]} {chapter}:{verse}"


# ---- references -----------------------------------------------------------------------------------------------------

# Full names and the abbreviations in common use (SBL, OSIS, Logos, Blue Letter Bible, the USFM codes), lower case
# without spaces. A numbered book also answers to its roman form ("ii cor") and "first/second/third" (`_numbered`).
_NAMES = {
    "Gen": "genesis gn ge", "Exod": "exodus ex exo", "Lev": "leviticus lv le", "Num": "numbers nm nu",
    "Deut": "deuteronomy dt de deu", "Josh": "joshua jos jsh", "Judg": "judges jdg jg jdgs", "Ruth": "ru rth rut",
    "1Sam": "1samuel 1sa 1sm 1s", "2Sam": "2samuel 2sa 2sm 2s", "1Kgs": "1kings 1ki 1kg 1kin",
    "2Kgs": "2kings 2ki 2kg 2kin", "1Chr": "1chronicles 1ch 1chron", "2Chr": "2chronicles 2ch 2chron",
    "Ezra": "ezr", "Neh": "nehemiah ne", "Esth": "esther est es", "Job": "jb",
    "Ps": "psalms psalm psa pss psm", "Prov": "proverbs pr prv pro", "Eccl": "ecclesiastes ecc qoheleth qoh eccles",
    "Song": "songofsolomon songofsongs sos canticles canticle sng", "Isa": "isaiah is", "Jer": "jeremiah je jr",
    "Lam": "lamentations la", "Ezek": "ezekiel eze ezk", "Dan": "daniel dn da", "Hos": "hosea ho",
    "Joel": "jl jol", "Amos": "am amo", "Obad": "obadiah ob oba", "Jonah": "jon jnh",
    "Mic": "micah mi", "Nah": "nahum na", "Hab": "habakkuk hb", "Zeph": "zephaniah zep zp", "Hag": "haggai hg",
    "Zech": "zechariah zec zc", "Mal": "malachi ml", "Matt": "matthew mt mat mtt", "Mark": "mk mr mrk mar",
    "Luke": "lk lu luk", "John": "jn jhn joh", "Acts": "ac act", "Rom": "romans ro rm", "1Cor": "1corinthians 1co",
    "2Cor": "2corinthians 2co", "Gal": "galatians ga", "Eph": "ephesians ep ephes", "Phil": "philippians php pp",
    "Col": "colossians co", "1Thess": "1thessalonians 1th 1thes", "2Thess": "2thessalonians 2th 2thes",
    "1Tim": "1timothy 1ti", "2Tim": "2timothy 2ti", "Titus": "tit ti", "Phlm": "philemon phm philem",
    "Heb": "hebrews he", "Jas": "james jm jam", "1Pet": "1peter 1pe 1pt", "2Pet": "2peter 2pe 2pt",
    "1John": "1jn 1jo 1jhn", "2John": "2jn 2jo 2jhn", "3John": "3jn 3jo 3jhn", "Jude": "jud jde",
    "Rev": "revelation revelations re rv apocalypse",
}
_ROMAN = {"1": ("i", "first", "1st"), "2": ("ii", "second", "2nd"), "3": ("iii", "third", "3rd")}


def _numbered(alias: str) -> tuple[str, ...]:
    """"1cor" -> "1cor", "icor", "firstcor", "1stcor": the ways a book's number is written."""
    if alias[0] in _ROMAN:
        return (alias, *(r + alias[1:] for r in _ROMAN[alias[0]]))
    return (alias,)


def _aliases() -> dict[str, str]:
    """alias -> book. A name as listed wins over a derived numbered form that happens to spell it ("is" is Isaiah,
    not "i s"amuel); the test checks that no listed name belongs to two books."""
    listed = {name: book for book, names in _NAMES.items() for name in (book.lower(), *names.split())}
    derived = {a: book for name, book in listed.items() for a in _numbered(name)}
    return {**derived, **listed}


_ALIASES = _aliases()
_REF = re.compile(r"^\s*((?:[1-3]|i{1,3}|first|second|third|1st|2nd|3rd)?\s*[A-Za-z]+(?:\s+of\s+[A-Za-z]+)?)"
                  r"\s*\.?\s*(\d+)\s*[.:]\s*(\d+)\s*$", re.I)


def parse_ref(ref: str) -> str:
    """`John.3.16`, `John 3:16`, `Jn 3:16`, `1 Cor 13:4`, `I John 4:8`, `Ezekiel 36:26` -> OSIS id (`John.3.16`);
    BadInput if unreadable. Whether the verse exists is the corpus's to say."""
    book, chapter, verse = _split(ref)
    return f"{book}.{chapter}.{verse}"


def normalize_ref(ref: str) -> str | None:
    """`parse_ref`, or None for what is no reference (an unknown book, no chapter and verse)."""
    try:
        return parse_ref(ref)
    except BadInput:
        return None


def _split(ref: str) -> tuple[str, int, int]:
    m = _REF.match(ref)
    if not m:
        raise at("REF", None, f"cannot read reference {ref!r}; write it like John.3.16 or 'John 3:16'")
    name = re.sub(r"\s+", "", m.group(1)).lower()
    book = _ALIASES.get(name)
    if book is None:
        raise at("REF", None, f"unknown book {m.group(1).strip()!r} in {ref!r}; use an OSIS id like "
                              f"{', '.join(NT_BOOKS[:3])}")
    return book, int(m.group(2)), int(m.group(3))
