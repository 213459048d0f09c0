"""Distillation: a tiny student learns all-MiniLM-L6-v2's vectors on real verses; the teacher runs once per texts
(cached by its sha256), held-out texts stay out of training, resuming repeats the run, and it loads as an encoder."""

import os
import signal

import numpy as np
import pytest

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import pairs as P
from encoder.distill import DistillConfig, distill, texts
from encoder.embed import encode_texts


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(tmp_path, name="s", **kw) -> DistillConfig:
    base = dict(teacher="minilm", out=str(tmp_path / name), preset="tiny", limit=120, steps=16, batch_size=16,
                lr=2e-3, warmup=2, eval_every=8, save_every=1000, val_fraction=0.2, val_texts=64, device="cpu")
    return DistillConfig.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def pairs(home):
    return P.build(("web", "kjv", "asv", "ylt", "dar"), val_fraction=0.2, limit=120, commentary=True, home=home)


def test_texts_hold_out_validation_verses_and_committed_queries(pairs):
    train, val = texts(pairs, 0, spans=True)
    assert train and val and not set(train) & set(val)
    assert not {P.norm(t) for t in train + val} & pairs.forbidden
    web_val = {pairs.texts["web"][k] for k in pairs.val_verses if pairs.texts["web"][k]}
    assert web_val <= set(val) and not web_val & set(train)
    nt_train, _ = texts(pairs, 0, spans=True, scope="nt")  # limit=120 keeps Genesis 1-5 only: no NT verse
    anchors = set(pairs.naves_labels) | set(pairs.comment_anchors)
    assert set(nt_train) == {t for t in anchors if P.norm(t) not in pairs.forbidden}


@pytest.mark.slow
def test_student_moves_toward_the_teacher_and_the_teacher_runs_once(tmp_path, monkeypatch):
    home = tmp_path / "home"
    out = distill(cfg(tmp_path), home=home)
    log = ckpt.read_log(out)
    losses = [r["loss"] for r in log]
    assert np.mean(losses[-4:]) < np.mean(losses[:2]) - 0.2, losses   # 1 - cos falls from ~1 (a random student)
    assert log[-1]["val_cos"] > 0.4, log[-1]                           # held-out texts move toward the teacher too
    cache = list((home / "distill").glob("teacher-*.npy"))
    assert len(cache) == 1
    # a second student of the same teacher on the same texts never loads the teacher
    import encoder.distill as Dm

    def no_teacher(*a, **k):
        raise AssertionError("the teacher ran again")
    monkeypatch.setattr(Dm.ckpt, "load", no_teacher)
    distill(cfg(tmp_path, "again", steps=2), home=home)
    monkeypatch.undo()
    student = ckpt.load(out)
    assert student.model.out_dim == 384 and student.model.cfg.proj_dim == 384  # tiny is 64 wide: projected
    v = encode_texts(student.model, student.tokenizer, ["I will give you a new heart"])
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1) < 1e-5


@pytest.mark.slow
def test_ctrl_c_then_resume_repeats_the_uninterrupted_run(tmp_path):
    home = tmp_path / "home"
    whole = distill(cfg(tmp_path, "a", steps=8, eval_every=4), home=home)

    def ctrl_c_at_3(rec, total):
        if rec["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
    c = cfg(tmp_path, "b", steps=8, eval_every=4)
    with pytest.raises(KeyboardInterrupt):
        distill(c, on_step=ctrl_c_at_3, home=home)
    resumed = distill(c, resume=True, home=home)
    a, b = ckpt.read_log(whole), ckpt.read_log(resumed)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=0, atol=1e-6)


def test_bad_config_is_one_line(tmp_path):
    with pytest.raises(BadInput, match="loss must be one of cosine|mse"):
        distill(cfg(tmp_path, loss="kl"), home=tmp_path)
    with pytest.raises(BadInput, match="no such teacher"):
        distill(cfg(tmp_path, teacher=str(tmp_path / "nope")), home=tmp_path)
