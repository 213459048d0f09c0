"""MLM pre-training as one function: `train(TrainConfig) -> checkpoint folder`. No globals, no exec.

AdamW (SGD for ablations), global-norm clipping at 1.0 (off with clip=None), linear warmup then linear decay to 0
(warmup=0 turns warmup off), bf16 autocast on CUDA only, optional torch.compile. Every step appends a record to the
log: step, loss, lr, grad_norm (before clipping), tokens_per_s, peak_mem (CUDA max allocated, or peak RSS on CPU),
rss; evaluation steps add val_loss. Checkpoints are saved every `save_every` steps and at the end (atomically, see
checkpoint.py); `resume=True` continues from the last one and repeats exactly the numbers an uninterrupted run would
give, because the batch, the masks and the dropout seed of step s are functions of (seed, s) alone.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import data
from encoder import distributed as D
from encoder import loop as L
from encoder import tokenizer as tok
from encoder.model import PRESETS, Encoder


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    out: str = "build/encoder-small"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9             # SGD only
    clip: float | None = 1.0          # global gradient-norm limit; None = no clipping
    warmup: int = 100                 # linear warmup steps; 0 = none
    schedule: str = "linear"          # after warmup: "linear" decay to 0, or "constant"
    tokenizer: str = "wordpiece-8192"  # or "bert-base-uncased"
    translations: tuple[str, ...] = ("web", "kjv", "asv", "ylt", "dar")
    scope: str = "all"
    naves: bool = True
    limit: int | None = None          # first N verses per translation (tests, smoke runs); drops Nave's
    val_fraction: float = 0.02
    max_len: int | None = None        # window length; None = the model's positions
    mask_prob: float = 0.15
    eval_every: int = 250
    eval_windows: int | None = 2000   # validation windows per evaluation (a fixed sample); None = all
    save_every: int = 1000
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    model: dict = field(default_factory=dict)  # EncoderConfig overrides, e.g. {"norm": "post", "act": "relu"}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return L.config_from_dict(cls, d, "train", ("translations",))


# Training defaults per architecture preset; explicit options override them.
TRAIN_PRESETS = {
    "tiny": dict(tokenizer=tok.BERT, steps=50, batch_size=16, lr=1e-3, warmup=10, eval_every=25, eval_windows=256,
                 save_every=1000),
    # what reports/training/pretrain-small ran: about 30 minutes on one shared CPU core
    "small": dict(tokenizer="wordpiece-8192", steps=1500, batch_size=32, lr=1e-3, warmup=100, eval_every=250,
                  eval_windows=None, save_every=250),
    "base": dict(tokenizer=tok.BERT, steps=20000, batch_size=128, lr=1e-4, warmup=1000, eval_every=1000,
                 eval_windows=None, save_every=2000),
}


def preset_config(preset: str, **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig.from_dict({"preset": preset, "out": f"build/encoder-{preset}", **TRAIN_PRESETS[preset],
                                  **given})


def check_config(cfg: TrainConfig) -> None:
    problems = L.check_common(cfg)
    if cfg.preset not in PRESETS:
        problems.append(f"unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    if cfg.schedule not in L.SCHEDULES:
        problems.append(f"schedule must be one of {'|'.join(L.SCHEDULES)}, got {cfg.schedule!r}")
    if not 0.0 <= cfg.val_fraction < 0.5:
        problems.append(f"val_fraction must be in [0, 0.5), got {cfg.val_fraction}")
    positions = cfg.model.get("max_len", PRESETS[cfg.preset].max_len) if cfg.preset in PRESETS else None
    if cfg.max_len is not None and positions is not None and not 3 <= cfg.max_len <= positions:
        problems.append(f"max_len {cfg.max_len} does not fit the {cfg.preset} model's {positions} positions")
    if problems:
        raise BadInput("train config: " + "; ".join(problems))


def evaluate(model: Encoder, batches, device: torch.device) -> float:
    """Token-weighted mean MLM loss over fixed validation batches."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), L.autocast(device):
        for arrays in batches:
            ids, attn, labels = _tensors(arrays, device)
            n = int((labels != -100).sum())
            total += model.mlm_loss(ids, attn, labels).item() * n
            count += n
    model.train(was)
    return total / max(count, 1)


