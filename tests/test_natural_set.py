"""thematic-natural (dev and test): hand-written queries in six styles, judged by pooling. The counts, the split, the
pool and the judgments line up, and no query copies four words of a verse that says it."""

import re

from corpus.qrels_build import natural_split
from corpus.qsets import QRELS_DIR, read_set

SETS = ("thematic-natural-dev", "thematic-natural-test")
STYLES = {"sentence", "question", "situation", "episode", "paraphrase", "doctrine"}


def both():
    return [read_set(s) for s in SETS]


def test_at_least_400_queries_in_six_styles_split_by_style():
    dev, test = both()
    assert len(dev.queries) + len(test.queries) >= 400 and not set(dev.queries) & set(test.queries)
    tags = {**dev.tags, **test.tags}
    assert set(tags) == set(dev.queries) | set(test.queries) and set(tags.values()) == STYLES
    for style in STYLES:  # stratified: each style half and half
        n_dev = sum(t == style for t in dev.tags.values())
        n_test = sum(t == style for t in test.tags.values())
        assert abs(n_dev - n_test) <= 1 and n_dev >= 30, style
    assert natural_split(tags) == (sorted(dev.queries), sorted(test.queries))  # the seeded split, rebuilt
    assert dev.meta["split"] == "dev" and test.meta["split"] == "test" and dev.meta["pooled"] is True


def test_every_pooled_verse_is_judged_once_and_every_query_has_an_answer():
    for qs in both():
        pool = set()
        for line in (QRELS_DIR / qs.name / "pool.tsv").read_text().splitlines():
            qid, docid, systems = line.split("\t")
            assert systems and (qid, docid) not in pool
            pool.add((qid, docid))
        assert pool == {(q, d) for q, docs in qs.qrels.items() for d in docs}
        assert all(2 in docs.values() for docs in qs.qrels.values())
        assert all(set(docs.values()) <= {0, 1, 2} for docs in qs.qrels.values())
        zeros = sum(r == 0 for docs in qs.qrels.values() for r in docs.values())
        assert zeros > 0.8 * sum(len(d) for d in qs.qrels.values())  # the 0 grades are kept: judged@10 needs them


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def copied_runs(query: str, verse: str, n: int = 4) -> set:
    q, v = words(query), words(verse)
    return {tuple(q[i:i + n]) for i in range(len(q) - n + 1)} & {tuple(v[i:i + n]) for i in range(len(v) - n + 1)}


def test_no_query_copies_four_words_of_a_verse_that_says_it(nt_corpus):
    assert copied_runs("he will give you a new heart", "I will also give you a new heart")  # the check can fire
    bad = [(q, d) for qs in both() for q, docs in qs.qrels.items() for d, r in docs.items()
           if r == 2 and copied_runs(qs.queries[q], nt_corpus.text(d))]
    assert not bad
