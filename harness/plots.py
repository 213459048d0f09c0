"""Charts of saved results: bars with bootstrap confidence intervals, and per-query scatter plots of two sides.

With 41 or 46 queries in a set, a bar alone overstates what a difference means; the interval says how far the mean
could move with another draw of queries like these. The bootstrap is seeded, so the same report gives the same PNG.
"""

import io

import numpy as np

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries (resampled with replacement)."""
    v = np.asarray(list(values), dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def _pyplot():
    import matplotlib  # imported on use: matplotlib costs ~1 s, and `bench --help` must stay fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return buf.getvalue()


def bars(names: list[str], means: list[float], per_query: list[dict | None], title: str, metric: str) -> bytes:
    """One bar per row; a 95% bootstrap interval on each row whose per-query values are known."""
    plt = _pyplot()
    cis = [bootstrap_ci(pq.values()) if pq else None for pq in per_query]
    lo = [m - c[0] if c else 0.0 for m, c in zip(means, cis)]
    hi = [c[1] - m if c else 0.0 for m, c in zip(means, cis)]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names) + 1.5), 3.4), dpi=110)
    ax.bar(range(len(names)), means, color="#4C72B0", yerr=[lo, hi] if any(cis) else None,
                 error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#333333"})
    # The value goes under the name, not on the bar, where the interval's whisker would cover it.
    ax.set_xticks(range(len(names)), [f"{n}\n{v:.3f}" for n, v in zip(names, means)], rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel(metric + (" (95% CI)" if any(cis) else ""))
    top = max([m + h for m, h in zip(means, hi)] + [0.01])
    ax.set_ylim(0, top * 1.12)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    if any(cis):
        fig.text(0.99, 0.01, f"bootstrap over queries, {BOOTSTRAP_SAMPLES} resamples, seed {BOOTSTRAP_SEED}",
                 ha="right", va="bottom", fontsize=6, color="#666666")
    fig.tight_layout()
    return _png(fig)


def scatter(a: dict, b: dict, a_label: str, b_label: str, title: str, metric: str) -> bytes:
    """One dot per query shared by `a` and `b` ({qid: value}): x under A, y under B. Above the diagonal B is higher."""
    plt = _pyplot()
    qids = sorted(set(a) & set(b))
    x = np.array([a[q] for q in qids], dtype=np.float64)
    y = np.array([b[q] for q in qids], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    top = max(1.0, float(x.max(initial=0)), float(y.max(initial=0)))
    ax.plot([0, top], [0, top], color="#999999", lw=0.8, zorder=1)
    # Many metric values are repeated (0, 1, 1/2 ...): translucent dots show where they pile up.
    ax.scatter(x, y, s=22, alpha=0.45, color="#1f4e8c", edgecolors="none", zorder=2)
    up, down = int((y > x).sum()), int((y < x).sum())
    ax.set_xlim(-0.02 * top, top * 1.02)
    ax.set_ylim(-0.02 * top, top * 1.02)
    ax.set_xlabel(f"A: {a_label}", fontsize=8)
    ax.set_ylabel(f"B: {b_label}", fontsize=8)
    ax.set_title(f"{title}: {metric} per query\nhigher under B: {up}, under A: {down}, equal: {len(qids) - up - down}",
                 fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)
