"""Any embedding model by its folder: `-r dense -o model=PATH` runs a sentence-transformers or Hugging Face folder.

Two engines, chosen by what the folder holds:
- "versebench": a BERT folder (config.json's model_type "bert") whose pipeline is at most Transformer, mean or CLS
  pooling and Normalize runs through our own `encoder/model.py` (encoder/hf.py renames its weights);
- "sentence-transformers": anything else (MPNet, RoBERTa, a folder with a Dense layer or another pooling) runs through
  sentence-transformers itself. A plain Hugging Face folder without modules.json gets its mean pooling.
Nothing is downloaded: the folder is local, `local_files_only` is set and HF_HUB_OFFLINE=1.

Verse vectors are cached under the cache root by the folder's content (every file but its docs: weights, configs,
tokenizer) and the options that change a verse's vector (engine, doc_prefix, pooling, normalize, max_length);
query_prefix and batch_size change no verse vector, so they share the cache.
"""

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpus.errors import BadInput, at
from corpus.paths import file_sha256
from retrievers.base import positive_int
from retrievers.dense import cached_vectors, search_with

NAME = "dense"
POOLINGS = ("mean", "cls")
OURS, ST = "versebench", "sentence-transformers"
CHUNK = 1024  # texts encoded between two progress reports on the sentence-transformers engine


@dataclass(frozen=True)
class DenseOptions:
    model: str = "minilm"  # a sentence-transformers or Hugging Face folder; "minilm": the installed all-MiniLM-L6-v2
    query_prefix: str = ""  # put before every query (e5: "query: ", bge: "Represent this sentence ...: ")
    doc_prefix: str = ""  # put before every verse (e5: "passage: ")
    pooling: str = ""  # mean | cls; empty: the folder's own (its 1_Pooling config), else mean
    normalize: bool = True  # unit vectors, so the dot product that ranks is the cosine
    batch_size: int = 64
    max_length: int | None = None  # tokens per text; default: the folder's own limit


@dataclass(frozen=True)
class DenseConfig:
    model: str
    model_sha256: str
    engine: str  # versebench | sentence-transformers
    query_prefix: str
    doc_prefix: str
    pooling: str  # as used: the option, or what the folder says
    normalize: bool
    batch_size: int
    max_length: int | None


@dataclass(frozen=True)
class Folder:
    """What a model folder says about itself, read from its JSON files without loading a weight."""
    path: Path
    model_type: str
    modules: tuple[str, ...] | None  # sentence-transformers module kinds (Transformer, Pooling, ...); None: none
    pooling: str  # mean | cls | another sentence-transformers mode | "" when the folder names none
    max_length: int | None  # sentence_bert_config.json's max_seq_length


def _json(path: Path):
    try:
        return json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise at(path, None, f"not valid JSON ({e})") from None


def read_folder(model: str) -> Folder:
    from encoder.hf import resolve  # here, not at the top: encoder.hf imports torch (seconds), not for --help

    path = resolve(model)
    if not path.exists():
        raise BadInput(f"dense: model folder {path} does not exist (give -o model=PATH of a sentence-transformers "
                       f"or Hugging Face folder)")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise at(path, None, "not a sentence-transformers or Hugging Face model folder (no config.json)")
    config = _json(path / "config.json")
    modules, pooling = None, ""
    if (path / "modules.json").is_file():
        entries = _json(path / "modules.json")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "type" in e for e in entries):
            raise at(path / "modules.json", None, "not a list of sentence-transformers modules")
        modules = tuple(str(e["type"]).rsplit(".", 1)[-1] for e in entries)
        for e in entries:
            if str(e["type"]).endswith("Pooling") and (path / e.get("path", "") / "config.json").is_file():
                pooling = _pooling_mode(_json(path / e.get("path", "") / "config.json"))
    st = path / "sentence_bert_config.json"
    max_length = _json(st).get("max_seq_length") if st.is_file() else None
    return Folder(path, str(config.get("model_type", "")) if isinstance(config, dict) else "", modules, pooling,
                  max_length if isinstance(max_length, int) else None)


def _pooling_mode(cfg: dict) -> str:
    modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
             for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    if isinstance(cfg.get("pooling_mode"), str):  # newer sentence-transformers write the mode by name
        modes = [cfg["pooling_mode"]]
    return modes[0] if len(modes) == 1 else "+".join(modes)


