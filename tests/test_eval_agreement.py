"""ranx's numbers agree with an independent implementation (ir_measures, on pytrec_eval/trec_eval) on real runs."""

import ir_measures
import pytest
from ir_measures import P, R, RR, nDCG

from harness import metrics as M
from corpus.qsets import format_run, load_set, read_run
from retrievers.base import strict_order
from retrievers.base import make

PAIRS = {"ndcg@10": nDCG @ 10, "precision@10": P @ 10, "recall@10": R @ 10, "recall@100": R @ 100,
         "mrr@10": RR @ 10}


@pytest.fixture(scope="module")
def runs(home, nt_corpus, tmp_path_factory):
    """Real ILIKE and BM25 runs over two real sets, written to TREC files and read back as the evaluators would."""
    out = {}
    folder = tmp_path_factory.mktemp("runs")
    for name in ("ilike", "bm25"):
        r = make(name, nt_corpus, home=home)
        for set_name in ("keyword", "distractor"):
            qs = load_set(set_name, "nt")
            run = strict_order(r.search(qs.queries, 100), nt_corpus.position)
            path = folder / f"{set_name}-{name}.trec"
            path.write_text(format_run(run, name))
            out[(set_name, name)] = (qs, read_run(path))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["keyword", "distractor"])
@pytest.mark.parametrize("retriever", ["ilike", "bm25"])
def test_ranx_agrees_with_ir_measures(runs, set_name, retriever):
    qs, run = runs[(set_name, retriever)]
    ours, per_query = M.evaluate(qs.qrels, run, tuple(PAIRS))
    theirs = ir_measures.calc_aggregate(list(PAIRS.values()), qs.qrels, run)
    for name, measure in PAIRS.items():
        assert ours[name] == pytest.approx(theirs[measure], abs=1e-6), name
    # and query by query, so two errors cannot cancel out in the mean
    for m in ir_measures.iter_calc([nDCG @ 10], qs.qrels, run):
        assert per_query["ndcg@10"][m.query_id] == pytest.approx(m.value, abs=1e-6)


def test_a_tie_is_ranked_the_same_by_both_evaluators():
    # Without strict_order, ranx and trec_eval may order tied verses differently and disagree.
    qrels = {"q": {"Matt.1.2": 1}}
    tied = {"q": {"Matt.1.1": 1.0, "Matt.1.2": 1.0, "Matt.1.3": 1.0}}
    fixed = strict_order(tied, {"Matt.1.1": 0, "Matt.1.2": 1, "Matt.1.3": 2})
    ours = M.evaluate(qrels, fixed, ("mrr@10",))[0]["mrr@10"]
    theirs = ir_measures.calc_aggregate([RR @ 10], qrels, fixed)[RR @ 10]
    assert ours == pytest.approx(0.5) and theirs == pytest.approx(0.5)
