"""Distillation: a small student of our own architecture learns a teacher's sentence vectors.
`distill(DistillConfig) -> checkpoint folder`, a phase of the one training loop (loop.py).

The texts are what the contrastive pairs are made of (pairs.py, with every hold-out applied): every training verse in
each of the five translations, one seeded span of each (what people type), the Nave's labels of training topics, and
Matthew Henry's commentary sentences and chapter-outline lines.
The teacher (ours, or a Hugging Face BERT folder such as all-MiniLM-L6-v2) encodes them once; its vectors are cached
in the cache root keyed by the teacher's sha256 and the texts, so a second run, a resumed run and every other student
of the same teacher skip that hour. Validation: the same loss on held-out verses (the pre-training's split) and their
spans.

The student's pooled vector goes through a linear projection to the teacher's dimension when the two differ
(EncoderConfig.proj_dim). Losses: `cosine` (1 - cos between the student's normalised vector and the teacher's), or
`mse` (the student's raw pooled vector against the teacher's normalised one, as sentence-transformers' MSELoss).
"""

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corpus import cache
from corpus.books import SCOPES, scope_of
from corpus.errors import BadInput, at
from encoder import checkpoint as ckpt
from encoder import distributed as D
from encoder import loop as L
from encoder import pairs as P
from encoder import tokenizer as tok
from encoder.embed import encode_texts
from encoder.finetune import encode_packed, pack
from encoder.hf import resolve, shown
from encoder.model import PRESETS, Encoder

LOSSES = ("cosine", "mse")


@dataclass(frozen=True)
class DistillConfig:
    teacher: str                       # checkpoint folder, Hugging Face BERT folder, or "minilm"
    out: str = "build/distill"
    init: str | None = None            # a checkpoint of ours to start the student from (its tokenizer comes along)
    preset: str = "small"              # the student's shape when there is no init
    tokenizer: str = tok.BERT          # the student's vocabulary when there is no init: bert-base-uncased or wordpiece-N
    loss: str = "cosine"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 5e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    clip: float | None = 1.0
    warmup: int = 100
    max_len: int = 64
    translations: tuple[str, ...] = ("web", "kjv", "asv", "ylt", "dar")
    naves: bool = True
    naves_holdout: str = "dev+test"
    spans: bool = True
    commentary: bool = True            # Matthew Henry's commentary sentences and outline lines too
    scope: str = "all"                 # "nt": only New Testament verses (the default corpus; a quarter of the texts)
    val_fraction: float = 0.02
    val_texts: int = 1024
    limit: int | None = None           # first N verse ids only (tests, smoke runs)
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0
    device: str = "auto"
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        return L.config_from_dict(cls, d, "distill", ("translations",))


