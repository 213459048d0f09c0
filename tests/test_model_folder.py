"""Any embedding model by folder (`-r dense -o model=PATH`): MiniLM's folder through our own model.py ranks as the
sentence-transformers reference does; a non-BERT sentence-transformers folder (a tiny random MPNet made here) runs
through sentence-transformers; the verse vectors are keyed by the folder's content and the options that change them;
a bad folder is one line, exit 2; the gate judges a model folder against a baseline made from the same spec."""

import json
from pathlib import Path

import numpy as np
import pytest

from corpus.bible import Corpus
from corpus.errors import BadInput
from encoder.hf import minilm_dir
from retrievers import base, model_folder
from tests.test_cli import assert_one_line_error, bench


@pytest.fixture
def small_corpus(nt_corpus):
    """The first 300 real verses of the WEB New Testament, as a corpus of their own (own id, own cache entries)."""
    return Corpus(translation="web", scope="nt", ids=nt_corpus.ids[:300], texts=nt_corpus.texts[:300],
                  manifest={**nt_corpus.manifest, "id": "web-nt-first300-dense-test"})


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory) -> Path:
    """A sentence-transformers folder around a tiny MPNet with random weights (MiniLM's WordPiece tokenizer), made
    and saved here with transformers and sentence-transformers: a model our BERT cannot run."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("mpnet")
    torch.manual_seed(0)
    tk = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    MPNetModel(MPNetConfig(vocab_size=tk.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=130)).save_pretrained(root / "raw")
    tk.save_pretrained(root / "raw")
    t = Transformer(str(root / "raw"), max_seq_length=128)
    SentenceTransformer(modules=[t, Pooling(t.get_embedding_dimension(), pooling_mode="mean"), Normalize()],
                        device="cpu").save(str(root / "st"))
    return root / "st"


def test_minilm_folder_runs_through_our_model(small_corpus, tmp_path):
    r = base.make("dense", small_corpus, home=tmp_path, model=str(minilm_dir()))
    assert (r.config.engine, r.config.pooling, r.config.model, r.config.max_length) == ("versebench", "mean", "minilm",
                                                                                     256)
    from retrievers.minilm import load_model

    want = load_model(256).encode(list(small_corpus.texts[:20]), normalize_embeddings=True)
    assert np.abs(r.doc_vecs[:20] - want).max() < 1e-4  # our model.py computes what sentence-transformers does


def test_a_non_bert_folder_runs_through_sentence_transformers(small_corpus, tmp_path, mpnet):
    r = base.make("dense", small_corpus, home=tmp_path, model=str(mpnet))
    assert r.config.engine == "sentence-transformers" and r.config.pooling == "mean"
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(mpnet), device="cpu").encode(list(small_corpus.texts[:10]))
    assert np.abs(r.doc_vecs[:10] - want).max() < 1e-5
    hits = r.search({"q": "the genealogy of Jesus Christ", "e": " "}, 5)
    assert len(hits["q"]) == 5 and hits["e"] == {}
    cls = base.make("dense", small_corpus, home=tmp_path, model=str(mpnet), pooling="cls")
    assert cls.config.pooling == "cls" and not cls.from_cache and not np.allclose(cls.doc_vecs, r.doc_vecs)


def test_vectors_are_keyed_by_content_and_the_options_that_change_them(small_corpus, tmp_path, mpnet):
    first = base.make("dense", small_corpus, home=tmp_path, model=str(mpnet))
    # a query prefix and a batch size change no verse vector: the cache serves them
    assert base.make("dense", small_corpus, home=tmp_path, model=str(mpnet), query_prefix="query: ",
                     batch_size=7).from_cache
    prefixed = base.make("dense", small_corpus, home=tmp_path, model=str(mpnet), doc_prefix="passage: ")
    assert not first.from_cache and not prefixed.from_cache
    assert base.make("dense", small_corpus, home=tmp_path, model=str(mpnet), normalize=False).from_cache is False
    readme = mpnet / "README.md"
    readme.write_text(readme.read_text() + "\nan edit to the docs\n")
    assert base.make("dense", small_corpus, home=tmp_path, model=str(mpnet)).from_cache  # docs change no vector


def test_bad_options_and_folders_are_bad_input(small_corpus, tmp_path, mpnet):
    with pytest.raises(BadInput, match="pooling must be mean or cls"):
        base.make("dense", small_corpus, home=tmp_path, model=str(mpnet), pooling="max")
    with pytest.raises(BadInput, match="does not exist"):
        base.make("dense", small_corpus, home=tmp_path, model=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no config.json"):
        base.make("dense", small_corpus, home=tmp_path, model=str(tmp_path / "empty"))


def test_a_bad_folder_is_one_line_at_the_command_line(tmp_path, mpnet):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((mpnet / "config.json").read_text())  # a config, but no weights
    assert_one_line_error(bench("run", "-r", "dense", "-o", f"model={broken}", "-s", "distractor", "--out",
                                str(tmp_path / "runs")), "broken", "sentence-transformers cannot load it")
    assert_one_line_error(bench("run", "-r", "dense", "-o", f"model={tmp_path / 'nope'}", "-s", "distractor"),
                          "does not exist")
    assert_one_line_error(bench("run", "-r", "dense", "-o", "pooling=max", "-s", "distractor"), "pooling")


@pytest.mark.slow
def test_minilm_through_dense_scores_as_minilm_does(tmp_path):
    p = bench("run", "-r", "minilm", "-r", "dense", "-o", "model=minilm", "-s", "thematic-curated", "-s", "keyword",
              "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads(p.stdout)["results"]
    for s in ("thematic-curated", "keyword"):
        assert abs(results[s]["dense"]["ndcg@10"] - results[s]["minilm"]["ndcg@10"]) < 1e-3


@pytest.mark.slow
def test_the_mpnet_folder_runs_from_the_command_line(tmp_path, mpnet):
    p = bench("run", "-r", "dense", "-o", f"model={mpnet}", "-o", "query_prefix=query: ", "-s", "distractor",
              "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    config = report["meta"]["retrievers"]["dense"]
    assert config["engine"] == "sentence-transformers" and config["query_prefix"] == "query: "
    assert 0 <= report["results"]["distractor"]["dense"]["ndcg@10"] < 0.2  # random weights: near nothing


@pytest.mark.slow
def test_gate_judges_a_model_folder(tmp_path):
    b = str(tmp_path / "baseline.json")
    gate = ("gate", "-r", "dense", "-o", "model=minilm", "-s", "keyword", "-s", "thematic-curated", "--baseline", b)
    first = bench(*gate, "--update-baseline", "--allow-dirty")
    assert first.returncode == 0, first.stderr[-2000:]
    assert bench(*gate).returncode == 0
    # a deliberately worse option that changes only the queries (the verse vectors stay cached)
    worse = bench(*gate, "-o", "query_prefix=zebra quartz xylophone vortex kumquat ", "--verdict",
                  str(tmp_path / "v.json"))
    assert worse.returncode == 1 and "gate failed" in worse.stderr, (worse.returncode, worse.stderr[-2000:])
    assert json.loads((tmp_path / "v.json").read_text())["failed"]


def test_worst_queries_of_a_folder_no_longer_there_are_unknown_not_an_error(home, nt_corpus):
    """A baseline records a model folder outside the repository only by its name; on a failing gate, its rankings
    cannot be searched again and show as unknown instead of failing the gate with exit 2."""
    from harness.worst import search_again

    meta = {"run": {"options": {"dense": {"model": "(outside the repository)/st"}}, "k": 100},
            "retrievers": {"dense": {"name": "dense", "model": "(outside the repository)/st"}},
            "checkpoint_sha256": {}, "corpus": {"id": nt_corpus.corpus_id, "translation": "web", "scope": "nt"}}
    from harness.report import Report

    assert search_again(Report(meta=meta, results={}), "dense", "distractor", ["ds-001"], home=home) is None
