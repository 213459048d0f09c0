"""Dense retrieval: the vector cache is keyed by the model's content, so a new checkpoint never reuses old vectors;
exact top-k; a checkpoint that does not fit is refused."""

import shutil

import numpy as np
import pytest
import torch

from encoder.train import preset_config, train
from corpus.bible import Corpus
from corpus.errors import BadInput
from retrievers import dense
from retrievers.encoder import EncoderRetriever


@pytest.fixture
def small_corpus(nt_corpus):
    """The first 200 real verses of the WEB New Testament, as a corpus of their own (own id, own cache entries)."""
    return Corpus(translation="web", scope="nt", ids=nt_corpus.ids[:200], texts=nt_corpus.texts[:200],
                  manifest={**nt_corpus.manifest, "id": "web-nt-first200-test"})


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """Two tiny MLM checkpoints that differ only in their seed, so in their weights."""
    out = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"ck{seed}") / "ckpt"
        cfg = preset_config("tiny", out=str(folder), translations=("web",), scope="nt", limit=200, val_fraction=0.1,
                            tokenizer="wordpiece-1000", steps=3, batch_size=8, warmup=1, eval_every=3,
                            eval_windows=16, device="cpu", seed=seed)
        out.append(train(cfg))
    return out


def test_cache_is_keyed_by_model_hash(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path))
    calls = []

    def encode_with(tag):
        def enc(texts):
            calls.append(tag)
            rng = np.random.default_rng(len(tag))
            v = rng.standard_normal((len(texts), 8)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)
        return enc

    a1, hit1 = dense.cached_vectors("sha-a", small_corpus, encode_with("a"))
    a2, hit2 = dense.cached_vectors("sha-a", small_corpus, encode_with("a"))
    b1, hit3 = dense.cached_vectors("sha-b", small_corpus, encode_with("bb"))
    assert (hit1, hit2, hit3) == (False, True, False)
    assert calls == ["a", "bb"]
    assert np.array_equal(a1, a2) and not np.array_equal(a1, b1)
    assert dense.vectors_path("sha-a", small_corpus.corpus_id) != dense.vectors_path("sha-b", small_corpus.corpus_id)


def test_damaged_cache_file_is_rebuilt_not_trusted(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path))
    path = dense.vectors_path("sha-x", small_corpus.corpus_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    vecs, hit = dense.cached_vectors("sha-x", small_corpus, lambda t: np.ones((len(t), 4), np.float32) / 2)
    assert not hit and vecs.shape == (200, 4)


def test_new_checkpoint_never_reuses_old_vectors(small_corpus, two_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path))
    torch.set_num_threads(1)
    r0 = EncoderRetriever(small_corpus, checkpoint=two_checkpoints[0])
    r1 = EncoderRetriever(small_corpus, checkpoint=two_checkpoints[1])
    assert not r0.from_cache and not r1.from_cache
    assert r0.config.checkpoint_sha256 != r1.config.checkpoint_sha256
    assert not np.allclose(r0.doc_vecs, r1.doc_vecs)
    again = EncoderRetriever(small_corpus, checkpoint=two_checkpoints[0])
    assert again.from_cache and np.array_equal(again.doc_vecs, r0.doc_vecs)
    # the cached vectors are the ones the model computes now
    assert np.allclose(r0.encode(list(small_corpus.texts[:5])), r0.doc_vecs[:5], atol=1e-5)


def test_same_weights_in_another_folder_share_the_cache(small_corpus, two_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path))
    EncoderRetriever(small_corpus, checkpoint=two_checkpoints[0])
    copy = tmp_path / "copy"
    shutil.copytree(two_checkpoints[0], copy)
    assert EncoderRetriever(small_corpus, checkpoint=copy).from_cache


def test_top_k_is_exact_and_ties_go_to_the_earlier_verse():
    docs = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    hits = dense.top_k(docs, q, ["a", "b", "c", "d"], 3)[0]
    assert list(hits) == ["a", "c", "d"]
    assert hits["d"] == pytest.approx(0.6)


def test_missing_or_mismatched_checkpoint_is_refused(small_corpus, two_checkpoints, tmp_path):
    with pytest.raises(BadInput, match="no such checkpoint"):
        EncoderRetriever(small_corpus, checkpoint=tmp_path / "none")
    bad = tmp_path / "other-tokenizer"
    shutil.copytree(two_checkpoints[0], bad)
    # a tokenizer from a checkpoint with another vocabulary: refused, not silently mis-encoded
    from encoder import tokenizer as tok

    tok.load_bert_uncased().save(str(bad / "tokenizer.json"))
    with pytest.raises(BadInput, match="tokenizer"):
        EncoderRetriever(small_corpus, checkpoint=bad)
