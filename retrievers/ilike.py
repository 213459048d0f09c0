"""ilike: SQL substring matching, the baseline a plain app would ship.

A query becomes words: the lowercased query's runs of word characters (`\\w+`: letters of any script, digits,
underscore), deduplicated in order of first appearance. No stopwords are removed and nothing is stemmed: "the" matches
almost every verse and "love" matches "beloved", which is exactly what a plain app does. A verse's score is the
number of words it contains (`text ILIKE '%word%'`); ties go to the earlier verse in canonical order. All of it is
one SQL statement per query; every word is a bound parameter with `\\`, `%` and `_` escaped, so user text is only
ever text.

Backends: SQLite in memory (default; built from the corpus in well under a second) or, with `dsn=`, real PostgreSQL
`ILIKE` through psycopg 3 on a table `versebench_<corpus id>` loaded once.

Index (`index=true`, the default): what an app that cared would add, with the same answers. SQLite: an FTS5 trigram
table; a word of three or more ASCII characters is found with a quoted trigram phrase (`MATCH '"word"'`: the verses
holding it as a substring, ASCII case folded), because FTS5's own `LIKE` support rechecks every candidate row and
measured barely faster than the scan. PostgreSQL: a `pg_trgm` GIN index, which `ILIKE '%word%'` uses directly.
Trigrams need three characters: shorter words (and, in SQLite, words with non-ASCII letters or `_`) fall back to a
scan with `LIKE`. Each verse's score is then the count of rows it gets, one per matching word, in one statement.
`index=false` is the plain scan above, which is what `bench perf` also times, so the app's cost stays visible.

The backends agree on ASCII letters. They do not agree on non-ASCII letters: SQLite's LIKE folds case for ASCII only
("æneas" misses "Æneas"), PostgreSQL's ILIKE folds them by the database's locale. The WEB text has no non-ASCII
letters; KJV has "Æneas" and "Cæsar".

Limits (in the config): only the first `max_words` distinct words count (a 10,000-character query is cut to them);
words longer than the longest word in the corpus are dropped first, since they cannot match anything (and SQLite
refuses LIKE patterns over 50,000 bytes).
"""

import dataclasses
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from corpus import cache
from corpus.errors import BadInput
from retrievers.base import check_k, positive_int, redact_dsn, strictly_decreasing

WORD = re.compile(r"\w+")
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class IlikeConfig:
    backend: str | None = None  # "sqlite" (embedded, in memory) or "postgresql" (needs dsn); default: by dsn
    dsn: str | None = None  # PostgreSQL connection string; stored here with its password redacted
    max_words: int = 32  # only the first max_words distinct query words count
    index: bool = True  # trigram index (SQLite FTS5, PostgreSQL pg_trgm); false: the plain scan, no index


def query_words(query: str, max_words: int, max_len: int | None = None) -> list[str]:
    """The words of a query, as described in the module docstring."""
    words = dict.fromkeys(WORD.findall(query.lower()))
    return [w for w in words if max_len is None or len(w) <= max_len][:max_words]


def like_pattern(word: str) -> str:
    """`%word%` with LIKE's wildcards and the escape character itself escaped (used with ESCAPE '\\')."""
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def ranking_sql(n_words: int, *, table: str, op: str, param: str) -> str:
    """One statement: count matching words per verse, keep verses with at least one, best first, then canonical order.
    `table` is a trusted identifier (ours), `op` is LIKE or ILIKE, `param` the driver's placeholder."""
    matched = " + ".join([f"CASE WHEN text {op} {param} ESCAPE '\\' THEN 1 ELSE 0 END"] * n_words)
    return (f"SELECT id, score FROM (SELECT id, pos, {matched} AS score FROM {table}) AS m "
            f"WHERE score > 0 ORDER BY score DESC, pos ASC LIMIT {param}")


