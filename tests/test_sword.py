"""sword: SWORD's own search (Debian's diatheke and mkfastmod) on the real WEB module, checked against the corpus.

The module copy and its Lucene index live in the shared cache root (built once, about 15 s of mkfastmod); the
semantics tests run with cache=false so every answer comes from diatheke itself."""

import json
import re
import shutil

import pytest

from corpus.bible import Corpus, load_corpus
from corpus.errors import BadInput
from retrievers import base, sword
from tests.test_retrievers_lexical import BAD_QUERIES, assert_contract


@pytest.fixture(scope="module")
def multiword(home, nt_corpus):
    return base.make("sword", nt_corpus, home=home, cache=False)


@pytest.fixture(scope="module")
def phrase(home, nt_corpus):
    return base.make("sword", nt_corpus, home=home, cache=False, mode="phrase")


@pytest.fixture(scope="module")
def lucene(home, nt_corpus):
    return base.make("sword", nt_corpus, home=home, cache=False, mode="lucene")


def _containing(corpus, words: list[str]) -> list[str]:
    """Verses whose text holds every word as a case-insensitive substring, in canonical order."""
    return [d for d, t in zip(corpus.ids, corpus.texts) if all(w in t.lower() for w in words)]


def test_options_are_checked(home, nt_corpus):
    assert base.option_names("sword") == ("mode", "operator", "max_words", "cache")
    with pytest.raises(BadInput, match="mode must be one of multiword, phrase, lucene, got 'regex'"):
        base.make("sword", nt_corpus, mode="regex", home=home)
    with pytest.raises(BadInput, match="operator applies to mode=lucene only"):
        base.make("sword", nt_corpus, operator="or", home=home)
    with pytest.raises(BadInput, match="operator must be one of and, or"):
        base.make("sword", nt_corpus, mode="lucene", operator="xor", home=home)
    with pytest.raises(BadInput, match="max_words must be a positive integer"):
        base.make("sword", nt_corpus, max_words=0, home=home)


def test_a_corpus_not_read_from_a_sword_module_is_refused(home, nt_corpus):
    c = Corpus("asv", "nt", nt_corpus.ids[:3], nt_corpus.texts[:3], {"id": "asv-nt-x", "source": {"kind": "pypi"}})
    with pytest.raises(BadInput, match="corpus asv-nt-x does not come from a SWORD module"):
        base.make("sword", c, home=home)


def test_the_config_names_the_module_engine_and_range(multiword, lucene):
    c = multiword.config
    assert (c.mode, c.operator, c.module, c.search_range) == ("multiword", None, "engWEB2015eb", "Matt-Rev")
    assert re.search(r"Diatheke .*SWORD: \d", c.engine) and len(c.module_sha256) == 64
    assert lucene.config.operator == "and"
    assert base.config_dict(multiword)["name"] == "sword"


def test_multiword_finds_every_word_in_any_order_and_in_canonical_order(multiword, nt_corpus):
    got = multiword.search({"a": "love neighbor", "b": "Neighbor, LOVE!", "c": "beloved son"}, 1000)
    assert_contract(got, {"a": 0, "b": 0, "c": 0}, 1000, nt_corpus)
    assert list(got["a"]) == list(got["b"]) == _containing(nt_corpus, ["love", "neighbor"])
    assert "Matt.5.43" in got["a"] and "Lev.19.18" not in got["a"]  # the NT corpus: SWORD searched Matt-Rev only
    # Substrings, as SWORD matches: "love" is in "beloved", "son" in "person".
    assert set(_containing(nt_corpus, ["beloved", "son"])) <= set(got["c"])
    pos = nt_corpus.position
    assert [pos[d] for d in got["c"]] == sorted(pos[d] for d in got["c"])  # canonical order
    assert list(multiword.search({"q": "love neighbor"}, 3)["q"]) == list(got["a"])[:3]


def test_multiword_slides_a_window_of_two_verses(multiword, nt_corpus):
    # No verse has both words; John 11:35 "Jesus wept." and 11:36 "... See how much affection he had ..." do.
    assert _containing(nt_corpus, ["wept", "affection"]) == []
    assert list(multiword.search({"q": "wept affection"}, 10)["q"]) == ["John.11.35", "John.11.36"]
    # Every extra hit is one of a pair of neighbours whose joined text holds all the words.
    words, texts = ["jesus", "wept"], dict(zip(nt_corpus.ids, nt_corpus.texts))
    got = list(multiword.search({"q": "Jesus wept"}, 100)["q"])
    alone = _containing(nt_corpus, words)
    assert set(alone) <= set(got)
    for d in set(got) - set(alone):
        i = nt_corpus.position[d]
        pairs = [nt_corpus.ids[j:j + 2] for j in (i - 1, i) if 0 <= j < len(nt_corpus) - 1]
        assert any(all(w in " ".join(texts[x] for x in p).lower() for w in words) for p in pairs), d


