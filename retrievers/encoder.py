"""The in-repo BERT encoder as a retriever: mean-pooled, L2-normalised verse vectors and exact cosine top-k.

Verse vectors are encoded once per (checkpoint sha256, corpus id) and cached under the cache root the retriever is
given; the default checkpoint is the one committed under models/.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from corpus.errors import BadInput
from corpus.paths import REPO
from retrievers.base import positive_int
from retrievers.dense import cached_vectors, search_with

NAME = "encoder"
# WiSE-FT (alpha 0.7) of MiniLM and the fine-tune models/versebench-base, chosen on thematic-natural-dev with
# thematic-dev breaking the tie (model card)
DEFAULT_CHECKPOINT = REPO / "models" / "versebench-wise"


@dataclass(frozen=True)
class EncoderOptions:
    checkpoint: str | None = None  # a checkpoint folder, a Hugging Face BERT folder or "minilm"; default: DEFAULT_CHECKPOINT
    batch_size: int = 128


@dataclass(frozen=True)
class EncoderRetrieverConfig:
    checkpoint: str
    checkpoint_sha256: str
    model: dict
    batch_size: int = 128


def checkpoint_identity(checkpoint=None) -> tuple[Path, str]:
    """(folder, sha256) of the checkpoint a retriever would load; BadInput when there is none. The hybrid names its
    dense side with it without loading the model."""
    from encoder import checkpoint as ckpt  # here, not at the top: it imports torch (seconds), not needed for --help
    from encoder.hf import resolve

    path = resolve(str(checkpoint)) if checkpoint else DEFAULT_CHECKPOINT
    if not path.exists():
        raise BadInput(f"{path}: no such checkpoint folder (train one with `bench train` / `bench finetune`)")
    if not path.is_dir():
        raise BadInput(f"{path}: a checkpoint is a folder with config.json and model.safetensors")
    return path, ckpt.sha256(path)


class EncoderRetriever:
    name = NAME

    def __init__(self, corpus, home: Path, checkpoint=None, batch_size: int = 128, on_progress=None):
        from encoder import checkpoint as ckpt  # torch: see checkpoint_identity

        path, sha = checkpoint_identity(checkpoint)
        self.ckpt = ckpt.load(path)
        self.config = EncoderRetrieverConfig(checkpoint=str(path), checkpoint_sha256=sha,
                                             model=dict(self.ckpt.config["model"]), batch_size=int(batch_size))
        self.ids = corpus.ids
        self.doc_vecs, self.from_cache = cached_vectors(home, sha, corpus,
                                                        functools.partial(self.encode, on_progress=on_progress),
                                                        expect_dim=self.ckpt.model.out_dim)

    def encode(self, texts, on_progress=None):
        from encoder.embed import encode_texts  # torch: see checkpoint_identity

        return encode_texts(self.ckpt.model, self.ckpt.tokenizer, texts, batch_size=self.config.batch_size,
                            on_progress=on_progress)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return search_with(self.encode, self.doc_vecs, self.ids, queries, k)


def make(corpus, options: EncoderOptions, *, home: Path, on_progress=None) -> EncoderRetriever:
    positive_int(options.batch_size, "encoder: batch_size")
    return EncoderRetriever(corpus, home, checkpoint=options.checkpoint, batch_size=options.batch_size,
                            on_progress=on_progress)
