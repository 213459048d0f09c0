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
from retrievers.base import stable_scores
from retrievers.encoder import EncoderRetriever


@pytest.fixture
def small_corpus(nt_corpus):
    """The first 200 real verses of the WEB New Testament, as a corpus of their own (own id, own cache entries)."""
    return Corpus(translation="web", scope="nt", ids=nt_corpus.ids[:200], texts=nt_corpus.texts[:200],
                  manifest={**nt_corpus.manifest, "id": "web-nt-first200-test"})


@pytest.fixture(scope="module")
def two_checkpoints(home, tmp_path_factory):
    """Two tiny MLM checkpoints that differ only in their seed, so in their weights."""
    out = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"ck{seed}") / "ckpt"
        cfg = preset_config("tiny", out=str(folder), translations=("web",), scope="nt", limit=200, val_fraction=0.1,
                            tokenizer="wordpiece-1000", steps=3, batch_size=8, warmup=1, eval_every=3,
                            eval_windows=16, device="cpu", seed=seed)
        out.append(train(cfg, home=home))
    return out


def test_cache_is_keyed_by_model_hash(small_corpus, tmp_path):
    calls = []

    def encode_with(tag):
        def enc(texts):
            calls.append(tag)
            rng = np.random.default_rng(len(tag))
            v = rng.standard_normal((len(texts), 8)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)
        return enc

    a1, hit1 = dense.cached_vectors(tmp_path, "sha-a", small_corpus, encode_with("a"))
    a2, hit2 = dense.cached_vectors(tmp_path, "sha-a", small_corpus, encode_with("a"))
    b1, hit3 = dense.cached_vectors(tmp_path, "sha-b", small_corpus, encode_with("bb"))
    assert (hit1, hit2, hit3) == (False, True, False)
    assert calls == ["a", "bb"]
    assert np.array_equal(a1, a2) and not np.array_equal(a1, b1)
    paths = [dense.vectors_path(tmp_path, sha, small_corpus.corpus_id) for sha in ("sha-a", "sha-b")]
    assert paths[0] != paths[1]


def test_damaged_cache_file_is_rebuilt_not_trusted(small_corpus, tmp_path):
    path = dense.vectors_path(tmp_path, "sha-x", small_corpus.corpus_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    vecs, hit = dense.cached_vectors(tmp_path, "sha-x", small_corpus, lambda t: np.ones((len(t), 4), np.float32) / 2)
    assert not hit and vecs.shape == (200, 4)


def test_new_checkpoint_never_reuses_old_vectors(small_corpus, two_checkpoints, tmp_path):
    torch.set_num_threads(1)
    r0 = EncoderRetriever(small_corpus, tmp_path, checkpoint=two_checkpoints[0])
    r1 = EncoderRetriever(small_corpus, tmp_path, checkpoint=two_checkpoints[1])
    assert not r0.from_cache and not r1.from_cache
    assert r0.config.checkpoint_sha256 != r1.config.checkpoint_sha256
    assert not np.allclose(r0.doc_vecs, r1.doc_vecs)
    again = EncoderRetriever(small_corpus, tmp_path, checkpoint=two_checkpoints[0])
    assert again.from_cache and np.array_equal(again.doc_vecs, r0.doc_vecs)
    # the cached vectors are the ones the model computes now
    assert np.allclose(r0.encode(list(small_corpus.texts[:5])), r0.doc_vecs[:5], atol=1e-5)


def test_same_weights_in_another_folder_share_the_cache(small_corpus, two_checkpoints, tmp_path):
    EncoderRetriever(small_corpus, tmp_path, checkpoint=two_checkpoints[0])
    copy = tmp_path / "copy"
    shutil.copytree(two_checkpoints[0], copy)
    assert EncoderRetriever(small_corpus, tmp_path, checkpoint=copy).from_cache


def test_top_k_is_exact_and_ties_go_to_the_earlier_verse():
    docs = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    hits = dense.top_k(docs, q, ["a", "b", "c", "d"], 3)[0]
    assert list(hits) == ["a", "c", "d"]
    assert hits["d"] == pytest.approx(0.6)


def test_missing_or_mismatched_checkpoint_is_refused(small_corpus, two_checkpoints, tmp_path):
    with pytest.raises(BadInput, match="no such checkpoint"):
        EncoderRetriever(small_corpus, tmp_path, checkpoint=tmp_path / "none")
    bad = tmp_path / "other-tokenizer"
    shutil.copytree(two_checkpoints[0], bad)
    # a tokenizer from a checkpoint with another vocabulary: refused, not silently mis-encoded
    from encoder import tokenizer as tok

    tok.load_bert_uncased().save(str(bad / "tokenizer.json"))
    with pytest.raises(BadInput, match="tokenizer"):
        EncoderRetriever(small_corpus, tmp_path, checkpoint=bad)


@pytest.mark.slow
def test_minilm_loads_once_per_process_only_when_needed_and_quietly(home, nt_corpus, capfd):
    from retrievers import base, minilm

    base.make("minilm", nt_corpus, home=home)  # the verse vectors are cached from here on
    minilm.load_model.cache_clear()
    r = base.make("minilm", nt_corpus, home=home)
    assert r.from_cache and minilm.load_model.cache_info().currsize == 0  # built without loading the model
    capfd.readouterr()
    first = r.search({"q": "love your enemies"}, 5)["q"]
    again = base.make("minilm", nt_corpus, home=home).search({"q": "love your enemies"}, 5)["q"]
    info = minilm.load_model.cache_info()
    assert (info.misses, info.currsize) == (1, 1) and info.hits >= 1 and first == again
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bar, once printed on every load


def test_top_k_of_a_batch_equals_a_full_sort_of_each_row():
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((300, 8)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[7] = docs[3]  # an exact tie: the earlier verse first
    queries = np.vstack([docs[3], rng.standard_normal((5, 8)).astype(np.float32)])
    ids = [f"v{i}" for i in range(300)]
    for k in (1, 2, 50, 300, 400):
        got = dense.top_k(docs, queries, ids, k)
        for hits, row in zip(got, stable_scores(queries @ docs.T)):  # what top_k ranks by (base.SCORE_DECIMALS)
            expect = sorted(range(300), key=lambda i: (-row[i], i))[:k]
            assert list(hits) == [ids[i] for i in expect] and list(hits.values()) == [float(row[i]) for i in expect]
    assert list(dense.top_k(docs, queries[:1], ids, 2)[0]) == ["v3", "v7"]
    assert list(dense.top_k(docs, queries[:1], ids, 1)[0]) == ["v3"]  # the tie straddles the cut at k=1
