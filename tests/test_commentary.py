"""Matthew Henry's Concise Commentary read from Debian's sword-comm-mhcc: passages land on the verses they print."""

import pytest
from pysword.canons import canons

from corpus.bible import sword_dir
from corpus.commentary import read_passages, sentences
from corpus.errors import BadInput


@pytest.fixture(scope="module")
def passages():
    return read_passages(sword_dir(), canons["kjv"])


def by_first(ps, verse):
    return next(p for p in ps if p.verses[0] == verse)


def test_passages_cover_the_verses_their_labels_print(passages):
    ps, counts = passages
    assert counts["passages"] > 1000 and counts["label_mismatch"] == 0 and counts["verses"] > 7900
    # pysword's key for Matt 5:3 returns the note on 5:21-26; the slots give the beatitudes
    p = by_first(ps, "Matt.5.3")
    assert p.verses == tuple(f"Matt.5.{v}" for v in range(3, 13))
    assert p.text.startswith("Our Saviour here gives eight characters of blessed people")
    assert by_first(ps, "Matt.5.21").text.startswith("The Jewish teachers had taught, that nothing except actual murder")


def test_a_chapter_outline_becomes_labelled_lines(passages):
    ps, _ = passages
    first = by_first(ps, "Matt.5.1")
    lines = dict(first.outline)
    assert lines["Who are blessed"] == tuple(f"Matt.5.{v}" for v in range(3, 13))
    assert lines["Christ came to confirm the law"] == ("Matt.5.17", "Matt.5.18", "Matt.5.19", "Matt.5.20")
    assert first.verses == ("Matt.5.1", "Matt.5.2") and first.text.startswith("None will find happiness")
    # a book's first outline line is not its introduction
    assert dict(by_first(ps, "Matt.1.1").outline)["The genealogy of Jesus"][-1] == "Matt.1.17"


def test_sentences_are_of_a_useful_length():
    text = "Short one. " + "This sentence has exactly eight words in it. " * 2 + "Word " * 50 + "."
    assert sentences(text) == ["This sentence has exactly eight words in it."] * 2


def test_a_missing_module_says_how_to_install_it(tmp_path):
    with pytest.raises(BadInput, match="sword-comm-mhcc"):
        read_passages(tmp_path, canons["kjv"])
