"""Hybrid fusion against scores computed by hand, the weights file's guard rails, and dev-only tuning."""

import json

import pytest

from corpus.errors import BadInput
from corpus.qsets import QuerySet
from harness.fusion import tune
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


def test_tuning_refuses_anything_but_dev_splits(home):
    test_split = QuerySet("thematic-test", {"q": "grace"}, {"q": {"Eph.2.8": 1}}, meta={"split": "test"})
    with pytest.raises(BadInput, match="dev splits only"):
        tune(None, "minilm", "wsum", [test_split], home=home)
    with pytest.raises(BadInput, match="dev splits only"):
        tune(None, "minilm", "wsum", [], home=home)


def test_committed_weights_were_tuned_on_dev_splits_only():
    from corpus.qsets import read_set

    for dense, methods in H.read_weights().items():
        for method, entry in methods.items():
            for name in entry["tuned_on"]:
                assert read_set(name).meta["split"] == "dev", (dense, method, name)


@pytest.mark.slow
def test_tune_on_a_dev_split_writes_weights_that_do_not_lose_on_dev(nt_corpus, tmp_path):
    """Real MiniLM and BM25 over the first 300 verses (Matthew 1-11), tuned with ranx.optimize_fusion on ten real
    look-ups; one query finds nothing in BM25 (a real bug: optimize_fusion refused runs with a missing query)."""
    from corpus.bible import Corpus

    small = Corpus(translation="web", scope="nt", ids=nt_corpus.ids[:300], texts=nt_corpus.texts[:300],
                   manifest={**nt_corpus.manifest, "id": "web-nt-first300-test"})
    queries = {"d1": "blessed are the poor in spirit", "d2": "salt of the earth", "d3": "light of the world",
               "d4": "love your enemies", "d5": "our father in heaven", "d6": "do not worry about tomorrow",
               "d7": "ask and it will be given", "d8": "the narrow gate", "d9": "a wise man built his house on rock",
               "d10": "zzzz qqqq"}
    qrels = {"d1": {"Matt.5.3": 2}, "d2": {"Matt.5.13": 2}, "d3": {"Matt.5.14": 2}, "d4": {"Matt.5.44": 2},
             "d5": {"Matt.6.9": 2}, "d6": {"Matt.6.34": 2}, "d7": {"Matt.7.7": 2}, "d8": {"Matt.7.13": 2},
             "d9": {"Matt.7.24": 2}, "d10": {"Matt.7.26": 1}}
    dev = QuerySet("mini-dev", queries, qrels, meta={"split": "dev", "version": "x"})
    path = tmp_path / "weights.json"
    entry = tune(small, "minilm", "wsum", [dev], path=path, home=tmp_path / "home")  # a cold cache of its own
    assert H.read_weights(path)["minilm"]["wsum"] == entry
    w = entry["params"]["weights"]
    assert len(w) == 2 and abs(sum(w) - 1) < 1e-6
    s = entry["dev_scores"]
    assert s["fused"] >= max(s["sparse"], s["dense"]) - 1e-4
    assert entry["tuned_on"] == ["mini-dev"]


def test_min_max_floor_does_not_sink_a_returned_verse_below_unreturned_ones():
    # A real bug: min-max gives a run's last hit 0, the score of absence; with weights (1, 0) BM25's last hit then
    # tied with, and fell behind, dense-only verses, and hybrid scored below BM25 alone.
    sparse = {"q": {"s1": 5.0, "s2": 4.0, "s3": 3.6}}
    dense = {"q": {"a0": 0.9, "s1": 0.5, "a1": 0.4}}
    cfg = H.HybridConfig(fusion="wsum", norm="min-max", params={"weights": [1.0, 0.0]})
    fused = H.fuse(sparse, dense, cfg, 10)["q"]
    assert list(fused)[:3] == ["s1", "s2", "s3"]
    assert len(set(fused.values())) == len(fused)  # strict, so every evaluator agrees