def check_config(cfg: DistillConfig) -> None:
    problems = L.check_common(cfg)
    if cfg.loss not in LOSSES:
        problems.append(f"loss must be one of {'|'.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.init is None and cfg.preset not in PRESETS:
        problems.append(f"unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    if cfg.scope not in SCOPES:
        problems.append(f"scope must be one of {'|'.join(SCOPES)}, got {cfg.scope!r}")
    if not isinstance(cfg.max_len, int) or cfg.max_len < 3:
        problems.append(f"max_len must be an integer >= 3, got {cfg.max_len!r}")
    if problems:
        raise BadInput("distill config: " + "; ".join(problems))


def texts(pd: P.PairData, seed: int, spans: bool, scope: str = "all") -> tuple[list[str], list[str]]:
    """(training texts, validation texts), each deduplicated in first-seen order; no text equal to a query of a
    committed set (the pairs' `forbidden`), no keyword-xlate verse, no held-out Nave topic. `scope` keeps the verses
    of one testament (Nave's labels are kept whole: they are queries, not verses)."""
    rng = np.random.default_rng([seed, 17])
    keep_verse = lambda k: scope == "all" or scope_of(pd.ids[k]) == scope  # noqa: E731

    def of(verses) -> list[str]:
        out = []
        for k in (k for k in verses if keep_verse(k)):
            have = [t for t in pd.translations if pd.texts[t][k]]
            out += [pd.texts[t][k] for t in have]
            if spans and have:
                out.append(P.span_of(pd.texts[have[int(rng.integers(len(have)))]][k], rng))
        return out

    train = of(pd.train_verses) + list(pd.naves_labels) + list(pd.comment_anchors)
    val = of(pd.val_verses)
    keep = lambda ts: list(dict.fromkeys(t for t in ts if t and P.norm(t) not in pd.forbidden))  # noqa: E731
    return keep(train), keep(val)


def teacher_vectors(teacher: Path, sha: str, all_texts: list[str], home: Path, on_progress=None,
                    device: str | torch.device = "cpu") -> np.ndarray:
    """float32 [n, d] for `all_texts`, computed once per (teacher sha256 `sha`, texts) and cached under `home`.
    `on_progress(done, total)` after each chunk (the teacher's pass takes minutes on a CPU). `device`: where the
    teacher runs; the training's own device (on a GPU machine the pass on its CPU took three minutes of a lease)."""
    key = hashlib.sha256(json.dumps(all_texts).encode()).hexdigest()[:16]
    path = home / "distill" / f"teacher-{sha[:16]}-{key}.npy"
    data = cache.read_file(path, "teacher-vector")
    if data is not None:
        try:
            got = np.load(io.BytesIO(data), allow_pickle=False)
            if got.ndim == 2 and got.shape[0] == len(all_texts):
                return got.astype(np.float32)
        except ValueError:
            pass
        cache.notice(f"teacher-vector cache {path} does not hold {len(all_texts)} vectors; rebuilding it")
    t = ckpt.load(teacher, device)
    parts = []
    for k in range(0, len(all_texts), 4096):
        parts.append(encode_texts(t.model, t.tokenizer, all_texts[k:k + 4096], batch_size=512))
        if on_progress is not None:
            on_progress(min(k + 4096, len(all_texts)), len(all_texts))
    vecs = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    half = vecs.astype(np.float16)  # half the disk; cosines move by < 1e-3
    buf = io.BytesIO()
    np.save(buf, half, allow_pickle=False)
    cache.write_file(path, buf.getvalue())
    # What the cache gives back, not the float32 originals: a first run and its resumption must see the same targets.
    return half.astype(np.float32)


def student(cfg: DistillConfig, teacher_dim: int, device, tk_texts: Callable[[], list[str]], home: Path):
    """(model, tokenizer, init manifest) of the student, its projection sized to the teacher; a trained tokenizer is
    cached under `home`."""
    if cfg.init is not None:
        start = ckpt.load(resolve(cfg.init), device)
        model, tk, manifest = start.model, start.tokenizer, start.manifest
        if model.out_dim != teacher_dim:  # a new projection to the teacher's size; everything else carries over
            model = Encoder(replace(model.cfg, proj_dim=0 if model.cfg.d_model == teacher_dim else teacher_dim))
            kept = {k: v for k, v in start.model.state_dict().items() if not k.startswith("proj.")}
            model.load_state_dict(kept, strict=False)
        return model.to(device), tk, manifest
    tk = tok.build(cfg.tokenizer, hashlib.sha256("\n".join(tk_texts()).encode()).hexdigest(), tk_texts, home)
    base = PRESETS[cfg.preset]
    mcfg = replace(base, vocab_size=tk.get_vocab_size(), pad_id=tok.special_ids(tk)["pad"],
                   proj_dim=0 if base.d_model == teacher_dim else teacher_dim)
    return Encoder(mcfg).to(device), tk, {}


def distill_loss(model: Encoder, packed, target: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        raw = torch.cat([model.pool(ids, attn) for ids, attn in packed.chunks])[packed.inverse]
        return F.mse_loss(raw, target)
    s = encode_packed(model, packed)
    return (1.0 - (s * target).sum(-1)).mean()


def distill(cfg: DistillConfig, *, home: Path, resume: bool = False, overwrite: bool = False,
            on_step: Callable[[dict, int], None] | None = None, on_progress=None) -> Path:
    """Distil (or continue) and return the checkpoint folder `cfg.out`. `home`: the cache root (corpora, tokenizer,
    teacher vectors); `on_progress(done, total)`: the teacher's pass over the texts, when it runs."""
    check_config(cfg)
    d, device = D.setup(cfg.device)
    try:
        out = L.prepare_out("distill", cfg, d, resume, overwrite)
        teacher = resolve(cfg.teacher)
        if not teacher.exists():
            raise at(teacher, None, "no such teacher checkpoint")
        for folder in (teacher, *([resolve(cfg.init)] if cfg.init and not resume else [])):
            ckpt.verify(folder)  # before the texts are prepared (seconds to minutes)
        pd = P.build(cfg.translations, val_fraction=cfg.val_fraction, naves=cfg.naves,
                     naves_holdout=cfg.naves_holdout, limit=cfg.limit, commentary=cfg.commentary, home=home)
        train_t, val_t = texts(pd, cfg.seed, cfg.spans, cfg.scope)
        val_t = val_t[:cfg.val_texts]
        if not train_t:
            raise BadInput("no distillation texts: the selected verses are all held out")
        teacher_sha = ckpt.sha256(teacher)  # hashes 46 MB of weights: once, for the cache key and the manifest
        vecs = torch.from_numpy(teacher_vectors(teacher, teacher_sha, train_t + val_t, home, on_progress,
                                                 device)).to(device)
        train_v, val_v = vecs[:len(train_t)], vecs[len(train_t):]
        torch.manual_seed(cfg.seed)
        if resume:
            start = ckpt.load(out, device)
            model, tk, init_manifest = start.model, start.tokenizer, start.manifest.get("init_manifest", {})
        else:
            model, tk, init_manifest = student(cfg, vecs.shape[1], device, lambda: train_t, home)
        return L.run(_phase(cfg, model, tk, (teacher, teacher_sha), train_t, train_v, val_t, val_v, init_manifest, d,
                            device),
                     d, device, out, resume=resume, on_step=on_step)
    finally:
        D.teardown(d)


def _phase(cfg, model, tk, teacher_id, train_t, train_v, val_t, val_v, init_manifest, d, device) -> L.Phase:
    max_len, pad = min(cfg.max_len, model.cfg.max_len), model.cfg.pad_id
    teacher, teacher_sha = teacher_id

    def step(module, s: int):
        rng = np.random.default_rng([cfg.seed, s, 5])  # the batch of step s: a function of (seed, s) alone
        rows = rng.choice(len(train_t), size=min(cfg.batch_size, len(train_t)), replace=False)
        mine = rows[D.shard(len(rows), d)]
        packed = pack(tk, [train_t[i] for i in mine], max_len, pad, device)
        torch.manual_seed(cfg.seed * 1_000_003 + s * 1_009 + d.rank)
        return module(packed, train_v[torch.from_numpy(mine).to(device)]), {}, packed.tokens

    def evaluate() -> dict:
        if not val_t:
            return {}
        model.eval()
        with torch.inference_mode(), L.autocast(device):
            losses, cosines = [], []
            for k in range(0, len(val_t), 256):
                packed = pack(tk, val_t[k:k + 256], max_len, pad, device)
                losses.append(float(distill_loss(model, packed, val_v[k:k + 256], cfg.loss)) * len(packed.inverse))
                cosines.append(float((encode_packed(model, packed) * val_v[k:k + 256]).sum()))
        model.train()
        return {"val_loss": sum(losses) / len(val_t), "val_cos": sum(cosines) / len(val_t)}

    def manifest(log: list[dict]) -> dict:
        last_val = next((r for r in reversed(log) if "val_loss" in r), {})
        return {"kind": "distill", "teacher": {"path": shown(teacher), "sha256": teacher_sha},
                "init": cfg.init, "init_manifest": init_manifest,
                "texts": {"train": len(train_t), "val": len(val_t)}, "loss": cfg.loss,
                "teacher_dim": int(train_v.shape[1]), "final_val_loss": last_val.get("val_loss"),
                "final_val_cos": last_val.get("val_cos")}

    return L.Phase("distill", cfg, _Student(model, cfg.loss), model, tk, step,
                   config=lambda: {"model": asdict(model.cfg), "distill": asdict(cfg)}, manifest=manifest,
                   evaluate=evaluate)


class _Student(torch.nn.Module):
    """The student with its loss as forward, so one DDP wrapper covers it."""

    def __init__(self, model: Encoder, loss: str):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, packed, target):
        return distill_loss(self.model, packed, target, self.loss)
