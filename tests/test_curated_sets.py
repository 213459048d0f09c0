"""The hand-curated query sets: enough queries, every query judged, every verse a real WEB verse, no verse both
relevant and a distractor. These files are trusted as ground truth, so they are checked against the real corpus."""

import pytest

from corpus.books import scope_of
from corpus.qsets import read_set, validate_set

# (set, scope in set.json, kind, minimum queries, qid prefix)
CURATED = [
    ("keyword", "all", "keyword", 80, "kw-"),
    ("thematic-curated", "nt", "thematic", 30, "tc-"),
    ("distractor", "nt", "distractor", 40, "ds-"),
]


@pytest.fixture(scope="module")
def corpus_ids(home, nt_corpus):
    from corpus.bible import load_corpus

    ids = {"nt": set(nt_corpus.ids)}

    def by_scope(scope):
        if scope not in ids:
            ids[scope] = set(load_corpus("web", scope, home=home).ids)
        return ids[scope]

    return by_scope


@pytest.mark.parametrize("name, scope, kind, minimum, prefix", CURATED)
def test_set_is_complete_and_judged(name, scope, kind, minimum, prefix):
    qs = read_set(name)  # read_queries already refuses duplicate qids with FILE:LINE
    assert qs.meta["scope"] == scope and qs.meta["kind"] == kind
    assert qs.meta["split"] is None and qs.meta["generated_by"] is None
    assert len(qs.queries) >= minimum
    assert all(q.startswith(prefix) for q in qs.queries)
    assert len(set(qs.queries.values())) == len(qs.queries), "two queries with the same text"
    for qid in qs.queries:
        assert any(r > 0 for r in qs.qrels.get(qid, {}).values()), f"{qid} has no relevant verse"
    assert set(qs.qrels) <= set(qs.queries)


@pytest.mark.parametrize("name", [c[0] for c in CURATED])
def test_every_docid_is_a_web_verse_of_the_set_scope(name, corpus_ids):
    qs = read_set(name)
    known = corpus_ids(qs.meta["scope"])
    judged = [d for docs in qs.qrels.values() for d in docs]
    judged += [d for docs in (qs.distractors or {}).values() for d in docs]
    missing = sorted({d for d in judged if d not in known})
    assert not missing, f"{name}: not verses of the WEB {qs.meta['scope']} corpus: {missing[:10]}"
    validate_set(name, corpus_ids)  # the harness's own checks agree


def test_keyword_set_is_mostly_new_testament():
    qs = read_set("keyword")
    # The first rel-2 judgment of a query is the verse it recalls; parallels and quotations follow.
    recalled = [next(d for d, r in docs.items() if r == 2) for docs in qs.qrels.values()]
    nt = sum(scope_of(d) == "nt" for d in recalled)
    assert nt >= 60 and len(recalled) - nt > 0


def test_distractors_never_relevant_and_enough_of_them():
    qs = read_set("distractor")
    assert set(qs.distractors) == set(qs.queries)
    for qid, docs in qs.distractors.items():
        assert len(docs) >= 2, f"{qid} has fewer than 2 distractors"
        assert all(r == 1 for r in docs.values())
        both = set(docs) & set(qs.qrels[qid])
        assert not both, f"{qid}: {sorted(both)} both relevant and distractor"


def test_judged_verse_texts_are_what_the_queries_recall(nt_corpus):
    # Spot checks that fail if ids drift (a versification slip would move these to neighbouring verses).
    expect = {
        ("keyword", "kw-002", "Phil.4.13"): "all things through Christ",
        ("keyword", "kw-003", "Rom.6.23"): "wages of sin",
        ("distractor", "ds-001", "John.6.48"): "I am the bread of life",
        ("thematic-curated", "tc-003", "Matt.6.34"): "anxious for tomorrow",
    }
    for (name, qid, docid), words in expect.items():
        assert read_set(name).qrels[qid][docid] == 2
        assert words in nt_corpus.text(docid)
    assert "bread" in nt_corpus.text(next(iter(read_set("distractor").distractors["ds-001"])))
