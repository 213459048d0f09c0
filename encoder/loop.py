"""The one training loop. Pre-training (train.py), contrastive fine-tuning (finetune.py) and distillation
(distill.py) are phases: each supplies its model, its batches and its loss as a `Phase`; this file owns everything
they share: the output-folder rules, resuming exactly, AdamW/SGD with warmup and linear decay, global-norm clipping,
bf16 autocast on CUDA, a log record per step, validation, atomic checkpoints every `save_every` steps, at the end and
when interrupted, and the DDP barriers when run under torchrun.

Exactness: a phase's batch for step s must be a function of (seed, s) alone, so a resumed run repeats the numbers an
uninterrupted one gives.
"""

import ctypes
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corpus.errors import BadInput, at
from corpus.paths import REPO
from encoder import checkpoint as ckpt
from encoder import distributed as D

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "constant")
PHASES = ("train", "finetune", "distill")  # also the config.json key each phase writes its config under
NOUNS = {"train": "pre-trained", "finetune": "fine-tuned", "distill": "distilled"}
TRIM_EVERY = 25  # steps between release_freed_memory() calls
# Fields that may change between a run and its resumption (they do not change what is trained).
RESUMABLE = {"out", "steps", "device", "compile", "eval_every", "save_every"}


# ---- configs ------------------------------------------------------------------------------------------------------

def config_from_dict(cls, d: dict, what: str, tuples: tuple[str, ...]):
    """A frozen config from its JSON form: unknown fields refused, JSON lists turned back into tuples."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise BadInput(f"{what} config: unknown field(s) {', '.join(unknown)}")
    return cls(**{k: (tuple(v) if k in tuples and v is not None else v) for k, v in d.items()})


def phase_of(config: dict) -> str:
    """Which phase wrote a checkpoint's config.json: the last one of the chain."""
    return next((p for p in reversed(PHASES) if p in config), "train")


def resumed_config(cls, phase: str, folder: Path, given: dict):
    """--resume: the checkpoint's stored config is the base; options given now override it (the loop then refuses
    changes to anything but RESUMABLE fields)."""
    ckpt.recover(folder)
    stored = ckpt.read_config(folder)
    _same_phase(stored, phase, folder)
    base = asdict(cls.from_dict(stored[phase]))
    return cls.from_dict({**base, **{k: v for k, v in given.items() if v is not None}})


def _same_phase(stored: dict, phase: str, folder: Path) -> None:
    if phase_of(stored) != phase:
        raise at(folder / "config.json", None, f"is not a {NOUNS[phase]} checkpoint (it is {NOUNS[phase_of(stored)]}): "
                                               f"resume it with bench {phase_of(stored)} --resume")


def same_training(stored: dict, cfg, where: Path, verb: str = "trained") -> None:
    """Resuming is only exact when everything that shapes training is unchanged."""
    mine = asdict(cfg)
    stored = asdict(type(cfg).from_dict(stored))
    diffs = [f"{k}={stored[k]!r} (now {mine[k]!r})" for k in mine if k not in RESUMABLE and stored[k] != mine[k]]
    if diffs:
        raise at(where, None, f"cannot resume: the checkpoint was {verb} with " + ", ".join(diffs))


