"""Texts -> L2-normalised vectors with the in-repo encoder (mean pooling over non-padding tokens)."""

import os
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from tokenizers import Tokenizer

from encoder import tokenizer as tok
from encoder.model import Encoder


@contextmanager
def _threads(n: int | None):
    """Use `n` intra-op threads for the block (default: the cores this process may run on), then restore."""
    before = torch.get_num_threads()
    want = n or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, want))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tokenize(tk: Tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """[CLS] pieces [SEP], pieces cut so the whole fits `max_len` (the [SEP] is kept: the model was trained so)."""
    sp = tok.special_ids(tk)
    return [[sp["cls"], *p[:max_len - 2], sp["sep"]] for p in tok.encode_batch(tk, texts)]


def encode_texts(model: Encoder, tokenizer: Tokenizer, texts: list[str], batch_size: int = 128,
                 device: str | torch.device | None = None, threads: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None, *, pooling: str = "mean",
                 normalize: bool = True, max_len: int | None = None) -> np.ndarray:
    """float32 [n, out_dim], row i for texts[i], each row of unit length (unless `normalize` is off). Texts are sorted
    by length and batched so a batch pads little; the output is put back in input order. `on_progress(done, total)`
    is called after each batch. `pooling`: "mean" or "cls"; `max_len`: tokens per text, at most the model's
    positions (default: all of them)."""
    texts = list(texts)
    d = model.out_dim
    if not texts:
        return np.zeros((0, d), dtype=np.float32)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    seqs = tokenize(tokenizer, texts, min(max_len or model.cfg.max_len, model.cfg.max_len))
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.empty((len(texts), d), dtype=np.float32)
    pad = model.cfg.pad_id
    was = model.training
    model.eval()
    try:
        with _threads(threads), torch.inference_mode():
            for k in range(0, len(order), batch_size):
                rows = order[k:k + batch_size]
                T = max(len(seqs[i]) for i in rows)
                ids = torch.full((len(rows), T), pad, dtype=torch.long)
                attn = torch.zeros((len(rows), T), dtype=torch.long)
                for b, i in enumerate(rows):
                    ids[b, :len(seqs[i])] = torch.tensor(seqs[i])
                    attn[b, :len(seqs[i])] = 1
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    vec = model.pool(ids.to(device), attn.to(device), pooling)
                    vec = torch.nn.functional.normalize(vec.float(), dim=-1) if normalize else vec
                out[rows] = vec.float().cpu().numpy()
                if on_progress is not None:
                    on_progress(min(k + batch_size, len(order)), len(order))
    finally:
        model.train(was)
    return out
