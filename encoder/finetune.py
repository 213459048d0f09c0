"""Contrastive fine-tuning for retrieval: `finetune(FinetuneConfig) -> checkpoint folder`.

Start from a pre-trained checkpoint (`bench train`) and train the mean-pooled, L2-normalised `Encoder.encode` vectors
so that an anchor (a span, another translation, a Nave's label; see pairs.py) lands next to its verse. Loss: symmetric
InfoNCE over in-batch negatives, logits = a @ p.T / temperature, cross-entropy anchor->verse and verse->anchor
averaged. The temperature is learned (log-parametrised, init 0.05, floor 0.01, in its own parameter group with a
larger learning rate: at the model's rate it would barely move in a few hundred steps) or fixed.

Why one big batch and no gradient accumulation: each anchor's negatives are the other verses in its batch, so a
batch of 256 is 255 negatives; four accumulated batches of 64 are four problems with 63 each. The batch is kept big
by keeping sequences short (max_len 64 word pieces: a verse averages ~35, a span or label ~10) and, on several
processes, by all-gathering the embeddings so every rank sees the whole global batch (distributed.py).

Engineering is pre-training's (train.py): AdamW or SGD, clipping, warmup + linear decay, bf16 autocast on CUDA,
a log record per step, validation on held-out verses, atomic resumable checkpoints in the same folder format (the
MLM head is frozen and saved unchanged, so the folder loads with `encoder.checkpoint.load` and the `encoder`
retriever). config.json keeps the pre-training config under "train" and adds this one under "finetune".
"""

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import distributed as D
from encoder import loop as L
from encoder import pairs as P
from encoder.data import pad_rows
from encoder.embed import tokenize
from encoder.hf import resolve
from encoder.negatives import Negatives

MIN_TEMPERATURE = 0.01


@dataclass(frozen=True)
class FinetuneConfig:
    init: str                          # the pre-trained checkpoint folder to start from
    out: str = "build/finetune"
    steps: int = 300
    batch_size: int = 256              # pairs per optimizer step, over all processes: 255 negatives per anchor
    lr: float = 5e-4                   # from a 30-step pilot on the small pre-training: 1e-4 < 3e-4 < 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9              # SGD only
    clip: float | None = 1.0
    warmup: int = 30
    temperature: float = 0.05          # initial value when learned
    learn_temperature: bool = True
    temperature_lr: float = 1e-2       # peak lr of log(1/temperature); same schedule as the model
    max_len: int = 64                  # word pieces per text, [CLS] and [SEP] included
    mix: tuple[float, ...] = (0.2, 0.4, 0.4)  # draw weights of xlate / span / naves (/ comment / natural) pairs
    web_share: float = 0.5             # share of positives in the WEB (the corpus searched) when the WEB has the verse
    translations: tuple[str, ...] = ("web", "kjv", "asv", "ylt", "dar")
    naves: bool = True
    naves_holdout: str = "dev+test"    # "test": train on dev topics too (thematic-dev then stops being held out)
    negatives: str | None = None       # a TREC run of BM25-mined candidates (bench mine-negatives): one hard negative
                                       # per pair where a candidate passes the false-negative guards
    limit: int | None = None           # first N verse ids only (tests, smoke runs)
    val_per_kind: int = 512
    val_batch: int = 256               # validation accuracy is in-batch, so its batch size is fixed, not --batch-size
    eval_every: int = 50
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        return L.config_from_dict(cls, d, "finetune", ("translations", "mix"))