def indexed_sql(words: list[str], *, table: str, op: str, param: str, match: str | None) -> tuple[str, list]:
    """One statement over the trigram index: a row per (verse, matching word), counted per verse, best first, then
    canonical order. `match`: the FTS5 trigram table for words it can answer exactly (SQLite); None: every word uses
    `op` on `table`, whose index the database picks (PostgreSQL). Returns (sql, parameters without the limit)."""
    parts, params = [], []
    for word in words:
        if match and len(word) >= 3 and word.isascii() and "_" not in word:
            parts.append(f"SELECT rowid AS pos FROM {match} WHERE {match} MATCH {param}")
            params.append(f'"{word}"')
        else:
            parts.append(f"SELECT pos FROM {table} WHERE text {op} {param} ESCAPE '\\'")
            params.append(like_pattern(word))
    # The k best are cut before the join that fetches their ids (joining every matching verse cost a fifth more).
    sql = (f"SELECT v.id, m.score FROM (SELECT pos, count(*) AS score FROM ({' UNION ALL '.join(parts)}) AS h "
           f"GROUP BY pos ORDER BY score DESC, pos ASC LIMIT {param}) AS m JOIN {table} AS v ON v.pos = m.pos "
           "ORDER BY m.score DESC, m.pos ASC")
    return sql, params


class IlikeRetriever:
    name = "ilike"

    def __init__(self, corpus, config: IlikeConfig, dsn: str | None = None):
        self.config = config
        self._corpus = corpus
        # Longest run of word characters in any verse: a longer query word cannot be a substring of a verse.
        self._max_len = max((len(w) for t in corpus.texts for w in WORD.findall(t)), default=0)
        self._match = None
        if config.backend == "sqlite":
            self._conn, self._table, self._op, self._param = _sqlite_table(corpus), "verses", "LIKE", "?"
            if config.index:
                self._match = _sqlite_trigram(self._conn, corpus)
        else:
            self._conn, self._table = _postgres_table(dsn, corpus, config.index)
            self._op, self._param = "ILIKE", "%s"

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        check_k(k)
        results = {}
        for qid, text in queries.items():
            words = query_words(text, self.config.max_words, self._max_len)
            if not words:
                results[qid] = {}
                continue
            if self.config.index:
                sql, params = indexed_sql(words, table=self._table, op=self._op, param=self._param, match=self._match)
            else:
                sql = ranking_sql(len(words), table=self._table, op=self._op, param=self._param)
                params = list(map(like_pattern, words))
            rows = self._conn.execute(sql, [*params, k]).fetchall()
            results[qid] = strictly_decreasing(rows)
        return results

    def close(self) -> None:
        self._conn.close()


