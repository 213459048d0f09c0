"""A picture of a training run from its train_log.jsonl: MLM loss (train and validation) and gradient norm."""

from pathlib import Path

import numpy as np

from corpus.errors import BadInput
from corpus.paths import atomic_write_bytes


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` steps (the first steps average what exists so far)."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_training(log: list[dict], out: str | Path, title: str = "", reference: float | None = None) -> Path:
    """Two panels over optimizer steps: loss (raw, smoothed, validation) and pre-clip grad norm (+ lr). -> PNG."""
    if not log:
        raise BadInput(f"{out}: the training log is empty; nothing to plot")
    import matplotlib
    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in log])
    loss = np.array([r["loss"] for r in log])
    val = [(r["step"], r["val_loss"]) for r in log if "val_loss" in r]
    window = max(1, len(log) // 50)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax1.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="train (per step)")
    ax1.plot(steps, smooth(loss, window), color="tab:blue", lw=1.8, label=f"train (mean of {window} steps)")
    if val:
        vs, vl = zip(*val)
        ax1.plot(vs, vl, "o-", color="tab:red", lw=1.8, label="validation (held-out verses)")
        ax1.annotate(f"{vl[-1]:.3f}", (vs[-1], vl[-1]), textcoords="offset points", xytext=(-10, 8), ha="right",
                     color="tab:red")
    if reference is not None:
        ax1.axhline(reference, color="gray", ls="--", lw=1, label=f"original's reported MLM loss ({reference})")
    ax1.set_ylabel("MLM loss (cross-entropy, nats)")
    ax1.set_ylim(0, max(float(np.percentile(loss, 99)), max((v for _, v in val), default=0)) * 1.05)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(title or "MLM pre-training")

    _grad_norm_panel(ax2, steps, log, window)
    return _save(fig, out)


def plot_finetune(log: list[dict], out: str | Path, title: str = "") -> Path:
    """Contrastive fine-tuning (`bench finetune`): InfoNCE loss and held-out in-batch accuracy, the learned
    temperature, and the pre-clip grad norm (+ lr), over optimizer steps. -> PNG."""
    if not log:
        raise BadInput(f"{out}: the training log is empty; nothing to plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in log])
    loss = np.array([r["loss"] for r in log])
    window = max(1, len(log) // 50)
    val = [r for r in log if "val_loss" in r]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 2]})
    ax1.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="train InfoNCE (per step)")
    ax1.plot(steps, smooth(loss, window), color="tab:blue", lw=1.8, label=f"train (mean of {window} steps)")
    if val:
        ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", color="tab:red", lw=1.5,
                 label="validation loss (held-out verses)")
        acc_ax = ax1.twinx()
        kinds = sorted(k[len("val_acc_"):] for k in val[-1] if k.startswith("val_acc_"))
        for kind, style in zip(kinds, ("s--", "^-.", "v:")):
            acc_ax.plot([r["step"] for r in val], [r[f"val_acc_{kind}"] for r in val], style, color="tab:olive",
                        lw=1.2, ms=4, label=f"val top-1 in-batch, {kind}")
        acc_ax.set_ylim(0, 1)
        acc_ax.set_ylabel("held-out in-batch top-1")
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = acc_ax.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=7)
    else:
        ax1.legend(loc="upper right", fontsize=8)
    ax1.set_ylabel("symmetric InfoNCE (nats)")
    ax1.grid(alpha=0.3)
    ax1.set_title(title or "contrastive fine-tuning")

    ax2.plot(steps, [r["temperature"] for r in log], color="tab:orange", lw=1.5, label="temperature")
    ax2.set_ylabel("temperature")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper right", fontsize=8)

    _grad_norm_panel(ax3, steps, log, window)
    return _save(fig, out)


def _grad_norm_panel(ax, steps, log: list[dict], window: int) -> None:
    """Gradient norm before clipping (raw and smoothed, log scale) with the learning rate on a second axis."""
    gn = np.array([r["grad_norm"] for r in log])
    ax.plot(steps, gn, color="tab:green", alpha=0.35, lw=0.8, label="grad norm before clipping")
    ax.plot(steps, smooth(gn, window), color="tab:green", lw=1.6, label=f"grad norm (mean of {window} steps)")
    ax.set_yscale("log")
    ax.set_ylabel("global grad norm")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3, which="both")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in log], color="tab:purple", lw=1, ls=":", label="learning rate")
    lr_ax.set_ylabel("learning rate", color="tab:purple")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = lr_ax.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)


def _save(fig, out) -> Path:
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())