@pytest.mark.slow  # a phrase scan strips every verse's markup: about 1 s a query
def test_phrase_needs_the_words_adjacent_and_in_order(phrase, nt_corpus):
    queries = {"a": "love your neighbor", "b": "neighbor your love", "c": "your neighbor as yourself.",
               "d": "  Jesus   wept ", "e": "neighbor, and"}
    got = phrase.search(queries, 100)
    assert_contract(got, queries, 100, nt_corpus)
    for qid in ("a", "c", "d", "e"):
        want = re.sub(r"^\W+|\W+$", "", " ".join(queries[qid].split())).lower()
        assert list(got[qid]) == [d for d, t in zip(nt_corpus.ids, nt_corpus.texts) if want in t.lower()], qid
    assert got["b"] == {} and list(got["d"]) == ["John.11.35"] and "Matt.5.43" in got["a"]
    assert phrase.search({"q": "love neighbor"}, 10)["q"] == {}  # adjacency: "love your neighbor" is not it


def test_lucene_ranks_whole_words_by_its_score(lucene, multiword, home, nt_corpus):
    got = lucene.search({"a": "love neighbor", "b": "neighbor love"}, 1000)
    assert_contract(got, {"a": 0, "b": 0}, 1000, nt_corpus)
    assert got["a"] == got["b"]
    # Every word required, as whole words: the same verses as the multiword scan here, in Lucene's order.
    assert set(got["a"]) == set(_containing(nt_corpus, ["love", "neighbor"]))
    assert list(got["a"])[0] == "Rom.13.10" and list(got["a"]) != _containing(nt_corpus, ["love", "neighbor"])
    for d in got["a"]:
        assert re.search(r"\blove\b", nt_corpus.text(d), re.I) and re.search(r"\bneighbor\b", nt_corpus.text(d), re.I)
    # Whole words: "beloved" is no "love" to Lucene, though it is to multiword.
    whole, sub = (r.search({"q": "beloved son"}, 1000)["q"] for r in (lucene, multiword))
    assert whole.keys() < sub.keys()
    any_word = base.make("sword", nt_corpus, home=home, cache=False, mode="lucene", operator="or")
    wide = any_word.search({"a": "love neighbor"}, 1000)["a"]
    assert set(got["a"]) < set(wide) and len(wide) > 100


@pytest.mark.slow
def test_every_reference_maps_to_its_corpus_verse(home):
    """A phrase of one space is in every verse with two words: SWORD's whole answer, mapped, is the corpus, in order
    (its English book names, "I Corinthians", "Revelation of John", read; the deuterocanon outside the range)."""
    corpus = load_corpus("web", "all", home=home)
    r = base.make("sword", corpus, home=home, cache=False)
    assert r.config.search_range == "Gen-Mal;Matt-Rev"
    refs = r._ask(" ")
    assert "Rom.16.25" in refs  # a footnote only: SWORD finds its text, the corpus has none, so it is dropped
    assert list(r._ranked(refs, 10**6)) == list(corpus.ids)
    assert sword.osis_ref("Revelation of John 22:21") == "Rev.22.21"
    assert sword.osis_ref("III John 1:14") == "3John.1.14" and sword.osis_ref("Song of Solomon 2:1") == "Song.2.1"
    with pytest.raises(BadInput, match="'Sirach 1:1', which is no verse of the 66 books"):
        sword.osis_ref("Sirach 1:1")


def test_the_corpus_scope_restricts_sword(home):
    ot = base.make("sword", load_corpus("web", "ot", home=home), home=home, cache=False)
    assert ot.config.search_range == "Gen-Mal"
    got = list(ot.search({"q": "love neighbor"}, 100)["q"])
    assert "Lev.19.18" in got and all(d.split(".")[0] in sword.books_for("ot") for d in got)
    assert not any(d.startswith("Sir.") for d in got)  # the module's Sirach 13:15 matches too, outside the range