def _tensors(arrays, device):
    return [torch.from_numpy(a).to(device, non_blocking=True) for a in arrays]


def _data(cfg: TrainConfig, out: Path, resume: bool, home: Path):
    """Sources, tokenizer, windows and model config for a run; what is cached is cached under `home`."""
    sources = data.load_sources(cfg.translations, cfg.scope, cfg.naves, cfg.limit, home=home)
    if resume:  # the checkpoint's own tokenizer, never a retrained one (tokenizer training is not bit-reproducible)
        tk = tok.load(out / "tokenizer.json")
    else:
        tk = tok.build(cfg.tokenizer, data.sources_key(sources, cfg.val_fraction),
                       data.texts_fn(sources, cfg.val_fraction), home)
    sp = tok.special_ids(tk)
    try:
        mcfg = replace(PRESETS[cfg.preset], vocab_size=tk.get_vocab_size(), pad_id=sp["pad"], **cfg.model)
    except TypeError as e:
        raise BadInput(f"train config: bad model override ({e})") from None
    windows = data.load_windows(tk, sources, cfg.max_len or mcfg.max_len, cfg.val_fraction, home)
    if len(windows.train) == 0:
        raise BadInput("no training windows: the selected corpus is empty")
    return tk, mcfg, windows


def train(cfg: TrainConfig, *, home: Path, resume: bool = False, overwrite: bool = False,
          on_step: Callable[[dict, int], None] | None = None) -> Path:
    """Train (or continue training) and return the checkpoint folder `cfg.out`. `home`: the cache root (corpora,
    tokenizer, windows).
    `on_step(record, total_steps)` is called after every step (progress display; tests use it to interrupt)."""
    check_config(cfg)
    d, device = D.setup(cfg.device)  # one process, or this rank's share under torchrun (distributed.py)
    try:
        out = L.prepare_out("train", cfg, d, resume, overwrite)
        tk, mcfg, windows = _data(cfg, out, resume, home)
        pad = tok.special_ids(tk)["pad"]
        masking = data.Masking.of(tk, cfg.mask_prob)
        val = list(data.val_batches(windows.val, masking, pad, cfg.batch_size * 2, cfg.seed, cfg.eval_windows))
        torch.manual_seed(cfg.seed)
        model = Encoder(mcfg).to(device)
        if resume:
            model.load_state_dict(ckpt.load(out, device).model.state_dict())

        def step(module, s: int):
            batch = data.train_batch(windows.train, masking, pad, cfg.batch_size, cfg.seed, s)
            rows = D.shard(len(batch[0]), d)  # this rank's rows of the global batch (all of them in one process)
            ids, attn, labels = _tensors([a[rows] for a in batch], device)
            torch.manual_seed(cfg.seed * 1_000_003 + s)  # dropout: a function of (seed, step), like the batch
            return module(ids, attn, labels), {}, float(attn.sum())

        def manifest(log: list[dict]) -> dict:
            vals = [r["val_loss"] for r in log if "val_loss" in r]
            return {"data": {k: windows.stats[k] for k in ("sources", "train_windows", "val_windows", "train_tokens",
                                                           "val_tokens", "heldout_ids", "split_units", "max_len",
                                                           "val_fraction")},
                    "naves_in": "train only" if cfg.naves and cfg.limit is None else "not used",
                    "tokenizer": cfg.tokenizer, "vocab_size": mcfg.vocab_size,
                    "final_val_loss": vals[-1] if vals else None}

        phase = L.Phase("train", cfg, D.Method(model, "mlm_loss"), model, tk, step,
                        config=lambda: ckpt.config_dict(mcfg, cfg), manifest=manifest,
                        evaluate=(lambda: {"val_loss": evaluate(model, val, device)}) if val else None,
                        schedule=cfg.schedule)
        return L.run(phase, d, device, out, resume=resume, on_step=on_step)
    finally:
        D.teardown(d)
