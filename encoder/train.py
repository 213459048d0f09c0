"""MLM pre-training as one function: `train(TrainConfig) -> checkpoint folder`. No globals, no exec.

AdamW (SGD for ablations), global-norm clipping at 1.0 (off with clip=None), linear warmup then linear decay to 0
(warmup=0 turns warmup off), bf16 autocast on CUDA only, optional torch.compile. Every step appends a record to the
log: step, loss, lr, grad_norm (before clipping), tokens_per_s, peak_mem (CUDA max allocated, or peak RSS on CPU),
rss; evaluation steps add val_loss. Checkpoints are saved every `save_every` steps and at the end (atomically, see
checkpoint.py); `resume=True` continues from the last one and repeats exactly the numbers an uninterrupted run would
give, because the batch, the masks and the dropout seed of step s are functions of (seed, s) alone.
"""

import ctypes
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from corpus.errors import BadInput, at
from corpus.paths import REPO
from encoder import checkpoint as ckpt
from encoder import data
from encoder import distributed as D
from encoder import tokenizer as tok
from encoder.model import PRESETS, Encoder, EncoderConfig

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "constant")
TRIM_EVERY = 25  # steps between release_freed_memory() calls


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
        return config_from_dict(cls, d, "train", ("translations",))


def config_from_dict(cls, d: dict, what: str, tuples: tuple[str, ...]):
    """A frozen config from its JSON form: unknown fields refused, JSON lists turned back into tuples."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise BadInput(f"{what} config: unknown field(s) {', '.join(unknown)}")
    return cls(**{k: (tuple(v) if k in tuples and v is not None else v) for k, v in d.items()})


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

# Fields that may change between a run and its resumption (they do not change what is trained).
RESUMABLE = {"out", "steps", "device", "compile", "eval_every", "save_every"}


def preset_config(preset: str, **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig.from_dict({"preset": preset, "out": f"build/encoder-{preset}", **TRAIN_PRESETS[preset],
                                  **given})


def resolve_device(spec: str) -> torch.device:
    """"auto" -> cuda if available else cpu; refuse what this machine cannot run, in one line."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(spec)
    except (RuntimeError, ValueError):
        raise BadInput(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if d.type == "cpu":
        return torch.device("cpu")
    if d.type != "cuda":
        raise BadInput(f"device {spec!r} is not supported: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise BadInput(f"device {spec!r} requested but CUDA is not available here (torch {torch.__version__}); "
                       "use --device cpu")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise BadInput(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d


def check_config(cfg: TrainConfig) -> None:
    problems = []
    if cfg.preset not in PRESETS:
        problems.append(f"unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    if cfg.schedule not in SCHEDULES:
        problems.append(f"schedule must be one of {'|'.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {'|'.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    for name in ("steps", "batch_size", "eval_every", "save_every"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            problems.append(f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if not cfg.lr > 0:
        problems.append(f"lr must be positive, got {cfg.lr}")
    if cfg.clip is not None and not cfg.clip > 0:
        problems.append(f"clip must be positive or None, got {cfg.clip}")
    if not isinstance(cfg.warmup, int) or cfg.warmup < 0:
        problems.append(f"warmup must be a non-negative integer, got {cfg.warmup!r}")
    if not 0.0 <= cfg.val_fraction < 0.5:
        problems.append(f"val_fraction must be in [0, 0.5), got {cfg.val_fraction}")
    positions = cfg.model.get("max_len", PRESETS[cfg.preset].max_len) if cfg.preset in PRESETS else None
    if cfg.max_len is not None and positions is not None and not 3 <= cfg.max_len <= positions:
        problems.append(f"max_len {cfg.max_len} does not fit the {cfg.preset} model's {positions} positions")
    if problems:
        raise BadInput("train config: " + "; ".join(problems))


def lr_factor(step: int, warmup: int, total: int, schedule: str = "linear") -> float:
    """Multiplier of the peak lr at 0-based `step`: linear warmup over `warmup` steps, then linear decay to 0
    (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases, LayerNorm gains and embeddings' position table: the usual BERT/nanoGPT split.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def clip_gradients(params, limit: float | None) -> float:
    """Global L2 norm of the gradients BEFORE clipping; with a limit, scales them so the norm is at most `limit`."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, limit if limit is not None else math.inf)
    return float(norm)


def release_freed_memory() -> None:
    """Hand memory that torch has freed back to the OS (glibc's malloc_trim; a no-op elsewhere).
    Why: glibc keeps freed activation buffers in its heap, so a CPU run's RSS climbed from 0.6 to 2.7 GB over 1,500
    steps with nothing leaked (malloc_trim brings it back to the start). Trimming every step costs page faults on
    the next step (~10%); every `TRIM_EVERY` steps costs nothing measurable and bounds the growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_mem(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _autocast(device: torch.device):
    # bf16 on CUDA (no loss scaling needed); CPU stays float32: CPU bf16 matmuls are slow on most chips.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)


def _tensors(arrays, device):
    return [torch.from_numpy(a).to(device, non_blocking=True) for a in arrays]


def evaluate(model: Encoder, batches, device: torch.device) -> float:
    """Token-weighted mean MLM loss over fixed validation batches."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), _autocast(device):
        for arrays in batches:
            ids, attn, labels = _tensors(arrays, device)
            n = int((labels != -100).sum())
            total += model.mlm_loss(ids, attn, labels).item() * n
            count += n
    model.train(was)
    return total / max(count, 1)


def _hardware(device: torch.device) -> dict:
    hw = {"device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
          "cpu": platform.processor() or platform.machine(), "platform": platform.platform()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except OSError:
        return None


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """What the output folder may hold: a resumable checkpoint with --resume, a checkpoint to replace with
    --overwrite, or nothing (a folder of something else is never swapped away)."""
    if resume:
        if not (out / "trainer_state.pt").is_file():
            raise at(out / "trainer_state.pt", None, "missing: this checkpoint cannot be resumed")
    elif out.exists():
        if (out / "config.json").is_file() and not overwrite:
            raise at(out, None, "already holds a checkpoint; use --resume to continue it or --overwrite to replace it")
        if not (out / "config.json").is_file() and any(out.iterdir()):
            raise at(out, None, "exists, is not empty and is not a checkpoint folder; choose another --out")


def same_training(stored: dict, cfg, where: Path, verb: str = "trained") -> None:
    """Resuming is only exact when everything that shapes training is unchanged. `cfg` is a TrainConfig or a
    FinetuneConfig; `stored` the same kind of config as read back from the checkpoint."""
    mine = asdict(cfg)
    stored = asdict(type(cfg).from_dict(stored))
    diffs = [f"{k}={stored[k]!r} (now {mine[k]!r})" for k in mine if k not in RESUMABLE and stored[k] != mine[k]]
    if diffs:
        raise at(where, None, f"cannot resume: the checkpoint was {verb} with " + ", ".join(diffs))


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          on_step: Callable[[dict, int], None] | None = None) -> Path:
    """Train (or continue training) and return the checkpoint folder `cfg.out`.
    `on_step(record, total_steps)` is called after every step (progress display; tests use it to interrupt)."""
    check_config(cfg)
    d, device = D.setup(cfg.device)  # one process, or this rank's share under torchrun (distributed.py)
    out = Path(cfg.out)
    if d.main:
        ckpt.recover(out)
    D.barrier(d)
    if resume:
        stored = ckpt.read_config(out)
        if "finetune" in stored:
            raise at(out / "config.json", None, "is a fine-tuned checkpoint: resume it with bench finetune --resume")
        same_training(stored.get("train", {}), cfg, out / "config.json")
    check_out(out, resume, overwrite)

    t_setup = time.perf_counter()
    sources = data.load_sources(cfg.translations, cfg.scope, cfg.naves, cfg.limit)
    if resume:  # the checkpoint's own tokenizer, never a retrained one (tokenizer training is not bit-reproducible)
        tk = tok.load(out / "tokenizer.json")
    else:
        tk = tok.build(cfg.tokenizer, data.sources_key(sources, cfg.val_fraction),
                       data.texts_fn(sources, cfg.val_fraction))
    sp = tok.special_ids(tk)
    try:
        mcfg = replace(PRESETS[cfg.preset], vocab_size=tk.get_vocab_size(), pad_id=sp["pad"], **cfg.model)
    except TypeError as e:
        raise BadInput(f"train config: bad model override ({e})") from None
    max_len = cfg.max_len or mcfg.max_len
    windows = data.load_windows(tk, sources, max_len, cfg.val_fraction)
    if len(windows.train) == 0:
        raise BadInput("no training windows: the selected corpus is empty")
    masking = data.Masking.of(tk, cfg.mask_prob)
    val = list(data.val_batches(windows.val, masking, sp["pad"], cfg.batch_size * 2, cfg.seed, cfg.eval_windows))

    torch.manual_seed(cfg.seed)
    model = Encoder(mcfg).to(device)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps, cfg.schedule))
    start, log, wall_before = 0, [], 0.0
    if resume:
        loaded = ckpt.load(out, device)
        model.load_state_dict(loaded.model.state_dict())
        state = torch.load(out / "trainer_state.pt", map_location=device, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, wall_before = int(state["step"]), float(state["wall_s"])
        log = [r for r in ckpt.read_log(out) if r["step"] <= start]
        if cfg.steps < start:
            raise BadInput(f"{out}: already trained for {start} steps; --steps {cfg.steps} is fewer")
    model.train()
    if cfg.compile:
        model.compile(dynamic=True)
    ddp = D.wrap(D.Method(model, "mlm_loss"), d, device)  # the model itself when not distributed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    setup_s = time.perf_counter() - t_setup

    def checkpoint_now(step: int, wall: float) -> None:
        losses = [r["loss"] for r in log[-50:]]
        vals = [r["val_loss"] for r in log if "val_loss" in r]
        manifest = {
            "data": {k: windows.stats[k] for k in ("sources", "train_windows", "val_windows", "train_tokens",
                                                   "val_tokens", "heldout_ids", "split_units", "max_len",
                                                   "val_fraction")},
            "naves_in": "train only" if cfg.naves and cfg.limit is None else "not used",
            "tokenizer": cfg.tokenizer, "vocab_size": mcfg.vocab_size,
            "params": model.num_params(), "steps": step, "hardware": _hardware(device),
            "wall_s": round(wall, 1), "final_train_loss": float(np.mean(losses)) if losses else None,
            "final_train_loss_window": len(losses), "final_val_loss": vals[-1] if vals else None,
            "torch": torch.__version__, "python": sys.version.split()[0], "git_commit": _git_commit(),
            **({"world_size": d.world, "replica_param_sha256": replicas} if d.enabled else {}),
        }
        state = {"step": step, "wall_s": wall, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        ckpt.save(out, model=model, tokenizer=tk, config=ckpt.config_dict(mcfg, cfg), log=log, manifest=manifest,
                  trainer_state=state)

    params = [p for p in model.parameters()]
    t_run = time.perf_counter()
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = data.train_batch(windows.train, masking, sp["pad"], cfg.batch_size, cfg.seed, step)
        rows = D.shard(len(batch[0]), d)  # this rank's rows of the global batch (all of them in one process)
        ids, attn, labels = _tensors([a[rows] for a in batch], device)
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout: a function of (seed, step), like the batch
        lr = sched.get_last_lr()[0]
        with _autocast(device):
            loss = ddp(ids, attn, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(params, cfg.clip)
        opt.step()
        sched.step()
        # a float, not the tensor: keeping the tensor would keep its graph alive; mean over ranks, tokens summed
        loss_value, tokens = D.all_sum([loss.item() / d.world, float(attn.sum())], d, device)
        del loss
        if device.type == "cpu" and (step + 1) % TRIM_EVERY == 0:
            release_freed_memory()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        rec = {"step": step + 1, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
               "tokens_per_s": round(tokens / dt, 1), "peak_mem": _peak_mem(device), "rss": _rss()}
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            if val and d.main:
                rec["val_loss"] = evaluate(model, val, device)
        log.append(rec)
        if on_step is not None and d.main:
            on_step(rec, cfg.steps)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            replicas = D.digests(model, d) if d.enabled else None  # a collective: every rank takes part
            if d.main:
                checkpoint_now(step + 1, wall_before + setup_s + time.perf_counter() - t_run)
            D.barrier(d)
    D.teardown(d)
    return out