def check_common(cfg) -> list[str]:
    """Problems with the fields every phase's config has."""
    problems = []
    if cfg.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {'|'.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    for name in ("steps", "batch_size", "eval_every", "save_every"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            problems.append(f"{name} must be a positive integer, got {v!r}")
    if not cfg.lr > 0:
        problems.append(f"lr must be positive, got {cfg.lr}")
    if cfg.clip is not None and not cfg.clip > 0:
        problems.append(f"clip must be positive or None, got {cfg.clip}")
    if not isinstance(cfg.warmup, int) or cfg.warmup < 0:
        problems.append(f"warmup must be a non-negative integer, got {cfg.warmup!r}")
    return problems


# ---- optimisation -------------------------------------------------------------------------------------------------

def lr_factor(step: int, warmup: int, total: int, schedule: str = "linear") -> float:
    """Multiplier of the peak lr at 0-based `step`: linear warmup over `warmup` steps, then linear decay to 0
    (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm gains: the usual BERT/nanoGPT split. Frozen parameters are listed too
    # (they never get a gradient, so no step touches them): the groups, and so saved optimizer states, keep one shape.
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def clip_gradients(params, limit: float | None) -> float:
    """Global L2 norm of the gradients BEFORE clipping; with a limit, scales them so the norm is at most `limit`."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, limit if limit is not None else math.inf)
    return float(norm)


def autocast(device: torch.device):
    # bf16 on CUDA (no loss scaling needed); CPU stays float32: CPU bf16 matmuls are slow on most chips.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ---- the machine ----------------------------------------------------------------------------------------------------

def release_freed_memory() -> None:
    """Hand memory that torch has freed back to the OS (glibc's malloc_trim; a no-op elsewhere).
    Why: glibc keeps freed activation buffers in its heap, so a CPU run's RSS climbed from 0.6 to 2.7 GB over 1,500
    steps with nothing leaked (malloc_trim brings it back to the start). Trimming every step costs page faults on
    the next step (~10%); every `TRIM_EVERY` steps costs nothing measurable and bounds the growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_mem(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def hardware(device: torch.device) -> dict:
    hw = {"device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
          "cpu": platform.processor() or platform.machine(), "platform": platform.platform()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except OSError:
        return None


def set_threads(threads: int | None) -> None:
    """Process-wide torch threads, set by the command (never inside a training function)."""
    if threads is None:
        return
    if threads < 1:
        raise BadInput(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


# ---- the output folder --------------------------------------------------------------------------------------------

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


def prepare_out(phase: str, cfg, d: D.Dist, resume: bool, overwrite: bool) -> Path:
    """Before any data is loaded: recover a half-swapped save, refuse a resume that would not be exact, and check what
    the folder holds."""
    out = Path(cfg.out)
    if d.main:
        ckpt.recover(out)
    D.barrier(d)
    if resume:
        stored = ckpt.read_config(out)
        _same_phase(stored, phase, out)
        same_training(stored.get(phase, {}), cfg, out / "config.json", verb=NOUNS[phase].removeprefix("pre-"))
    check_out(out, resume, overwrite)
    return out


# ---- the loop -----------------------------------------------------------------------------------------------------

@dataclass
class Phase:
    """What a phase hands the loop. `step(module, s)` runs the forward pass of global step s on this rank's share of
    the batch and returns (loss, log fields, tokens); `module` is `model`, wrapped in DDP when distributed."""
    name: str                                          # one of PHASES
    cfg: Any                                           # its frozen config: out, steps, lr, warmup, clip, seed, ...
    model: torch.nn.Module                             # what takes gradients (the encoder, or a wrapper around it)
    encoder: torch.nn.Module                           # what is saved
    tokenizer: Any
    step: Callable[[torch.nn.Module, int], tuple[torch.Tensor, dict, float]]
    config: Callable[[], dict]                         # config.json body (model + the phases' configs)
    manifest: Callable[[list[dict]], dict]             # this phase's manifest fields, given the log so far
    evaluate: Callable[[], dict] | None = None         # validation fields for the log record
    after: Callable[[], dict] = dict                   # log fields read after the optimizer step (a temperature)
    extra_groups: list[dict] = field(default_factory=list)   # more optimizer groups (a learned temperature)
    state: Callable[[], dict] = dict                   # more trainer state to save
    load_state: Callable[[dict], None] = lambda s: None
    schedule: str = "linear"


@dataclass
class _Run:
    opt: torch.optim.Optimizer
    sched: Any
    start: int = 0
    log: list = field(default_factory=list)
    wall_before: float = 0.0


def _optimiser(phase: Phase, out: Path, resume: bool, device) -> _Run:
    cfg = phase.cfg
    opt = make_optimizer(phase.encoder, cfg)
    for g in phase.extra_groups:
        opt.add_param_group(g)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps, phase.schedule))
    run = _Run(opt, sched)
    if resume:
        state = torch.load(out / "trainer_state.pt", map_location=device, weights_only=True)
        if state.get("kind", "train") != phase.name:
            raise at(out / "trainer_state.pt", None, f"is not a {phase.name} state")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        phase.load_state(state)
        run.start, run.wall_before = int(state["step"]), float(state["wall_s"])
        run.log = [r for r in ckpt.read_log(out) if r["step"] <= run.start]
        if cfg.steps < run.start:
            raise BadInput(f"{out}: already trained for {run.start} steps; --steps {cfg.steps} is fewer")
    return run


def _save(phase: Phase, run: _Run, out: Path, d: D.Dist, device, step: int, wall: float, replicas) -> None:
    losses = [r["loss"] for r in run.log[-50:]]
    manifest = {**phase.manifest(run.log), "params": phase.encoder.num_params(), "steps": step,
                "hardware": hardware(device), "wall_s": round(wall, 1),
                "final_train_loss": float(np.mean(losses)) if losses else None,
                "final_train_loss_window": len(losses), "torch": torch.__version__,
                "python": sys.version.split()[0], "git_commit": git_commit(),
                **({"world_size": d.world, "replica_param_sha256": replicas} if d.enabled else {})}
    state = {"kind": phase.name, "step": step, "wall_s": wall, "optimizer": run.opt.state_dict(),
             "scheduler": run.sched.state_dict(), "torch_rng": torch.get_rng_state(), **phase.state()}
    ckpt.save(out, model=phase.encoder, tokenizer=phase.tokenizer, config=phase.config(), log=run.log,
              manifest=manifest, trainer_state=state)


def _one_step(phase: Phase, run: _Run, module, params, d: D.Dist, device, step: int) -> dict:
    t0 = time.perf_counter()
    lr = run.sched.get_last_lr()[0]
    with autocast(device):
        loss, fields_, tokens = phase.step(module, step)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_gradients(params, phase.cfg.clip)
    run.opt.step()
    run.sched.step()
    # a float, not the tensor: keeping the tensor would keep its graph alive; mean over ranks, tokens summed
    loss_value, tokens = D.all_sum([loss.item() / d.world, float(tokens)], d, device)
    del loss
    if device.type == "cpu" and (step + 1) % TRIM_EVERY == 0:
        release_freed_memory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    return {"step": step + 1, "loss": loss_value, **fields_, "lr": lr, "grad_norm": grad_norm, **phase.after(),
            "tokens_per_s": round(tokens / dt, 1), "peak_mem": peak_mem(device), "rss": rss()}


def run(phase: Phase, d: D.Dist, device: torch.device, out: Path, *, resume: bool = False,
        on_step: Callable[[dict, int], None] | None = None) -> Path:
    """Train `phase` from its start (or its last checkpoint) to `cfg.steps`; returns the checkpoint folder. Ctrl-C
    finishes the step under way and saves it before KeyboardInterrupt propagates, so any run can be resumed."""
    cfg = phase.cfg
    t_setup = time.perf_counter()
    run_ = _optimiser(phase, out, resume, device)
    module = D.wrap(phase.model, d, device)  # the model itself when not distributed
    phase.model.train()
    if getattr(cfg, "compile", False):
        phase.encoder.compile(dynamic=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    params = [p for p in phase.model.parameters() if p.requires_grad]
    setup_s = time.perf_counter() - t_setup
    t_run = time.perf_counter()

    def save(step: int) -> None:
        replicas = D.digests(phase.encoder, d) if d.enabled else None  # a collective: every rank takes part
        if d.main:
            _save(phase, run_, out, d, device, step, run_.wall_before + setup_s + time.perf_counter() - t_run,
                  replicas)
        D.barrier(d)

    with _StopAfterStep(enabled=not d.enabled) as stop:
        for step in range(run_.start, cfg.steps):
            rec = _one_step(phase, run_, module, params, d, device, step)
            if phase.evaluate is not None and d.main and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                rec.update(phase.evaluate())
            run_.log.append(rec)
            if on_step is not None and d.main:
                on_step(rec, cfg.steps)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps or stop.requested:
                save(step + 1)
            if stop.requested:
                raise KeyboardInterrupt
    return out


class _StopAfterStep:
    """Ctrl-C finishes the step under way, then the loop saves and stops, so a run interrupted before its first
    save_every can still be resumed exactly (a step cut in half would leave weights one update ahead of the log).
    A second Ctrl-C stops at once. Only in one process's main thread: under torchrun every rank must agree."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self.previous = None

    def __enter__(self):
        if self.enabled:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self.previous)
        return False
