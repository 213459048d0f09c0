"""Hybrid fusion against scores computed by hand, the weights file's guard rails, and dev-only tuning."""

import json

import pytest

from harness.errors import BadInput
from harness.qsets import QuerySet
from retrievers import hybrid as H


def test_wsum_minmax_matches_hand_computed_scores():
    sparse = {"q": {"a": 10.0, "b": 6.0, "c": 2.0}}
    dense = {"q": {"b": 0.9, "d": 0.5, "a": 0.1}}
    cfg = H.HybridConfig(fusion="wsum", norm="min-max", params={"weights": [0.3, 0.7]})
    fused = H.fuse(sparse, dense, cfg, 10)["q"]
    # min-max: sparse a=1, b=0.5, c=0; dense b=1, d=0.5, a=0 -> wsum 0.3*s + 0.7*d
    expect = {"a": 0.3 * 1.0, "b": 0.3 * 0.5 + 0.7 * 1.0, "c": 0.0, "d": 0.7 * 0.5}
    assert fused.keys() == expect.keys()
    for d, v in expect.items():
        assert fused[d] == pytest.approx(v)
    assert list(fused)[:2] == ["b", "d"]


def test_rrf_matches_hand_computed_scores():
    sparse = {"q": {"a": 3.0, "b": 2.0}}
    dense = {"q": {"b": 0.9, "c": 0.8}}
    cfg = H.HybridConfig(fusion="rrf", norm=None, params={"k": 60})
    fused = H.fuse(sparse, dense, cfg, 10)["q"]
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)


def test_one_side_empty_and_k_cut():
    cfg = H.HybridConfig(fusion="wsum", params={"weights": [0.5, 0.5]})
    fused = H.fuse({"q": {}, "e": {}}, {"q": {"x": 0.4, "y": 0.2, "z": 0.1}, "e": {}}, cfg, 2)
    assert list(fused["q"]) == ["x", "y"] and fused["e"] == {}


def test_weights_file_for_a_retriever_that_is_not_there_is_refused(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"colbert": {"wsum": {"params": {"weights": [0.5, 0.5]}}}}))
    with pytest.raises(BadInput, match="not a dense retriever"):
        H.read_weights(p)
    p.write_text(json.dumps({"minilm": {"wsum": {"params": {"weights": [0.5, 0.2, 0.3]}}}}))
    with pytest.raises(BadInput, match="two numbers"):
        H.read_weights(p)
    p.write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        H.read_weights(p)


def test_tuning_refuses_anything_but_dev_splits():
    test_split = QuerySet("thematic-test", {"q": "grace"}, {"q": {"Eph.2.8": 1}}, meta={"split": "test"})
    with pytest.raises(BadInput, match="dev splits only"):
        H.tune(None, "minilm", "wsum", [test_split])
    with pytest.raises(BadInput, match="dev splits only"):
        H.tune(None, "minilm", "wsum", [])


def test_committed_weights_were_tuned_on_dev_splits_only():
    from harness.qsets import read_set

    for dense, methods in H.read_weights().items():
        for method, entry in methods.items():
            for name in entry["tuned_on"]:
                assert read_set(name).meta["split"] == "dev", (dense, method, name)
