"""No evaluation label reaches the fine-tuning pairs. Builds the real pair lists (all five translations, Nave's
Topical Bible, Matthew Henry's commentary, the natural anchors) and draws real batches; trains nothing."""

import json

import numpy as np
import pytest

from corpus.qrels_build import TOPICS_FILE, query_text, split_unit, test_topic_keys
from corpus.qsets import QRELS_DIR, read_qrels, read_queries
from encoder import pairs as P
from encoder.data import heldout

CURATED = ("thematic-curated", "keyword", "distractor")


@pytest.fixture(scope="module", params=["dev+test", "test"])
def built(home, request):
    return P.build(naves_holdout=request.param, commentary=True, natural=P.NATURAL_FILE, home=home)


MIX = (0.2, 0.3, 0.3, 0.1, 0.1)


@pytest.fixture(scope="module")
def batches(built):
    return [P.sample_batch(built, 256, seed, step, MIX) for seed in (0, 1) for step in range(40)]


def queries(name):
    return read_queries(QRELS_DIR / name / "queries.tsv")


def test_no_nave_topic_of_the_test_split(built):
    test_units = {split_unit(k) for k in test_topic_keys()}
    assert test_units and built.naves_topics
    assert not [k for k in built.naves_topics if split_unit(k) in test_units]
    assert not [k for k in built.naves_topics if k in test_topic_keys()]
    # nor the words of any thematic-test query (a topic's twin elsewhere would show up here)
    test_texts = {P.norm(t) for t in queries("thematic-test").values()}
    assert not test_texts & {P.norm(label) for label in built.naves_labels}
    if built.stats["naves"]["holdout"] == "dev+test":
        dev = set(json.loads((QRELS_DIR / TOPICS_FILE).read_text())["dev"])
        assert not {split_unit(k) for k in dev} & {split_unit(k) for k in built.naves_topics}


def test_the_filter_is_not_vacuous(built):
    """Without the hold-out, test topics WOULD be in the pairs: the thematic-test queries come from Nave labels."""
    from corpus import naves
    topics, _ = naves.topics()
    test_units = {split_unit(k) for k in test_topic_keys()}
    would = {query_text(t.key, s.path) for t in topics if split_unit(t.key) in test_units for s in t.subtopics
             if s.refs}
    test_texts = set(queries("thematic-test").values())
    assert len(would & test_texts) > 0.9 * len(test_texts)
    assert built.stats["naves"]["topics_heldout"] > 0 and built.stats["naves"]["train_pairs"] > 10_000


def test_no_curated_query_is_an_anchor(built, batches):
    curated = {P.norm(t) for name in CURATED for t in queries(name).values()}
    assert len(curated) > 150
    assert curated <= built.forbidden
    assert not curated & {P.norm(label) for label in built.naves_labels}
    anchors = {P.norm(p.anchor) for b in batches for p in b}
    assert not anchors & built.forbidden
    assert not {P.norm(a) for a in built.comment_anchors} & built.forbidden