def check_config(cfg: FinetuneConfig) -> None:
    problems = L.check_common(cfg)
    for name in ("val_per_kind", "val_batch"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            problems.append(f"{name} must be a positive integer, got {v!r}")
    if isinstance(cfg.batch_size, int) and cfg.batch_size < 2:
        problems.append("batch_size must be at least 2 (in-batch negatives)")
    if not MIN_TEMPERATURE <= cfg.temperature <= 10:
        problems.append(f"temperature must be in [{MIN_TEMPERATURE}, 10], got {cfg.temperature}")
    if not 0 <= cfg.web_share <= 1:
        problems.append(f"web_share must be in [0, 1], got {cfg.web_share}")
    if not isinstance(cfg.max_len, int) or cfg.max_len < 3:
        problems.append(f"max_len must be an integer >= 3, got {cfg.max_len!r}")
    if cfg.naves_holdout not in P.NAVES_HOLDOUTS:
        problems.append(f"naves_holdout must be one of {'|'.join(P.NAVES_HOLDOUTS)}, got {cfg.naves_holdout!r}")
    if problems:
        raise BadInput("finetune config: " + "; ".join(problems))
    P.check_mix(cfg.mix)


def parse_temperature(text: str) -> tuple[float, bool]:
    """'learned' -> (0.05, True); '0.07' -> (0.07, False)."""
    if text.strip().lower() == "learned":
        return 0.05, True
    try:
        t = float(text)
    except ValueError:
        raise BadInput(f"--temperature must be a number or 'learned', got {text!r}") from None
    return t, False


class Contrastive(torch.nn.Module):
    """The encoder plus the temperature, so one DDP wrapper covers both."""

    def __init__(self, encoder, temperature: float, learn: bool):
        super().__init__()
        self.encoder = encoder
        self.log_inv_t = torch.nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn)

    def forward(self, anchors: "Packed", positives: "Packed", negatives: "Packed | None" = None):
        """-> anchor and positive vectors [n, D] each, unit length, in batch order (and the negatives' [m, D])."""
        out = encode_packed(self.encoder, anchors), encode_packed(self.encoder, positives)
        return out if negatives is None else (*out, encode_packed(self.encoder, negatives))

    def scale(self) -> torch.Tensor:
        return self.log_inv_t.clamp(max=math.log(1.0 / MIN_TEMPERATURE)).exp()


