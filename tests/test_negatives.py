"""BM25-mined hard negatives: real BM25 over the WEB, real pairs; the guards keep false negatives out, the loss uses
the negatives as extra candidates, and fine-tuning with them runs and resumes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corpus.bible import load_corpus
from corpus.paths import atomic_write_text
from corpus.qsets import format_run
from encoder import pairs as P
from encoder.finetune import info_nce
from encoder.negatives import PARALLEL, Negatives, _words, text_qid
from harness.mine import queries
from retrievers.base import make


@pytest.fixture(scope="module")
def mined(home, tmp_path_factory):
    pd = P.build(limit=2000, commentary=True, home=home)  # Genesis to Exodus 24: Nave's labels and all
    corpus = load_corpus("web", "all", home=home)
    qs = queries(pd, corpus)
    path = tmp_path_factory.mktemp("neg") / "negatives.trec"
    atomic_write_text(path, format_run(make("bm25", corpus, home=home).search(qs, 20), "bm25-negatives"))
    return pd, Negatives(pd, path)


def test_queries_name_verses_and_anchor_texts(mined):
    pd, neg = mined
    assert f"v:{pd.ids[0]}" in neg.candidates and text_qid(pd.naves_labels[0]) in neg.candidates


def test_negatives_pass_every_guard(mined):
    pd, neg = mined
    batches = [P.sample_batch(pd, 64, 0, s, (0.3, 0.3, 0.4, 0.0)) for s in range(30)]
    pos = {v: k for k, v in enumerate(pd.ids)}
    label_verses = [set(map(int, v)) for v in pd.naves_train]
    got = 0
    for b in batches:
        picked = neg.pick(b)
        assert picked == neg.pick(b)  # a function of the batch
        texts = {p.positive for p in b}
        for p, t in zip(b, picked):
            if t is None:
                continue
            got += 1
            k = pd.texts["web"].index(t)
            assert t not in texts and k != pos[p.verse]
            assert k in set(map(int, pd.train_verses))  # never a held-out or keyword-xlate verse
            a, c = _words(t), _words(pd.texts["web"][pos[p.verse]])
            assert len(a & c) / len(a | c) < PARALLEL
            if p.kind == "naves":
                li = pd.naves_labels.index(p.anchor)
                assert k not in label_verses[li]  # not another verse of the same topic
        assert len({t for t in picked if t}) == sum(1 for t in picked if t)
    assert got > 0.5 * sum(len(b) for b in batches)


def test_info_nce_counts_negatives_as_extra_candidates():
    torch.manual_seed(0)
    a, p, n = (F.normalize(torch.randn(r, 8), dim=-1) for r in (4, 4, 3))
    loss, _ = info_nce(a, p, torch.tensor(20.0), n)
    logits = 20 * a @ torch.cat([p, n]).T
    t = torch.arange(4)
    want = (F.cross_entropy(logits, t) + F.cross_entropy(20 * p @ a.T, t)) / 2
    assert math.isclose(float(loss), float(want), rel_tol=1e-6)
    assert float(info_nce(a, p, torch.tensor(20.0))[0]) < float(loss)  # harder with negatives


@pytest.mark.slow
def test_finetune_with_negatives_runs_and_resumes(home, tmp_path):
    from encoder import checkpoint as ckpt
    from encoder.finetune import FinetuneConfig, finetune
    from encoder.train import preset_config, train

    torch.set_num_threads(1)
    pre = train(preset_config("tiny", out=str(tmp_path / "pre"), translations=("web",), scope="nt", limit=200,
                              val_fraction=0.1, tokenizer="wordpiece-1000", steps=4, batch_size=8, warmup=1,
                              eval_every=10, eval_windows=16, device="cpu"), home=home)
    pd = P.build(limit=300, naves=False, home=home)
    corpus = load_corpus("web", "all", home=home)
    run = tmp_path / "neg.trec"
    atomic_write_text(run, format_run(make("bm25", corpus, home=home).search(queries(pd, corpus), 10), "t"))
    cfg = dict(init=str(pre), steps=6, batch_size=16, lr=1e-3, warmup=1, naves=False, limit=300, device="cpu",
               val_per_kind=32, val_batch=16, eval_every=3, save_every=3, negatives=str(run))
    whole = finetune(FinetuneConfig(**cfg, out=str(tmp_path / "a")), home=home)
    log = ckpt.read_log(whole)
    assert all(r["negatives"] > 8 and math.isfinite(r["loss"]) for r in log)

    class Stop(KeyboardInterrupt):
        pass

    def stop_at_4(rec, total):
        if rec["step"] == 4:
            raise Stop
    b = FinetuneConfig(**cfg, out=str(tmp_path / "b"))
    with pytest.raises(Stop):
        finetune(b, on_step=stop_at_4, home=home)
    resumed = ckpt.read_log(finetune(b, resume=True, home=home))
    assert np.allclose([r["loss"] for r in log], [r["loss"] for r in resumed], atol=1e-6)