@pytest.mark.parametrize("mode", ["multiword", "lucene", pytest.param("phrase", marks=pytest.mark.slow)])
def test_syntax_and_junk_never_reach_sword(home, nt_corpus, mode):
    r = base.make("sword", nt_corpus, home=home, cache=False, mode=mode)
    queries = {**BAD_QUERIES, "quote": '"love', "quotes": 'love" -k "x', "dash": "-b KJV -s regex -k .",
               "nul": "love\x00 neighbor", "newline": "love\nneighbor", "ops": "love AND NOT neighbor",
               "surrogate": "love \ud800neighbor"}
    got = r.search(queries, 10)
    assert_contract(got, queries, 10, nt_corpus)
    for name in ("empty", "spaces", "punct"):
        assert got[name] == {}, name
    assert r.diatheke_key("") == r.diatheke_key(" \t ") == r.diatheke_key("?!.,") == ""
    if mode != "phrase":
        # Only words reach SWORD: Lucene's operators and characters are gone, AND/NOT are plain words.
        for name in ("lucene", "lucene2", "quote", "dash", "ops"):
            assert re.fullmatch(r"(\+?\w+ ?)*", r.diatheke_key(queries[name])), name
        assert got["quote"] == r.search({"q": "love"}, 10)["q"]
        assert r.diatheke_key("love AND NOT neighbor") in ("love and not neighbor", "+love +and +not +neighbor")
        assert got["nul"] == got["newline"] == got["surrogate"] == r.search({"q": "love neighbor"}, 10)["q"]
        assert r.diatheke_key(" ".join(f"w{i}" for i in range(40))).count("w") == 32  # max_words
    else:
        assert r.diatheke_key('"love') == "love" and r.diatheke_key("love\x00 neighbor") == "love neighbor"
        assert r.diatheke_key("love \ud800neighbor") == "love neighbor"
        assert r.diatheke_key(BAD_QUERIES["long"]) == ""  # longer than any verse: cannot match, never run


def test_answers_are_cached_and_a_damaged_cache_is_rebuilt(home, nt_corpus, tmp_path, capfd):
    # The module folder is a cache entry: copied whole (its manifest with it), it is as good in another root.
    folder = base.make("sword", nt_corpus, home=home, cache=False).folder
    shutil.copytree(folder, tmp_path / "sword" / folder.name)
    queries = {"a": "love neighbor", "b": "faith hope", "c": ""}
    first = base.make("sword", nt_corpus, home=tmp_path).search(queries, 50)
    r = base.make("sword", nt_corpus, home=tmp_path)
    stored = json.loads(r._answers.path.read_text())
    assert set(stored["answers"]) == {"love neighbor", "faith hope"} and stored["key"]["mode"] == "multiword"
    assert stored["answers"]["love neighbor"].split()[:2] == ["Matt.5.43", "Matt.19.19"]
    assert r.search(queries, 50) == first
    capfd.readouterr()

    # A damaged entry: not trusted (its answer would say John 3:16), one notice, searched again, the same results.
    r._answers.path.write_text(r._answers.path.read_text().replace("Matt.5.43", "John.3.16"))
    again = base.make("sword", nt_corpus, home=tmp_path)
    assert "notice: SWORD answers cache" in capfd.readouterr().err and again._answers.answers == {}
    assert again.search(queries, 50) == first
    assert json.loads(again._answers.path.read_text())["answers"]["love neighbor"].startswith("Matt.5.43")
    # Another mode has its own answers.
    assert base.make("sword", nt_corpus, home=tmp_path, mode="phrase")._answers.path != again._answers.path


@pytest.mark.slow
def test_a_damaged_module_folder_is_rebuilt(home, nt_corpus, tmp_path, capfd):
    folder = base.make("sword", nt_corpus, home=home, cache=False).folder
    copy = tmp_path / "sword" / folder.name
    shutil.copytree(folder, copy)
    index = next((copy / "modules").rglob("lucene/*.cfs"))
    data = bytearray(index.read_bytes())
    data[1000:1100] = bytes(100)
    index.write_bytes(bytes(data))
    capfd.readouterr()
    r = base.make("sword", nt_corpus, home=tmp_path, cache=False, mode="lucene")
    assert "notice: SWORD module cache" in capfd.readouterr().err and r.folder == copy
    assert list(r.search({"q": "love neighbor"}, 3)["q"]) == ["Rom.13.10", "Matt.5.43", "Matt.19.19"]
    assert not list((tmp_path / "sword").glob(".tmp-*"))


def test_a_long_answer_is_cached_cut_and_a_deeper_search_asks_again(home, nt_corpus, tmp_path):
    folder = base.make("sword", nt_corpus, home=home, cache=False).folder
    shutil.copytree(folder, tmp_path / "sword" / folder.name)
    plain = base.make("sword", nt_corpus, home=home, cache=False)
    full = plain.search({"q": "the"}, 5000)["q"]  # "the" is in most verses (and in "them", "other", ...)
    assert len(full) > sword.STORED_REFS + 1000
    base.make("sword", nt_corpus, home=tmp_path).search({"q": "the"}, 10)
    r = base.make("sword", nt_corpus, home=tmp_path)
    stored = r._answers.answers["the"].split()
    assert len(stored) == sword.STORED_REFS + 1 and stored[-1] == "+" and stored[:3] == list(full)[:3]
    assert r._answers.get("the", sword.STORED_REFS - sword.MARGIN) == stored[:-1]
    assert r._answers.get("the", sword.STORED_REFS) is None  # deeper than the cut serves: diatheke again
    assert r.search({"q": "the"}, 100)["q"] == plain.search({"q": "the"}, 100)["q"]
    assert r.search({"q": "the"}, 5000)["q"] == full
