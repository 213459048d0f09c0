"""Contrastive fine-tuning on the tiny preset, CPU: the loss falls, the checkpoint loads (also as the `encoder`
retriever), resuming repeats the uninterrupted run, the loss and the packing are what they claim, bad input is one
line. Pair hold-outs are tested in test_finetune_leakage.py, several processes in test_distributed.py."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder.finetune import FinetuneConfig, encode_packed, finetune, info_nce, pack, parse_temperature
from encoder.train import preset_config, train

BENCH = Path(sys.executable).parent / "bench"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained(home, tmp_path_factory):
    """A tiny MLM checkpoint (10 steps on 200 WEB NT verses, a 1,000-piece vocabulary): something to start from."""
    out = tmp_path_factory.mktemp("pre") / "ckpt"
    cfg = preset_config("tiny", out=str(out), translations=("web",), scope="nt", limit=200, val_fraction=0.1,
                        tokenizer="wordpiece-1000", steps=10, batch_size=8, lr=3e-3, warmup=2, eval_every=10,
                        eval_windows=32, device="cpu")
    return train(cfg, home=home)


def ft_cfg(init, out, **kw) -> FinetuneConfig:
    base = dict(init=str(init), out=str(out), steps=20, batch_size=32, lr=1e-3, warmup=3, naves=False, limit=300,
                device="cpu", val_per_kind=64, val_batch=32, eval_every=10, save_every=1000)
    return FinetuneConfig(**{**base, **kw})


def test_finetune_lowers_the_loss_and_writes_a_loadable_checkpoint(home, pretrained, tmp_path):
    out = finetune(ft_cfg(pretrained, tmp_path / "ft"), home=home)
    log = ckpt.read_log(out)
    assert [r["step"] for r in log] == list(range(1, 21))
    for r in log:
        assert set(r) >= {"loss", "acc", "lr", "grad_norm", "temperature", "tokens_per_s", "peak_mem", "pairs"}
        assert math.isfinite(r["loss"]) and r["pairs"] == 32
    assert [r["step"] for r in log if "val_acc" in r] == [10, 20]
    assert {"val_acc_xlate", "val_acc_span", "val_loss"} <= set(log[-1])
    loss = np.array([r["loss"] for r in log])
    assert loss[:5].mean() > loss[-5:].mean() + 0.3, loss
    assert log[0]["temperature"] == pytest.approx(0.05, rel=1e-2)  # logged after the first step
    assert log[-1]["temperature"] != log[0]["temperature"]  # learned

    loaded = ckpt.load(out)  # checks every tensor, the tokenizer, the weights' sha256
    start = ckpt.load(pretrained)
    cfg = ckpt.read_config(out)
    assert cfg["finetune"]["init"] == str(pretrained) and cfg["train"] == ckpt.read_config(pretrained)["train"]
    sd, sd0 = loaded.model.state_dict(), start.model.state_dict()
    assert torch.equal(sd["head_dense.weight"], sd0["head_dense.weight"])  # the MLM head is frozen
    assert not torch.equal(sd["blocks.0.attn.qkv.weight"], sd0["blocks.0.attn.qkv.weight"])
    man = json.loads((out / "manifest.json").read_text())
    assert man["steps"] == 20 and sum(man["pairs_seen"].values()) == 20 * 32
    assert man["data"]["xlate"]["verses"] > 0 and man["init"]["sha256"] == ckpt.sha256(pretrained)
    assert (out / "trainer_state.pt").is_file()
    from encoder.plots import plot_finetune
    png = plot_finetune(log, tmp_path / "ft.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the `encoder` retriever takes it: a 40-verse corpus, vectors cached in a throwaway home
    from corpus.bible import load_corpus
    from retrievers.base import make
    nt = load_corpus("web", "nt", home=home)
    small = type("C", (), {"ids": nt.ids[:40], "texts": nt.texts[:40], "corpus_id": "web-nt-first-40",
                           "__len__": lambda self: 40})()
    r = make("encoder", small, home=tmp_path / "home", checkpoint=str(out))
    hits = r.search({"q": nt.texts[3]}, 5)["q"]
    assert len(hits) == 5 and r.config.checkpoint_sha256 == ckpt.sha256(out)


def test_resume_repeats_the_uninterrupted_run(home, pretrained, tmp_path):
    whole = finetune(ft_cfg(pretrained, tmp_path / "whole", steps=8, save_every=4, eval_every=4), home=home)

    def stop_after_5(rec, total):
        if rec["step"] == 5:
            raise KeyboardInterrupt

    cfg = ft_cfg(pretrained, tmp_path / "cut", steps=8, save_every=4, eval_every=4)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, on_step=stop_after_5, home=home)
    assert [r["step"] for r in ckpt.read_log(cfg.out)] == [1, 2, 3, 4]  # the step-4 checkpoint survived
    finetune(cfg, resume=True, home=home)
    a, b = ckpt.read_log(whole), ckpt.read_log(cfg.out)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["temperature"] for r in a] == [r["temperature"] for r in b]
    assert ckpt.sha256(whole) == ckpt.sha256(cfg.out)
    with pytest.raises(BadInput, match="fine-tuned with"):
        finetune(replace(cfg, lr=5e-4), resume=True, home=home)


def test_fixed_temperature_stays_fixed(home, pretrained, tmp_path):
    t, learn = parse_temperature("0.1")
    out = finetune(ft_cfg(pretrained, tmp_path / "fixed", steps=3, temperature=t, learn_temperature=learn), home=home)
    assert [r["temperature"] for r in ckpt.read_log(out)] == pytest.approx([0.1] * 3)


def test_info_nce_by_hand():
    a = torch.eye(2)
    loss, acc = info_nce(a, a.clone(), torch.tensor(1.0))
    # each row: logits (1, 0), target the 1 -> log(1 + e^-1); both directions alike
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6) and acc == 1.0
    loss, acc = info_nce(a, a.flip(0), torch.tensor(20.0))  # every anchor nearest the wrong verse
    assert acc == 0.0 and loss.item() == pytest.approx(20 + math.log(1 + math.exp(-20)), rel=1e-6)


def test_packed_encoding_equals_one_padded_batch(home, pretrained):
    c = ckpt.load(pretrained)
    from corpus.bible import load_corpus
    texts = list(load_corpus("web", "nt", home=home).texts[:70]) + ["faith", "love your enemies"]
    p = pack(c.tokenizer, texts, 64, c.model.cfg.pad_id, "cpu", rows=16)
    assert len(p.chunks) == 5 and sum(ch[0].shape[0] for ch in p.chunks) == len(texts)
    with torch.no_grad():
        packed = encode_packed(c.model, p)
        one = encode_packed(c.model, pack(c.tokenizer, texts, 64, c.model.cfg.pad_id, "cpu", rows=len(texts)))
    assert torch.allclose(packed, one, atol=1e-5)
    from encoder.embed import encode_texts
    ref = encode_texts(c.model, c.tokenizer, texts)  # the retriever's path, row order = input order
    assert np.allclose(packed.numpy(), ref, atol=1e-5)


def test_bad_input_is_one_line(home, pretrained, tmp_path):
    with pytest.raises(BadInput, match="differ from --from"):
        finetune(ft_cfg(pretrained, pretrained), home=home)
    with pytest.raises(BadInput, match="not a fine-tuned checkpoint"):
        finetune(ft_cfg(tmp_path / "x", pretrained), resume=True, home=home)
    with pytest.raises(BadInput, match="temperature"):
        parse_temperature("hot")
    with pytest.raises(BadInput, match="batch_size"):
        finetune(ft_cfg(pretrained, tmp_path / "y", batch_size=1), home=home)
    r = subprocess.run([str(BENCH), "finetune", "--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "z")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