def near_duplicates(queries: dict[str, str], texts, threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """(qid, text, Jaccard) for every query whose word set has Jaccard >= threshold with one of `texts`. Prefix
    filtering keeps it exact and fast: a text with Jaccard >= t shares at least t*|q| of the query's n words, so it
    holds one of any n - ceil(t*n) + 1 of them; the rarest ones are looked up."""
    import math
    from collections import defaultdict

    words = [frozenset(P.norm(t).split()) for t in texts]
    index = defaultdict(list)
    for i, w in enumerate(words):
        for tok in w:
            index[tok].append(i)
    out = []
    for qid, q in queries.items():
        qw = frozenset(P.norm(q).split())
        rare = sorted(qw, key=lambda tok: len(index[tok]))[:len(qw) - math.ceil(threshold * len(qw)) + 1]
        for i in {i for tok in rare for i in index[tok]}:
            j = len(qw & words[i]) / len(qw | words[i])
            if j >= threshold:
                out.append((qid, texts[i], round(j, 2)))
    return out


def test_no_natural_query_is_a_near_duplicate_of_a_training_anchor(built):
    """The natural-language sets are people's words: none may be (nearly) a Nave's label, a commentary anchor or a
    verse text the pairs are drawn from, at token Jaccard >= 0.8."""
    natural = {**queries("thematic-natural-dev"), **queries("thematic-natural-test")}
    assert len(natural) >= 400
    assert {P.norm(t) for t in natural.values()} <= built.forbidden  # exact copies are refused as anchors too
    assert not near_duplicates(natural, list(built.naves_labels))
    assert not near_duplicates(natural, list(built.comment_anchors))
    for translation, texts in built.texts.items():  # the verse texts spans and translation pairs come from
        assert not near_duplicates(natural, [t for t in texts if t]), translation
    # and the check can fire: a label itself is its own near-duplicate
    label = next(iter(built.naves_labels))
    assert near_duplicates({"x": label}, list(built.naves_labels))


def test_no_keyword_xlate_verse_in_span_or_translation_pairs(built, batches):
    xlate = {d for docs in read_qrels(QRELS_DIR / "keyword-xlate" / "qrels.trec").values() for d in docs}
    assert len(xlate) == 415 and built.xlate_holdout == xlate
    pool = {built.ids[k] for k in np.concatenate([built.train_verses, built.val_verses])}
    assert not pool & xlate
    drawn = [p for b in batches for p in b if p.kind in ("xlate", "span")]
    assert len(drawn) > 5000 and not {p.verse for p in drawn} & xlate
    val = P.val_pairs(built, 512, 0)
    assert not {p.verse for kind in ("xlate", "span") for p in val[kind]} & xlate
    # the commentary speaks of whole passages, keyword-xlate verses among them: never one of them as a positive
    comment = {built.ids[int(k)] for v in built.comment_train for k in v} | {built.ids[k] for _, k in built.comment_val}
    assert len(comment) > 5000 and not comment & xlate
    assert not {p.verse for b in batches for p in b if p.kind == "comment"} & xlate


def test_batches_hold_each_verse_and_label_once(batches):
    for b in batches:
        assert len(b) == 256
        assert len({p.verse for p in b}) == 256
        labels = [p.anchor_key for p in b if p.kind in ("naves", "comment", "natural")]
        # one commentary passage, and one Nave label with its natural anchors, at most once: its verses are all
        # positives for each of its anchors
        assert len(labels) == len(set(labels))
    kinds = {p.kind for b in batches for p in b}
    assert kinds == set(P.KINDS)


def test_spans_are_4_to_12_words_of_another_translation(batches):
    spans = [p for b in batches for p in b if p.kind == "span"]
    n = [len(p.anchor.split()) for p in spans]
    assert min(n) >= 1 and max(n) <= P.SPAN_MAX and np.mean([4 <= k <= 12 for k in n]) > 0.97
    assert all(p.anchor_translation != p.positive_translation for p in spans)
    xl = [p for b in batches for p in b if p.kind == "xlate"]
    assert all(p.anchor_translation != p.positive_translation for p in xl)


def test_validation_uses_the_pretraining_held_out_verses(built):
    frac = built.stats["val_fraction"]
    assert all(heldout(built.ids[k], frac) for k in built.val_verses)
    assert not any(heldout(built.ids[k], frac) for k in built.train_verses[:5000])
    val = P.val_pairs(built, 512, 0)
    assert all(heldout(p.verse, frac) for ps in val.values() for p in ps)
    assert all(not heldout(built.ids[int(k)], frac) for v in built.naves_train[:2000] for k in v)
    assert all(not heldout(built.ids[int(k)], frac) for v in built.comment_train for k in v)
    assert val["comment"] and all(heldout(p.verse, frac) for p in val["comment"])


def test_batches_are_a_function_of_seed_and_step(built):
    a = P.sample_batch(built, 64, 3, 17)
    assert a == P.sample_batch(built, 64, 3, 17) and a != P.sample_batch(built, 64, 3, 18)


def test_a_mix_from_before_the_commentary_draws_as_it_did(built):
    """Checkpoints fine-tuned with three weights resume to the same batches: the fourth kind gets weight 0."""
    assert P.check_mix((0.2, 0.4, 0.4)) == P.check_mix((0.2, 0.4, 0.4, 0.0))
    assert P.sample_batch(built, 64, 0, 5, (0.2, 0.4, 0.4)) == P.sample_batch(built, 64, 0, 5, (0.2, 0.4, 0.4, 0))
    assert not [p for p in P.sample_batch(built, 256, 0, 5, (0.2, 0.4, 0.4)) if p.kind == "comment"]


def test_natural_anchors_ride_on_training_labels_only(built, batches):
    """A natural anchor is drawn only for a label that is itself a training label; the label's hold-out takes its
    anchors out, and no anchor is (nearly) a query of a committed set."""
    stats = built.stats["natural"]
    rows = P.read_natural(P.NATURAL_FILE)
    assert stats["rows"] == len(rows) >= 900 and stats["anchors"] >= 800
    train_labels = set(built.naves_labels[:len(built.naves_train)])
    assert all(built.naves_labels[li] in train_labels for li in built.natural_label)
    # which labels a hold-out removes is real: the 'test' hold-out keeps dev topics, so it keeps at least as many
    if stats.get("label_not_in_training"):
        assert {r[0] for r in rows} - train_labels
    drawn = [p for b in batches for p in b if p.kind == "natural"]
    assert len(drawn) > 1000
    label_of = dict(zip(built.natural_anchors, built.natural_label))
    for p in drawn[:500]:  # the positive is a training verse of the anchor's own label, keyed by that label
        li = label_of[p.anchor]
        assert p.anchor_key == f"naves:{li}"
        assert built.ids.index(p.verse) in set(built.naves_train[li].tolist())
    natural_evals = {**queries("thematic-natural-dev"), **queries("thematic-natural-test")}
    assert not near_duplicates(natural_evals, list(built.natural_anchors))
    assert not {P.norm(a) for a in built.natural_anchors} & built.forbidden


def test_natural_anchors_near_an_evaluation_query_are_dropped(home, tmp_path):
    """The near-duplicate guard fires: an anchor one word away from a committed query is refused, a fresh one kept."""
    pd0 = P.build(naves_holdout="dev+test", limit=2000, home=home)
    label = pd0.naves_labels[0]
    q = next(iter(queries("thematic-natural-dev").values()))
    words = q.split()
    near = " ".join(words + ["today"]) if len(words) >= 5 else q
    f = tmp_path / "anchors.tsv"
    f.write_text(f"{label}\tsentence\t{near}\n{label}\tquestion\tzzz qqq www unusual words\n"
                 f"not a label at all\tquestion\tsomething else entirely here\n", "utf-8")
    pd = P.build(naves_holdout="dev+test", limit=2000, natural=f, home=home)
    assert pd.stats["natural"]["near_an_evaluation_query"] == 1
    assert pd.stats["natural"]["label_not_in_training"] == 1
    assert pd.natural_anchors == ("zzz qqq www unusual words",)


def test_a_mix_from_before_the_natural_kind_draws_as_it_did(built):
    assert P.check_mix((0.2, 0.3, 0.3, 0.2)) == P.check_mix((0.2, 0.3, 0.3, 0.2, 0.0))
    four = P.sample_batch(built, 128, 0, 7, (0.2, 0.3, 0.3, 0.2))
    assert four == P.sample_batch(built, 128, 0, 7, (0.2, 0.3, 0.3, 0.2, 0))
    assert not [p for p in four if p.kind == "natural"]


def test_a_malformed_natural_anchors_file_is_one_line(tmp_path):
    f = tmp_path / "anchors.tsv"
    f.write_text("# comment\nlabel only\n", "utf-8")
    with pytest.raises(P.BadInput, match=r"anchors.tsv:2: expected label<TAB>style<TAB>query"):
        P.read_natural(f)