def engine_for(folder: Folder, pooling: str) -> str:
    """Ours when our model.py computes exactly what the folder means: BERT weights, then at most mean or CLS pooling
    and a normalisation."""
    plain = folder.modules is None or set(folder.modules) <= {"Transformer", "Pooling", "Normalize"}
    return OURS if folder.model_type == "bert" and plain and pooling in POOLINGS else ST


def folder_sha256(path: Path) -> str:
    """The folder's content: every file's relative path and sha256, docs and hidden files left out (a README edit
    changes no vector)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.endswith(".md") or any(part.startswith(".") for part in f.relative_to(path).parts):
            continue
        h.update(f"{rel}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def check(options: DenseOptions) -> None:
    positive_int(options.batch_size, "dense: batch_size")
    if options.max_length is not None:
        positive_int(options.max_length, "dense: max_length")
    if options.pooling not in ("", *POOLINGS):
        raise BadInput(f"dense: pooling must be {' or '.join(POOLINGS)}, got {options.pooling!r}")


class DenseModel:
    name = NAME

    def __init__(self, corpus, options: DenseOptions, home: Path, on_progress=None):
        from encoder.hf import shown  # torch: see read_folder

        check(options)
        folder = read_folder(options.model)
        pooling = options.pooling or (folder.pooling if folder.pooling else "mean")
        engine = engine_for(folder, pooling)
        self.config = DenseConfig(model=shown(folder.path), model_sha256=folder_sha256(folder.path), engine=engine,
                                  query_prefix=options.query_prefix, doc_prefix=options.doc_prefix, pooling=pooling,
                                  normalize=options.normalize, batch_size=options.batch_size,
                                  max_length=options.max_length or folder.max_length)
        self.path, self.pool_given = folder.path, bool(options.pooling)
        self.ids = corpus.ids
        changes_vectors = {k: v for k, v in asdict(self.config).items() if k not in ("model", "query_prefix",
                                                                                     "batch_size")}
        key = hashlib.sha256(json.dumps(changes_vectors, sort_keys=True).encode()).hexdigest()
        encode_docs = functools.partial(self.encode, prefix=options.doc_prefix, on_progress=on_progress)
        self.doc_vecs, self.from_cache = cached_vectors(home, key, corpus, encode_docs)

    @functools.cached_property
    def model(self):
        """Loaded on first need: with the verse vectors cached, a retriever that is never searched never loads it."""
        return _load_ours(self.path) if self.config.engine == OURS else _load_st(
            self.path, self.config.pooling if self.pool_given else "", self.config.max_length)

    def encode(self, texts, prefix: str = "", on_progress=None) -> np.ndarray:
        texts = [prefix + t for t in texts]
        c = self.config
        if c.engine == OURS:
            from encoder.embed import encode_texts  # torch: see read_folder

            return encode_texts(self.model.model, self.model.tokenizer, texts, batch_size=c.batch_size,
                                on_progress=on_progress, pooling=c.pooling, normalize=c.normalize,
                                max_len=c.max_length)
        out = []
        for at_ in range(0, len(texts), CHUNK):
            out.append(self.model.encode(texts[at_:at_ + CHUNK], batch_size=c.batch_size, convert_to_numpy=True,
                                         normalize_embeddings=c.normalize, show_progress_bar=False))
            if on_progress is not None:
                on_progress(min(at_ + CHUNK, len(texts)), len(texts))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return search_with(functools.partial(self.encode, prefix=self.config.query_prefix), self.doc_vecs, self.ids,
                           queries, k)


def _load_ours(path: Path):
    from encoder import checkpoint as ckpt  # torch: see read_folder

    return ckpt.load(path)


def _load_st(path: Path, pooling: str, max_length: int | None):
    """The folder through sentence-transformers, offline. With `pooling` given, its transformer with that pooling
    instead of the folder's own pipeline."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # the path is local; never let a typo reach a hub
    # here, not at the top: sentence-transformers imports torch and transformers (seconds)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if pooling:
            t = Transformer(str(path), max_seq_length=max_length, model_kwargs={"local_files_only": True},
                            processor_kwargs={"local_files_only": True}, config_kwargs={"local_files_only": True})
            m = SentenceTransformer(modules=[t, Pooling(t.get_embedding_dimension(), pooling_mode=pooling)],
                                    device="cpu")
        else:
            m = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise at(path, None, f"sentence-transformers cannot load it ({type(e).__name__}: {lines[0][:160]})") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if max_length:
        m.max_seq_length = max_length
    return m


def make(corpus, options: DenseOptions, *, home: Path, on_progress=None) -> DenseModel:
    return DenseModel(corpus, options, home, on_progress=on_progress)
