"""Metrics against values computed by hand, tie handling, and the distractor metrics."""

import math

import pytest

from harness import metrics as M
from retrievers.base import strict_order


def test_ranx_metrics_match_hand_computed_values():
    qrels = {"a": {"d1": 2, "d2": 1}, "b": {"d3": 1}}
    run = {"a": {"d5": 3.0, "d1": 2.0, "d2": 1.0}, "b": {"d4": 2.0, "d3": 1.0}}
    means, per_q = M.evaluate(qrels, run, ("ndcg@10", "precision@10", "recall@10", "mrr@10"))
    # a: gains 0,2,1 at ranks 1..3 (ranx's ndcg uses linear gain, like trec_eval)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_q["ndcg@10"]["a"] == pytest.approx(dcg / idcg)
    assert per_q["ndcg@10"]["b"] == pytest.approx((1 / math.log2(3)) / 1)
    assert per_q["precision@10"]["a"] == pytest.approx(0.2)
    assert per_q["mrr@10"]["a"] == pytest.approx(0.5) and per_q["mrr@10"]["b"] == pytest.approx(0.5)
    assert means["recall@10"] == pytest.approx(1.0)


def test_query_with_empty_result_counts_as_zero():
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}}
    means, per_q = M.evaluate(qrels, {"a": {"d1": 1.0}}, ("ndcg@10",))
    assert per_q["ndcg@10"] == {"a": 1.0, "b": 0.0}
    assert means["ndcg@10"] == pytest.approx(0.5)


def test_strict_order_breaks_ties_by_canonical_position_and_keeps_other_scores():
    position = {"Matt.1.1": 0, "Matt.1.2": 1, "John.3.16": 2}
    run = {"q": {"John.3.16": 1.0, "Matt.1.2": 1.0, "Matt.1.1": 1.0, "x": 0.5}}
    fixed = strict_order(run, position)["q"]
    order = sorted(fixed, key=lambda d: -fixed[d])
    assert order == ["Matt.1.1", "Matt.1.2", "John.3.16", "x"]
    assert fixed["Matt.1.1"] == 1.0 and fixed["x"] == 0.5
    assert fixed["John.3.16"] > 1.0 - 1e-6
    # Each nudged score is distinct, so every evaluator sees the same order.
    assert len(set(fixed.values())) == 4


def test_distractor_metrics_by_hand():
    qrels = {"q1": {"good": 1}, "q2": {"good": 1}, "q3": {"good": 1}}
    dis = {"q1": {"bad": 1}, "q2": {"bad": 1}, "q3": {"bad": 1}}
    run = {"q1": {"good": 2.0, "bad": 1.0},  # win
           "q2": {"bad": 2.0, "good": 1.0},  # loss
           "q3": {"other": 1.0}}  # neither found: a loss, the relevant verse never appeared
    means, per_q = M.distractor_metrics(run, qrels, dis)
    assert per_q["win_rate"] == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert per_q["distractor@10"]["q1"] == pytest.approx(0.1)
    assert means["win_rate"] == pytest.approx(1 / 3)


def test_paired_p_is_one_for_identical_and_small_for_consistent_drop():
    a = {str(i): 0.5 + 0.01 * (i % 7) for i in range(60)}
    assert M.paired_p(a, dict(a)) == 1.0
    b = {q: v - 0.2 - 0.001 * (int(q) % 3) for q, v in a.items()}
    assert M.paired_p(a, b) < 1e-6
    assert M.paired_p(a, b, "fisher") < 0.01