@pytest.mark.slow
def test_numpy_wsum_equals_ranx_fuse_on_real_runs(home, nt_corpus):
    """The numpy path against ranx.fuse itself, on real BM25 and encoder runs (177 queries, depth 100), for the
    tuned weights, the default and a lopsided pair: fused scores to 1e-9, and the same final rankings."""
    from corpus.qsets import load_set
    from retrievers.base import make

    queries = {f"{n}/{q}": t for n in ("keyword", "thematic-curated", "distractor")
               for q, t in load_set(n, "nt").queries.items()}
    sparse = make("bm25", nt_corpus, home=home).search(queries, 100)
    dense = make("encoder", nt_corpus, home=home).search(queries, 100)
    queries["nothing"], sparse["nothing"], dense["nothing"] = "zzqx", {}, {}
    sparse["dense-only"], dense["dense-only"] = {}, dense[next(iter(dense))]
    qids = [q for q in sparse if sparse[q] or dense.get(q)]
    compared = 0
    for weights in ([1.0, 0.0], [0.5, 0.5], [0.3, 0.7]):
        cfg = H.HybridConfig(fusion="wsum", norm="min-max", params={"weights": weights})
        want = H.ranx_fuse(sparse, dense, cfg, qids)
        for q in qids:
            got = H.wsum_min_max(sparse[q], dense[q], weights)
            expect = {d: v for d, v in want[q].items() if d != H.NOTHING}
            assert got.keys() == expect.keys(), q
            assert max(abs(got[d] - v) for d, v in expect.items()) <= 1e-9, q
            compared += len(got)
        assert H.fuse(sparse, dense, cfg, 100) == H.rank_fused(sparse, dense, want, cfg, 100)
    assert compared > 30_000


def _counting(retriever, calls: list):
    search = retriever.search

    def counted(queries, k):
        calls.append((retriever.name, k))
        return search(queries, k)

    retriever.search = counted
    return retriever


@pytest.mark.slow
def test_hybrid_fuses_the_runs_it_is_handed_and_explains_from_one_retrieval(home, nt_corpus):
    """The runner hands the hybrid the runs it holds: fusing them gives what searching gives, and searches nothing
    again; a run at another depth or with other options is not taken. `search_explained` retrieves once."""
    from corpus.qsets import load_set
    from retrievers import base

    queries = load_set("distractor", "nt").queries
    h = base.make("hybrid", nt_corpus, dense="minilm", home=home)
    calls: list = []
    for name in ("bm25", "minilm"):
        _counting(h.part(name), calls)
    alone = h.search(queries, 100)
    assert calls == [("bm25", 100), ("minilm", 100)]
    bm25, minilm = base.make("bm25", nt_corpus, home=home), base.make("minilm", nt_corpus, home=home)
    held = {base.run_key(r.name, r.options, 100): r.search(queries, 100) for r in (bm25, minilm)}
    calls.clear()
    assert h.search(queries, 100, held) == alone and calls == []
    assert h.search(queries, 10, held) == {q: dict(list(v.items())[:10]) for q, v in alone.items()}
    assert calls == []  # depth is max(k, 100): the held depth-100 runs serve k=10 too
    other = {base.run_key("bm25", base.options_class("bm25")(k1=1.2), 100): held[base.run_key("bm25", bm25.options,
                                                                                            100)]}
    h.search(queries, 100, other)
    assert calls == [("bm25", 100), ("minilm", 100)]  # k1=1.2 is another run
    calls.clear()
    fused, why = h.search_explained({"q": "love your enemies"}, 5)
    assert calls == [("bm25", 100), ("minilm", 100)]
    top = list(fused["q"])[0]
    assert top in ("Matt.5.44", "Luke.6.27") and set(fused["q"]) <= set(why["q"])
    assert why["q"][top]["bm25"][1] <= 3 and why["q"][top]["minilm"][1] <= 3  # (score, rank) from each side


@pytest.mark.slow
def test_bench_search_hybrid_shows_each_sides_rank_from_one_retrieval(monkeypatch, capsys):
    """`bench search -r hybrid` in process: every hit carries its parts' (score, rank), and each part searched once."""
    from harness.cli import app
    from retrievers import hybrid

    calls = []
    parts = hybrid.Hybrid.parts

    def counted(self, queries, k, held=None):
        calls.append(k)
        return parts(self, queries, k, held)

    monkeypatch.setattr(hybrid.Hybrid, "parts", counted)
    with pytest.raises(SystemExit) as done:
        app(["search", "love your enemies", "-r", "hybrid", "--dense", "minilm", "--k", "5", "--json"])
    assert done.value.code in (0, None)
    hits = json.loads(capsys.readouterr().out)
    assert calls == [5] and len(hits) == 5
    assert hits[0]["docid"] in ("Matt.5.44", "Luke.6.27") and set(hits[0]["parts"]) == {"bm25", "minilm"}
