"""`encoder/model.py` is BERT: all-MiniLM-L6-v2's weights run in it and give sentence-transformers' embeddings, and
our checkpoints export back to a sentence-transformers folder that gives ours. Real weights, real verses."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from corpus.errors import BadInput
from corpus.qsets import load_set
from encoder import checkpoint as ckpt
from encoder import hf
from encoder import tokenizer as tok
from encoder.embed import encode_texts
from encoder.model import PRESETS, Encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]


@pytest.fixture(scope="module")
def minilm_dir():
    from retrievers.minilm import model_dir

    return model_dir()


@pytest.fixture(scope="module")
def st_model(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def imported(minilm_dir):
    return ckpt.load(minilm_dir)


def test_config_is_read_from_the_hf_folder(imported):
    cfg = imported.model.cfg
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.max_len) == (6, 384, 12, 1536, 512)
    assert (cfg.norm, cfg.act, cfg.pos, cfg.type_vocab, cfg.ln_eps) == ("post", "gelu", "learned", 2, 1e-12)
    assert imported.tokenizer.get_vocab_size() == 30522


@pytest.mark.slow
def test_200_verses_embed_as_sentence_transformers_does(nt_corpus, imported, st_model):
    texts = nt_corpus.texts[::39][:200]
    assert len(texts) == 200
    ours = encode_texts(imported.model, imported.tokenizer, texts)
    ref = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(ours - ref).max() < 1e-5


@pytest.mark.slow
def test_a_real_query_set_ranks_alike(nt_corpus, imported, st_model):
    qs = load_set("keyword", "nt")
    relevant = {d for docs in qs.qrels.values() for d in docs}
    pool = sorted(relevant | set(nt_corpus.ids[::15]), key=nt_corpus.position.get)
    texts = [nt_corpus.text(d) for d in pool]
    queries = list(qs.queries.values())
    ours_d = encode_texts(imported.model, imported.tokenizer, texts)
    ours_q = encode_texts(imported.model, imported.tokenizer, queries)
    ref_d = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ref_q = st_model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    ours, ref = ours_q @ ours_d.T, ref_q @ ref_d.T
    assert np.abs(ours - ref).max() < 1e-5
    top_ours, top_ref = np.argsort(-ours, axis=1)[:, :10], np.argsort(-ref, axis=1)[:, :10]
    # Cosines closer than 1e-5 may swap places; every other position must agree.
    gaps = np.sort(-ref, axis=1)[:, :11]
    for q in range(len(queries)):
        for r in range(10):
            if top_ours[q, r] != top_ref[q, r]:
                assert min(abs(gaps[q, r] - gaps[q, r + 1]), abs(gaps[q, r] - gaps[q, r - 1])) < 1e-5


def test_checkpoint_sha_of_an_hf_folder_is_stable(minilm_dir):
    assert ckpt.sha256(minilm_dir) == ckpt.sha256(minilm_dir)
    assert len(ckpt.sha256(minilm_dir)) == 64


def test_export_round_trips_through_sentence_transformers(tmp_path, imported):
    from sentence_transformers import SentenceTransformer

    out = hf.export(imported.model, imported.tokenizer, tmp_path / "st", {"checkpoint": "minilm"})
    st = SentenceTransformer(str(out), device="cpu")
    texts = ["I will give you a new heart", "Jesus wept.", "salvation by grace through faith"]
    ours = encode_texts(imported.model, imported.tokenizer, texts)
    assert np.abs(st.encode(texts, normalize_embeddings=True) - ours).max() < 1e-5


def test_export_of_our_own_vocabulary_and_relu(tmp_path):
    """A post-LN checkpoint of ours with a trained WordPiece vocabulary and ReLU exports and loads as it is."""
    from sentence_transformers import SentenceTransformer

    tk = tok.train_wordpiece(["in the beginning was the word and the word was with god"] * 50, 200)
    cfg = replace(PRESETS["tiny"], vocab_size=tk.get_vocab_size(), pad_id=tok.special_ids(tk)["pad"], norm="post",
                  act="relu")
    torch.manual_seed(0)
    model = Encoder(cfg).eval()
    out = hf.export(model, tk, tmp_path / "st", {})
    texts = ["in the beginning was the word", "god"]
    ours = encode_texts(model, tk, texts)
    st = SentenceTransformer(str(out), device="cpu")
    assert np.abs(st.encode(texts, normalize_embeddings=True) - ours).max() < 1e-5


@pytest.mark.parametrize("switch,value", [("norm", "pre"), ("pos", "sinusoidal")])
def test_export_refuses_what_bert_cannot_express(tmp_path, switch, value):
    model = Encoder(replace(PRESETS["tiny"], vocab_size=100, **{"norm": "post", "pos": "learned", switch: value}))
    with pytest.raises(BadInput, match=f"{switch}={value!r}"):
        hf.export(model, tok.load_bert_uncased(), tmp_path / "x", {})
    assert not (tmp_path / "x").exists()


def test_broken_hf_folders_are_one_line_errors(tmp_path, minilm_dir):
    bad = tmp_path / "bert"
    bad.mkdir()
    cfg = json.loads((minilm_dir / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match="no model.safetensors"):
        ckpt.load(bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInput, match="corrupt safetensors file"):
        ckpt.load(bad)
    (bad / "model.safetensors").write_bytes((minilm_dir / "model.safetensors").read_bytes())
    with pytest.raises(BadInput, match="no tokenizer.json or vocab.txt"):
        ckpt.load(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_act": "swish"}))
    with pytest.raises(BadInput, match="hidden_act 'swish'"):
        ckpt.load(bad)


def test_bench_export_cli(tmp_path, minilm_dir):
    out = tmp_path / "exported"
    r = subprocess.run([*BENCH, "export", "--checkpoint", "minilm", "--out", str(out)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    again = subprocess.run([*BENCH, "export", "--checkpoint", str(minilm_dir), "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "not an empty folder" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_half_precision_copy_ranks_like_the_original(tmp_path, nt_corpus, minilm_dir):
    """Committed models are stored in float16 (under 50 MB); their rankings of a real query set match float32's."""
    full = ckpt.load(minilm_dir)
    src = ckpt.save(tmp_path / "fp32", model=full.model, tokenizer=full.tokenizer, config=full.config, log=[],
                    manifest={})
    half = ckpt.publish(src, tmp_path / "fp16")
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.55 * (src / "model.safetensors").stat().st_size
    assert ckpt.load(half).manifest["weights_dtype"] == "float16" and not (half / "trainer_state.pt").exists()
    qs = load_set("keyword", "nt")
    pool = sorted({d for docs in qs.qrels.values() for d in docs} | set(nt_corpus.ids[::10]), key=nt_corpus.position.get)
    texts, queries = [nt_corpus.text(d) for d in pool], list(qs.queries.values())
    top = {}
    for name, path in (("fp32", src), ("fp16", half)):
        m = ckpt.load(path)
        s = encode_texts(m.model, m.tokenizer, queries) @ encode_texts(m.model, m.tokenizer, texts).T
        top[name] = np.argsort(-s, axis=1)[:, :10]
    same = (top["fp32"] == top["fp16"]).mean()
    assert same > 0.97, same  # a swap of two near-equal neighbours is all half precision may do
    assert (top["fp32"][:, 0] == top["fp16"][:, 0]).mean() > 0.98
