"""The 66-book Protestant canon as OSIS book ids, in canonical order (document ids are `Book.chapter.verse`)."""

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
