"""The in-repo BERT encoder as a retriever: mean-pooled, L2-normalised verse vectors and exact cosine top-k.

Verse vectors are encoded once per (checkpoint sha256, corpus id) and cached; the default checkpoint is the one
committed under models/.
"""

from dataclasses import dataclass
from pathlib import Path

from corpus.errors import BadInput
from corpus.paths import REPO
from retrievers.dense import cached_vectors, search_with

NAME = "encoder"
DEFAULT_CHECKPOINT = REPO / "models" / "versebench-small"


@dataclass(frozen=True)
class EncoderRetrieverConfig:
    checkpoint: str
    checkpoint_sha256: str
    model: dict
    batch_size: int = 128


class EncoderRetriever:
    name = NAME

    def __init__(self, corpus, checkpoint=None, batch_size: int = 128):
        from encoder import checkpoint as ckpt

        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.exists():
            raise BadInput(f"{path}: no such checkpoint folder (train one with `bench train` / `bench finetune`)")
        if not path.is_dir():
            raise BadInput(f"{path}: a checkpoint is a folder with config.json and model.safetensors")
        self.ckpt = ckpt.load(path)
        sha = ckpt.sha256(path)
        self.config = EncoderRetrieverConfig(checkpoint=str(path), checkpoint_sha256=sha,
                                             model=dict(self.ckpt.config["model"]), batch_size=int(batch_size))
        self.ids = corpus.ids
        self.doc_vecs, self.from_cache = cached_vectors(sha, corpus, self.encode,
                                                        expect_dim=self.ckpt.model.cfg.d_model)

    def encode(self, texts):
        from encoder.embed import encode_texts

        return encode_texts(self.ckpt.model, self.ckpt.tokenizer, texts, batch_size=self.config.batch_size)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return search_with(self.encode, self.doc_vecs, self.ids, queries, k)


def make(corpus, checkpoint=None, batch_size: int = 128, **options) -> EncoderRetriever:
    if options:
        raise BadInput(f"encoder: unknown option(s) {', '.join(sorted(options))}; encoder takes: checkpoint, batch_size")
    return EncoderRetriever(corpus, checkpoint=checkpoint, batch_size=batch_size)