def info_nce(a: torch.Tensor, p: torch.Tensor, scale: torch.Tensor,
             n: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE; row i of a and p are a pair, every other row a negative; `n` [m, D]: hard negatives, extra
    candidates for every anchor (the verse->anchor direction has no use for them). -> (loss, anchor->verse top-1)."""
    logits = scale * (a.float() @ p.float().T)                                   # [n, n]
    target = torch.arange(a.shape[0], device=a.device)
    back = F.cross_entropy(logits.T, target)
    if n is not None and n.shape[0]:
        logits = torch.cat([logits, scale * (a.float() @ n.float().T)], dim=1)   # [n, n + m]
    loss = (F.cross_entropy(logits, target) + back) / 2
    acc = (logits.argmax(1) == target).float().mean().item()
    return loss, acc


class Packed(NamedTuple):  # a NamedTuple: DDP knows how to move one to the device
    """Texts as length-sorted chunks, each padded to its own longest row (a batch padded to its longest verse would
    be half padding: verses average ~33 pieces, the longest hit 64), and the permutation back to batch order.
    All chunks are encoded in one graph: this is not gradient accumulation, every vector meets every other."""
    chunks: tuple[tuple[torch.Tensor, torch.Tensor], ...]   # (ids, attention) [rows, T_chunk] each
    inverse: torch.Tensor                                    # [n]: batch row i is sorted row inverse[i]
    tokens: int


CHUNK_ROWS = 32


def pack(tk, texts: list[str], max_len: int, pad_id: int, device, rows: int = CHUNK_ROWS) -> Packed:
    seqs = tokenize(tk, texts, max_len)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    chunks = []
    for k in range(0, len(order), rows):
        ids, attn = pad_rows([seqs[i] for i in order[k:k + rows]], pad_id)
        chunks.append((torch.from_numpy(ids).to(device), torch.from_numpy(attn).to(device)))
    inverse = torch.from_numpy(np.argsort(order, kind="stable")).to(device)
    return Packed(tuple(chunks), inverse, sum(len(s) for s in seqs))


def encode_packed(encoder, packed: Packed) -> torch.Tensor:
    return torch.cat([encoder.encode(ids, attn) for ids, attn in packed.chunks])[packed.inverse]


def evaluate(model: Contrastive, tk, val: dict[str, list], cfg: FinetuneConfig, pad_id: int, device) -> dict:
    """In-batch retrieval on fixed held-out pairs, per kind, in chunks of `val_batch`: top-1 accuracy (anchor ->
    verse among the chunk's verses) and the loss at the current temperature. Chunks smaller than half a batch are
    dropped (a chunk of 3 is an easy test)."""
    was = model.training
    model.eval()
    max_len = min(cfg.max_len, model.encoder.cfg.max_len)
    out = {}
    losses, accs = [], []
    with torch.inference_mode(), L.autocast(device):
        scale = model.scale()
        for kind, ps in val.items():
            kl, ka, n = 0.0, 0.0, 0
            for k in range(0, len(ps), cfg.val_batch):
                chunk = ps[k:k + cfg.val_batch]
                if len(chunk) < max(2, cfg.val_batch // 2) and n:
                    break
                a = encode_packed(model.encoder, pack(tk, [p.anchor for p in chunk], max_len, pad_id, device))
                v = encode_packed(model.encoder, pack(tk, [p.positive for p in chunk], max_len, pad_id, device))
                loss, acc = info_nce(a, v, scale)
                kl += loss.item() * len(chunk)
                ka += acc * len(chunk)
                n += len(chunk)
            out[f"val_loss_{kind}"] = kl / n
            out[f"val_acc_{kind}"] = ka / n
            losses.append(kl / n)
            accs.append(ka / n)
    model.train(was)
    if losses:
        out["val_loss"] = float(np.mean(losses))
        out["val_acc"] = float(np.mean(accs))
    return out


def finetune(cfg: FinetuneConfig, *, home: Path, resume: bool = False, overwrite: bool = False,
             on_step: Callable[[dict, int], None] | None = None, pairs: P.PairData | None = None) -> Path:
    """Fine-tune (or continue) and return the checkpoint folder `cfg.out`. Under torchrun, every rank calls this;
    rank 0 alone writes. `on_step(record, total_steps)` runs on rank 0 after every step. `pairs`: pair data already
    built with this config's settings (the ablation reuses one build for every variant); `home`: the cache root the
    corpora for the pairs are read from when `pairs` is not given."""
    check_config(cfg)
    d, device = D.setup(cfg.device)
    try:
        return _finetune(cfg, d, device, resume, overwrite, on_step, pairs, home)
    finally:
        D.teardown(d)


def build_pairs(cfg: FinetuneConfig, val_fraction: float, home: Path) -> P.PairData:
    weights = P.check_mix(cfg.mix)
    return P.build(cfg.translations, val_fraction=val_fraction, naves=cfg.naves, naves_holdout=cfg.naves_holdout,
                   limit=cfg.limit, commentary=weights[3] > 0, natural=P.NATURAL_FILE if weights[4] > 0 else None,
                   home=home)


def _finetune(cfg, d, device, resume, overwrite, on_step, pairs, home) -> Path:
    out, init = Path(cfg.out), resolve(cfg.init)  # "minilm" stays "minilm" in the config: no machine's path
    if out.resolve() == init.resolve():
        raise BadInput(f"{out}: --out must differ from --from (the starting checkpoint is never overwritten)")
    out = L.prepare_out("finetune", cfg, d, resume, overwrite)
    start_ckpt = ckpt.load(out if resume else init, device)
    init_cfg = ckpt.read_config(init) if init.exists() else start_ckpt.config
    init_sha = ckpt.sha256(init) if init.exists() else None
    base_manifest = start_ckpt.manifest.get("init_manifest", {}) if resume else start_ckpt.manifest
    model_cfg, tk = start_ckpt.model.cfg, start_ckpt.tokenizer
    pad_id, max_len = model_cfg.pad_id, min(cfg.max_len, model_cfg.max_len)
    val_fraction = float(init_cfg.get("train", {}).get("val_fraction", 0.02))

    data = pairs if pairs is not None else build_pairs(cfg, val_fraction, home)
    if data.stats["val_fraction"] != val_fraction:
        raise BadInput(f"pairs were built with val_fraction {data.stats['val_fraction']}, the checkpoint's "
                       f"pre-training held out {val_fraction}")
    if not len(data.train_verses):
        raise BadInput("no training pairs: the selected verses are all held out")
    val = P.val_pairs(data, cfg.val_per_kind, 0, cfg.web_share)  # seed 0 always: runs of any seed compare

    torch.manual_seed(cfg.seed)
    model = Contrastive(start_ckpt.model, cfg.temperature, cfg.learn_temperature).to(device)
    for name, p in model.encoder.named_parameters():  # the MLM head takes no part: frozen, saved unchanged
        p.requires_grad_(not name.startswith(("head_", "decoder_bias")))
    kinds_seen = Counter()
    hard = Negatives(data, cfg.negatives) if cfg.negatives else None

    def step(module, s: int):
        batch = P.sample_batch(data, cfg.batch_size, cfg.seed, s, cfg.mix, cfg.web_share)
        kinds_seen.update(p.kind for p in batch)
        rows = D.shard(len(batch), d)
        mine = [batch[i] for i in rows]
        anchors = pack(tk, [p.anchor for p in mine], max_len, pad_id, device)
        positives = pack(tk, [p.positive for p in mine], max_len, pad_id, device)
        picked = hard.pick(batch) if hard else []  # over the global batch: every rank sees the same choices
        negs = [picked[i] for i in rows if picked[i]] if hard else []
        negatives = pack(tk, negs, max_len, pad_id, device) if negs else None
        torch.manual_seed(cfg.seed * 1_000_003 + s * 1_009 + d.rank)  # dropout: a function of (seed, step, rank)
        a, p, *n = module(anchors, positives, negatives)
        # every rank joins the gather when negatives are on, with [0, D] rows if it drew none
        n = D.gather_rows(n[0] if n else a.new_zeros((0, a.shape[1])), d) if hard else None
        loss, acc = info_nce(D.gather_rows(a, d), D.gather_rows(p, d), model.scale(), n)
        tokens = anchors.tokens + positives.tokens + (negatives.tokens if negatives else 0)
        return loss, {"acc": acc, **({"negatives": sum(1 for t in picked if t)} if hard else {})}, tokens

    def load_state(state: dict) -> None:
        with torch.no_grad():
            model.log_inv_t.copy_(torch.tensor(float(state["log_inv_t"])))
        kinds_seen.update(state.get("kinds_seen", {}))

    def manifest(log: list[dict]) -> dict:
        last_val = next((r for r in reversed(log) if "val_loss" in r), {})
        return {"kind": "finetune",
                "init": {"path": cfg.init, "sha256": init_sha, "steps": base_manifest.get("steps"),
                         "final_val_loss": base_manifest.get("final_val_loss")},
                "init_manifest": base_manifest, "data": data.stats, "val_pairs": {k: len(v) for k, v in val.items()},
                "pairs_seen": dict(kinds_seen), "batch_size": cfg.batch_size, "max_len": max_len,
                "world_size": d.world, "backend": d.backend, "temperature": 1.0 / float(model.scale().detach()),
                "final_val": {k: v for k, v in last_val.items() if k.startswith("val_")},
                "final_val_loss": last_val.get("val_loss")}

    def config() -> dict:
        c = {"model": asdict(model_cfg), "train": init_cfg.get("train", {}), "finetune": asdict(cfg)}
        if "finetune" in init_cfg:  # fine-tuning a fine-tuned checkpoint: keep the chain
            c["finetune_init"] = init_cfg["finetune"]
        return c

    extra = [{"params": [model.log_inv_t], "lr": cfg.temperature_lr, "weight_decay": 0.0}] \
        if cfg.learn_temperature else []
    phase = L.Phase("finetune", cfg, model, model.encoder, tk, step, config=config, manifest=manifest,
                    evaluate=lambda: evaluate(model, tk, val, cfg, pad_id, device), extra_groups=extra,
                    state=lambda: {"log_inv_t": model.log_inv_t.item(), "kinds_seen": dict(kinds_seen)},
                    load_state=load_state,
                    after=lambda: {"temperature": 1.0 / float(model.scale().detach()), "pairs": cfg.batch_size})
    return L.run(phase, d, device, out, resume=resume, on_step=on_step)