def make(corpus, config: IlikeConfig, *, home: Path, on_progress=None) -> IlikeRetriever:
    """Options: backend ("sqlite" | "postgresql"), dsn (implies postgresql), max_words (default 32), index.
    `home` goes unused (the table lives in memory or in PostgreSQL, never in the cache root), and so does
    `on_progress`: loading the verses into a table takes well under a second."""
    if config.dsn is not None and not config.dsn.strip():
        # an empty --dsn (an unset variable in a CI script) must not quietly become SQLite
        raise BadInput("ilike: dsn is empty; give postgresql://... or leave it out for the SQLite backend")
    if config.backend is None:
        config = dataclasses.replace(config, backend="postgresql" if config.dsn else "sqlite")
    if config.backend not in BACKENDS:
        raise BadInput(f"ilike: backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if (config.backend == "postgresql") != bool(config.dsn):
        raise BadInput("ilike: the postgresql backend needs dsn=postgresql://...; the sqlite backend takes no dsn")
    positive_int(config.max_words, "ilike: max_words")
    dsn = config.dsn
    if dsn:
        config = dataclasses.replace(config, dsn=redact_dsn(dsn))
    return IlikeRetriever(corpus, config, dsn)


def _sqlite_table(corpus) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE verses (pos INTEGER PRIMARY KEY, id TEXT NOT NULL, text TEXT NOT NULL)")
    conn.executemany("INSERT INTO verses VALUES (?, ?, ?)", zip(range(len(corpus)), corpus.ids, corpus.texts))
    conn.commit()
    return conn


def _sqlite_trigram(conn: sqlite3.Connection, corpus) -> str | None:
    """An FTS5 trigram table over the verses, or None where MATCH could answer differently from LIKE: FTS5 folds case
    by Unicode, LIKE by ASCII only, so a non-ASCII letter that folds to an ASCII one (the Kelvin sign K, say) would
    match an ASCII word in FTS5 and not in LIKE. No Bible text we read has one; then every word takes the scan."""
    odd = {ch for t in corpus.texts for ch in t if not ch.isascii()}
    if any(any(c.isascii() for c in ch.lower() + ch.casefold() + ch.upper()) for ch in odd):
        return None
    # contentless: MATCH needs only the index, and the text is already in `verses`
    conn.execute("CREATE VIRTUAL TABLE verses_trigram USING fts5(text, content='', tokenize='trigram')")
    conn.execute("INSERT INTO verses_trigram (rowid, text) SELECT pos, text FROM verses")
    conn.commit()
    return "verses_trigram"


def corpus_digest(corpus) -> str:
    """md5 of the corpus as the table's rows `pos<TAB>id<TAB>text`, joined by newlines, in position order: what
    `table_digest` computes inside PostgreSQL."""
    rows = (f"{pos}\t{d}\t{t}" for pos, (d, t) in enumerate(zip(corpus.ids, corpus.texts)))
    return hashlib.md5("\n".join(rows).encode("utf-8")).hexdigest()


def table_digest(conn, ident) -> str | None:
    from psycopg import sql

    return conn.execute(sql.SQL("SELECT md5(convert_to(string_agg(pos::text || E'\\t' || id || E'\\t' || text, "
                                "E'\\n' ORDER BY pos), 'UTF8')) FROM {}").format(ident)).fetchone()[0]


def _postgres_table(dsn: str, corpus, index: bool):
    """Connect and make sure table `versebench_<corpus id>` holds the corpus. The name carries the corpus's content
    hash, but a table can be edited after it was loaded (2,000 verses changed, same row count, gave ndcg@10 0.62 for
    0.88): its contents' digest is compared with the corpus's before every use, and a table that differs is one notice,
    dropped and loaded again. Loading is one transaction, so a table is complete or absent."""
    import psycopg
    from psycopg import sql

    table = "versebench_" + re.sub(r"\W", "_", corpus.corpus_id).lower()
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as e:
        raise BadInput(f"{redact_dsn(dsn)}: cannot connect to PostgreSQL: {str(e).strip().splitlines()[0]}") from None
    ident = sql.Identifier(table)
    with conn.transaction():
        # Two processes loading the same corpus at once: the second waits, then finds the table.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table])
        exists = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is not None
        if exists and table_digest(conn, ident) != corpus_digest(corpus):
            cache.notice(f"PostgreSQL table {table} does not hold corpus {corpus.corpus_id} (its contents' md5 "
                         "differs); loading it again")
            conn.execute(sql.SQL("DROP TABLE {}").format(ident))
            exists = False
        if not exists:
            conn.execute(sql.SQL("CREATE TABLE {} (pos integer PRIMARY KEY, id text NOT NULL, text text NOT NULL)")
                         .format(ident))
            with conn.cursor().copy(sql.SQL("COPY {} (pos, id, text) FROM STDIN").format(ident)) as copy:
                for row in zip(range(len(corpus)), corpus.ids, corpus.texts):
                    copy.write_row(row)
        if index:
            _postgres_trigram(conn, dsn, table, ident)
    return conn, ident.as_string(conn)


def _postgres_trigram(conn, dsn: str, table: str, ident) -> None:
    """The pg_trgm GIN index on the verse text (created once; the caller holds the table's advisory lock)."""
    import psycopg
    from psycopg import sql

    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (text gin_trgm_ops)")
                     .format(sql.Identifier(f"{table}_trgm"), ident))
    except psycopg.Error as e:
        raise BadInput(f"{redact_dsn(dsn)}: cannot create the pg_trgm index ({str(e).strip().splitlines()[0]}); "
                       "install the extension or pass index=false") from None
