"""The in-repo encoder: model, tokenizer, checkpoint io, embedding. Tiny sizes, CPU, real tokenizers."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import tokenizer as tok
from encoder.embed import encode_texts
from encoder.model import PRESETS, Encoder, EncoderConfig, additive_mask, reference_attention

VERSES = ["For God so loved the world, that he gave his one and only Son.",
          "I will give you a new heart, and put a new spirit within you.",
          "Jesus wept.",
          "Love is patient and is kind; love doesn't envy."]


def tiny(**kw) -> EncoderConfig:
    return replace(PRESETS["tiny"], vocab_size=500, **kw)


def random_batch(gen, B=3, T=12, V=500, lengths=(12, 7, 3)):
    ids = torch.randint(5, V, (B, T), generator=gen)
    attn = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        attn[b, :n] = 1
    return ids, attn


# ---- model ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_padding_does_not_change_outputs(norm, pos):
    torch.manual_seed(0)
    model = Encoder(tiny(norm=norm, pos=pos, dropout=0.1)).eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 500, (1, 10), generator=gen)
    alone = model(ids, torch.ones(1, 10, dtype=torch.long))
    # Extra padding after the sequence, filled with arbitrary ids: masked keys must contribute exactly nothing.
    padded_ids = torch.cat([ids, torch.randint(5, 500, (1, 9), generator=gen)], dim=1)
    padded_attn = torch.cat([torch.ones(1, 10, dtype=torch.long), torch.zeros(1, 9, dtype=torch.long)], dim=1)
    padded = model(padded_ids, padded_attn)
    assert torch.allclose(alone, padded[:, :10], atol=1e-5)
    assert torch.allclose(model.encode(ids, torch.ones(1, 10, dtype=torch.long)),
                          model.encode(padded_ids, padded_attn), atol=1e-5)
    # Without the mask the padding would leak in: the test can tell the difference.
    unmasked = model(padded_ids, torch.ones_like(padded_attn))
    assert not torch.allclose(alone, unmasked[:, :10], atol=1e-3)


def test_fused_attention_equals_plain_reference():
    gen = torch.Generator().manual_seed(2)
    B, H, T, Dh = 3, 2, 12, 16
    q, k, v = (torch.randn(B, H, T, Dh, generator=gen) for _ in range(3))
    _, attn = random_batch(gen, B=B, T=T)
    mask = additive_mask(attn, torch.float32)
    assert mask.shape == (B, 1, 1, T)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(fused, reference_attention(q, k, v, mask), atol=1e-5)
    # and through the whole model, in both block layouts
    for norm in ("pre", "post"):
        torch.manual_seed(0)
        model = Encoder(tiny(norm=norm)).eval()
        ids, attn = random_batch(gen)
        assert torch.allclose(model(ids, attn), model(ids, attn, reference=True), atol=1e-5)


def test_reference_attention_gives_padded_keys_zero_weight():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 1, 4, 8, generator=gen) for _ in range(3))
    mask = additive_mask(torch.tensor([[1, 1, 0, 0]]), torch.float32)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5 + mask, dim=-1)
    assert torch.all(weights[..., 2:] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 1, 4))


def test_mlm_decoder_is_tied_to_token_embedding():
    model = Encoder(tiny())
    assert not any("decoder.weight" in k for k in model.state_dict())
    ids, attn = random_batch(torch.Generator().manual_seed(4))
    before = model.mlm_logits(ids, attn)
    assert before.shape == (3, 12, 500)
    with torch.no_grad():
        model.tok_emb.weight[7] += 1.0  # only the decoder row of token 7 and inputs holding 7 change
    after = model.mlm_logits(ids, attn)
    assert not torch.allclose(before[..., 7], after[..., 7])


def test_mlm_loss_only_counts_labelled_positions():
    torch.manual_seed(0)
    model = Encoder(tiny()).eval()
    ids, attn = random_batch(torch.Generator().manual_seed(5))
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 1] = ids[0, 3], ids[1, 1]
    logits = model.mlm_logits(ids, attn)
    want = F.cross_entropy(torch.stack([logits[0, 3], logits[1, 1]]), torch.stack([ids[0, 3], ids[1, 1]]))
    assert torch.allclose(model.mlm_loss(ids, attn, labels), want, atol=1e-5)


def test_encode_is_unit_length_mean_pool():
    torch.manual_seed(0)
    model = Encoder(tiny()).eval()
    ids, attn = random_batch(torch.Generator().manual_seed(6))
    vec = model.encode(ids, attn)
    assert vec.shape == (3, 64)
    assert torch.allclose(vec.norm(dim=-1), torch.ones(3), atol=1e-5)
    h = model(ids, attn)
    assert torch.allclose(vec[2], F.normalize(h[2, :3].mean(0), dim=0), atol=1e-5)


def test_longer_than_positions_is_refused():
    model = Encoder(tiny())
    with pytest.raises(BadInput, match="longer than the model's 64 positions"):
        model(torch.ones(1, 65, dtype=torch.long), torch.ones(1, 65, dtype=torch.long))


@pytest.mark.parametrize("bad, msg", [(dict(norm="mid"), "norm must be one of pre|post"),
                                      (dict(act="tanh"), "act must be one of"),
                                      (dict(n_head=3), "not divisible by n_head"),
                                      (dict(pad_id=999), "outside the vocabulary")])
def test_bad_config_is_refused(bad, msg):
    with pytest.raises(BadInput, match=msg):
        tiny(**bad)


def test_presets_have_the_promised_sizes():
    assert (PRESETS["tiny"].n_layer, PRESETS["tiny"].d_model, PRESETS["tiny"].n_head, PRESETS["tiny"].max_len) == \
        (2, 64, 2, 64)
    s = PRESETS["small"]
    assert (s.n_layer, s.d_model, s.n_head, s.d_ff, s.max_len) == (4, 256, 4, 1024, 104)
    b = PRESETS["base"]
    assert (b.n_layer, b.d_model, b.n_head, b.d_ff, b.max_len) == (12, 768, 12, 3072, 104)


# ---- tokenizer ------------------------------------------------------------------------------------------------------

def test_bert_vocab_and_known_encoding():
    tk = tok.load_bert_uncased()
    assert tk.get_vocab_size() == tok.BERT_VOCAB_SIZE == 30522
    assert tk.encode("Give you a new heart").ids == [101, 2507, 2017, 1037, 2047, 2540, 102]
    assert tok.special_ids(tk) == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}


def test_trained_wordpiece_round_trips_through_its_files(tmp_path):
    tk = tok.train_wordpiece(VERSES * 5, 300)
    assert 5 < tk.get_vocab_size() <= 300
    assert all(tk.token_to_id(s) is not None for s in tok.SPECIALS)
    tok.save(tk, tmp_path)
    again = tok.load(tmp_path / "tokenizer.json")
    assert [e.ids for e in again.encode_batch(VERSES)] == [e.ids for e in tk.encode_batch(VERSES)]
    assert len((tmp_path / "vocab.txt").read_text().splitlines()) == tk.get_vocab_size()


def test_bad_tokenizer_specs_and_files(tmp_path):
    with pytest.raises(BadInput, match="unknown tokenizer"):
        tok.spec_vocab_size("sentencepiece-8000")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BadInput, match="not a readable tokenizer.json"):
        tok.load(tmp_path / "tokenizer.json")


# ---- checkpoint -----------------------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    tk = tok.train_wordpiece(VERSES * 5, 300)
    cfg = replace(PRESETS["tiny"], vocab_size=tk.get_vocab_size(), pad_id=tok.special_ids(tk)["pad"])
    torch.manual_seed(0)
    model = Encoder(cfg).eval()
    folder = tmp_path / "ckpt"
    ckpt.save(folder, model=model, tokenizer=tk, config={"model": cfg.__dict__, "train": {}}, log=[{"step": 1}],
              manifest={"steps": 1})
    return folder, model, tk


def test_save_load_gives_identical_outputs(saved):
    folder, model, tk = saved
    loaded = ckpt.load(folder)
    ids, attn = random_batch(torch.Generator().manual_seed(7), V=tk.get_vocab_size())
    assert torch.equal(model(ids, attn), loaded.model(ids, attn))
    assert np.array_equal(encode_texts(model, tk, VERSES), encode_texts(loaded.model, loaded.tokenizer, VERSES))
    assert loaded.manifest["weights_sha256"] == ckpt.file_sha256(folder / "model.safetensors")
    assert len(ckpt.sha256(folder)) == 64
    assert ckpt.read_log(folder) == [{"step": 1}]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())  # readable by others, not private


def test_checkpoint_sha_changes_with_weights(saved, tmp_path):
    folder, model, tk = saved
    before = ckpt.sha256(folder)
    with torch.no_grad():
        model.tok_emb.weight[0, 0] += 1
    ckpt.save(folder, model=model, tokenizer=tk, config=ckpt.read_config(folder), log=[], manifest={})
    assert ckpt.sha256(folder) != before
    assert not list(tmp_path.glob(".ckpt.*"))  # no temp or .old folder left behind


def _edit_config(folder, **model):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(model)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_wrong_shapes_are_refused(saved):
    folder, _, _ = saved
    _edit_config(folder, d_ff=128)
    with pytest.raises(BadInput, match=r"model.safetensors: tensor blocks.0.ff.up.weight has shape \(256, 64\), "
                                       r"config.json implies \(128, 64\)"):
        ckpt.load(folder)


def test_tokenizer_vocab_mismatch_is_refused(saved):
    folder, _, tk = saved
    _edit_config(folder, vocab_size=tk.get_vocab_size() + 1)
    with pytest.raises(BadInput, match="tokenizer has .* tokens but config.json says vocab_size"):
        ckpt.load(folder)


def test_corrupt_weights_are_refused(saved):
    folder, _, _ = saved
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(BadInput, match="sha256 differs from manifest"):
        ckpt.load(folder)
    (folder / "manifest.json").unlink()  # without the manifest's hash the file itself is found unreadable
    with pytest.raises(BadInput, match="corrupt safetensors file"):
        ckpt.load(folder)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_files_are_refused(saved, name):
    folder, _, _ = saved
    (folder / name).unlink()
    with pytest.raises(BadInput, match=f"{name}: missing from the checkpoint folder"):
        ckpt.load(folder)


def test_broken_config_json_names_the_line(saved):
    folder, _, _ = saved
    (folder / "config.json").write_text('{\n"format": 1,\n"model": {,}\n}')
    with pytest.raises(BadInput, match=r"config.json:3: not valid JSON"):
        ckpt.load(folder)


def test_save_refuses_to_replace_a_foreign_folder(tmp_path, saved):
    _, model, tk = saved
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(BadInput, match="not a checkpoint folder"):
        ckpt.save(tmp_path / "mine", model=model, tokenizer=tk, config={"model": {}}, log=[], manifest={})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# ---- embedding ------------------------------------------------------------------------------------------------------

def test_encode_texts_batches_sorts_and_restores_order(saved):
    _, model, tk = saved
    texts = VERSES + ["", "Amen."] + [v.upper() for v in VERSES]
    together = encode_texts(model, tk, texts, batch_size=3)
    assert together.dtype == np.float32 and together.shape == (len(texts), 64)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([encode_texts(model, tk, [t]) for t in texts])
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert np.allclose(together[0], together[len(VERSES) + 2], atol=1e-6)  # lowercasing tokenizer: same text
    assert encode_texts(model, tk, []).shape == (0, 64)
    assert torch.get_num_threads() >= 1 and not model.training


def test_encode_texts_cuts_long_texts_to_the_model_positions(saved):
    _, model, tk = saved
    long = " ".join(VERSES * 20)
    assert encode_texts(model, tk, [long]).shape == (1, 64)
