"""`bench ablate`: the original's switches, each trained from scratch for the same budget and evaluated by the harness.

One baseline (pre-LN, GELU, learned positions, AdamW, clipping at 1.0, warmup, MLM then contrastive fine-tuning) and
one run per flipped switch. Every run: MLM pre-training (`encoder.train.train`), then the contrastive phase
(`encoder.finetune.finetune`, skipped by `mlm-only`), then `harness.runner.run_benchmark` with the `encoder`
retriever on every query set (WEB New Testament). Optimizer, clipping and warmup switches apply to both phases.
Each variant's result is stored beside its checkpoints with its full config; a rerun reuses results whose config
is unchanged, so an interrupted ablation continues where it stopped.

Significance: paired t-test (ranx) of each variant's per-query ndcg@10 against the baseline's, per set. With 7
variants x 6 sets, about two "p < 0.05" would appear by chance alone; the table marks p < 0.05 with * and the
Bonferroni-corrected level (0.05 / number of comparisons) with **.
"""

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from corpus.errors import BadInput
from corpus.paths import REPO, atomic_write_text


@dataclass(frozen=True)
class Budget:
    name: str
    model: dict                      # overrides of the small preset's architecture
    tokenizer: str
    limit: int | None                # first N verses per translation (MLM) / verse ids (pairs); None = everything
    mlm_steps: int
    mlm_batch: int
    mlm_lr: float
    mlm_warmup: int
    mlm_eval_windows: int
    ft_steps: int
    ft_batch: int
    ft_max_len: int
    ft_lr: float
    ft_warmup: int
    ft_val_per_kind: int
    # (MLM, fine-tune) learning rates of the SGD variant. For "cpu", the best of a sweep over 0.03, 0.1, 0.3, 1.0
    # (120 MLM / 40 contrastive steps of this model), so SGD is not a strawman; it matched AdamW there.
    sgd_lr: tuple[float, float]
    sets: tuple[str, ...] = ("keyword", "keyword-xlate", "thematic-dev", "thematic-test", "thematic-curated",
                             "distractor")
    seed: int = 0


BUDGETS = {
    # The test path: seconds per variant. Numbers from it mean nothing.
    "tiny": Budget("tiny", dict(n_layer=1, n_head=2, d_model=64, d_ff=256, max_len=64, dropout=0.0),
                   tokenizer="wordpiece-1000", limit=1000, mlm_steps=10, mlm_batch=16, mlm_lr=2e-3, mlm_warmup=2,
                   mlm_eval_windows=32, ft_steps=4, ft_batch=32, ft_max_len=48, ft_lr=1e-3, ft_warmup=1,
                   ft_val_per_kind=64, sgd_lr=(0.1, 0.05)),
    # The committed table: a reduced model that fits ~20-25 minutes for all eight runs on the shared 2-core CPU.
    "cpu": Budget("cpu", dict(n_layer=2, n_head=4, d_model=128, d_ff=512, max_len=64, dropout=0.0),
                  tokenizer="wordpiece-8192", limit=None, mlm_steps=500, mlm_batch=32, mlm_lr=2e-3, mlm_warmup=50,
                  mlm_eval_windows=1000, ft_steps=150, ft_batch=128, ft_max_len=48, ft_lr=5e-4, ft_warmup=15,
                  ft_val_per_kind=256, sgd_lr=(0.1, 0.1)),
}

# name -> (what is flipped, model overrides, phase overrides applied to both phases)
SWITCHES = {
    "baseline": ("pre-LN, GELU, learned positions, AdamW, clip 1.0, warmup, MLM + contrastive", {}, {}),
    "post-ln": ("post-LN (original BERT) instead of pre-LN", {"norm": "post"}, {}),
    "relu": ("ReLU instead of GELU", {"act": "relu"}, {}),
    "sinusoidal": ("fixed sinusoidal positions instead of learned", {"pos": "sinusoidal"}, {}),
    "sgd": ("SGD (momentum 0.9) instead of AdamW, both phases", {}, {"optimizer": "sgd"}),
    "no-clip": ("no gradient clipping, both phases", {}, {"clip": None}),
    "no-warmup": ("no learning-rate warmup, both phases", {}, {"warmup": 0}),
    "mlm-only": ("MLM pre-training only, no contrastive phase", {}, {"finetune": False}),
    # Not a switch: the baseline again with another seed. The paired tests see only query-to-query noise; this row
    # shows how far training noise alone moves the numbers, the yardstick for every other row.
    "seed-1": ("nothing flipped: the baseline with seed 1 instead of 0 (training noise)", {}, {"seed": 1}),
}


def variant_configs(budget: Budget, variant: str, work: Path, device: str = "auto"):
    """(TrainConfig, FinetuneConfig or None) of one variant."""
    from encoder.finetune import FinetuneConfig
    from encoder.train import preset_config

    if variant not in SWITCHES:
        raise BadInput(f"unknown ablation variant {variant!r}; choose from {', '.join(SWITCHES)}")
    _, model, phase = SWITCHES[variant]
    sgd = phase.get("optimizer") == "sgd"
    folder = work / variant
    # mlm-only's MLM phase is the baseline's, config for config: it is trained once and shared
    mlm_out = work / ("baseline" if variant == "mlm-only" else variant) / "mlm"
    tcfg = preset_config(
        "small", out=str(mlm_out), steps=budget.mlm_steps, batch_size=budget.mlm_batch,
        lr=budget.sgd_lr[0] if sgd else budget.mlm_lr, warmup=phase.get("warmup", budget.mlm_warmup),
        tokenizer=budget.tokenizer, limit=budget.limit, eval_every=budget.mlm_steps,
        eval_windows=budget.mlm_eval_windows, save_every=budget.mlm_steps, seed=phase.get("seed", budget.seed),
        device=device,
        model={**budget.model, **model}, optimizer=phase.get("optimizer", "adamw"))
    if "clip" in phase:
        tcfg = replace(tcfg, clip=phase["clip"])
    if not phase.get("finetune", True):
        return tcfg, None
    fcfg = FinetuneConfig(
        init=tcfg.out, out=str(folder / "ft"), steps=budget.ft_steps, batch_size=budget.ft_batch,
        lr=budget.sgd_lr[1] if sgd else budget.ft_lr, optimizer=phase.get("optimizer", "adamw"),
        clip=phase.get("clip", 1.0), warmup=phase.get("warmup", budget.ft_warmup), max_len=budget.ft_max_len,
        limit=budget.limit, val_per_kind=budget.ft_val_per_kind, val_batch=min(budget.ft_batch, 128),
        eval_every=budget.ft_steps, save_every=budget.ft_steps, seed=phase.get("seed", budget.seed), device=device)
    return tcfg, fcfg


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def run_variant(budget: Budget, variant: str, work: Path, pairs=None, device: str = "auto", on_phase=None, *,
                home: Path) -> dict:
    """Train and evaluate one variant (or reuse its stored result when its config is unchanged). `home`: the cache
    root (corpora, tokenizer, windows, verse vectors). `on_phase(text)`: told what the variant is doing now, and
    None when it is done (the CLI shows it as a spinner)."""
    from encoder import checkpoint as ckpt
    from encoder.finetune import finetune
    from encoder.train import train
    from harness.runner import RunConfig, run_benchmark

    tcfg, fcfg = variant_configs(budget, variant, work, device)
    config = _jsonable({"train": asdict(tcfg), "finetune": asdict(fcfg) if fcfg else None,
                        "sets": list(budget.sets)})
    done = work / variant / "result.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("config") == config:
            return old
    t0 = time.perf_counter()
    phase = on_phase or (lambda text: None)
    phase(f"{variant}: MLM")
    path = Path(tcfg.out) if _trained(tcfg) else train(tcfg, home=home, overwrite=True)
    mlm = ckpt.read_json(path / "manifest.json")
    ft = None
    if fcfg is not None:
        phase(f"{variant}: contrastive")
        path = finetune(fcfg, home=home, overwrite=True, pairs=pairs)
        ft = ckpt.read_json(path / "manifest.json")
    train_s = time.perf_counter() - t0
    phase(f"{variant}: evaluating")
    report, run_folder = run_benchmark(RunConfig(retrievers=("encoder",), sets=budget.sets, scope="nt",
                                                 options={"encoder": {"checkpoint": str(path)}},
                                                 out_root=work / "runs"), home=home)
    phase(None)
    result = {
        "variant": variant, "switch": SWITCHES[variant][0], "config": config,
        "checkpoint": str(path), "checkpoint_sha256": ckpt.sha256(path), "params": mlm["params"],
        "mlm_val_loss": mlm["final_val_loss"], "mlm_train_loss": mlm["final_train_loss"],
        "ft_val_acc": (ft or {}).get("final_val", {}).get("val_acc"),
        "ft_temperature": (ft or {}).get("temperature"),
        "results": {s: report["results"][s]["encoder"] for s in budget.sets},
        "per_query_ndcg": {s: report["per_query"][s]["encoder"]["ndcg@10"] for s in budget.sets},
        "queries": {s: len(report["per_query"][s]["encoder"]["ndcg@10"]) for s in budget.sets},
        "run_folder": str(run_folder), "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(done, json.dumps(result, indent=1) + "\n")
    return result


def ablate(budget_name: str = "cpu", work: Path | None = None, only: tuple[str, ...] = (), device: str = "auto",
           on_phase=None, *, home: Path) -> dict:
    """Run the baseline and every switch (or `only` these, the baseline always included) -> the summary dict.
    `home`: the cache root; `on_phase`: as in `run_variant`."""
    from encoder.finetune import build_pairs

    if budget_name not in BUDGETS:
        raise BadInput(f"unknown budget {budget_name!r}; choose from {', '.join(BUDGETS)}")
    budget = BUDGETS[budget_name]
    bad = [v for v in only if v not in SWITCHES]
    if bad:
        raise BadInput(f"unknown ablation variant {bad[0]!r}; choose from {', '.join(SWITCHES)}")
    variants = ["baseline"] + [v for v in SWITCHES if v != "baseline" and (not only or v in only)]
    work = Path(work) if work is not None else REPO / "build" / "ablate" / budget.name
    t0 = time.perf_counter()
    tcfg, fcfg = variant_configs(budget, "baseline", work, device)
    pairs = None  # one build of the pair data serves every variant (all share the pre-training's split)
    results = {}
    for v in variants:
        if pairs is None and SWITCHES[v][2].get("finetune", True) and not _reusable(budget, v, work, device):
            pairs = build_pairs(fcfg, tcfg.val_fraction, home)  # the pre-training's held-out verses
        results[v] = run_variant(budget, v, work, pairs=pairs, device=device, on_phase=on_phase, home=home)
    return summarize(budget, results, time.perf_counter() - t0)


def _trained(tcfg) -> bool:
    """An MLM checkpoint already finished with exactly this config (shared by baseline and mlm-only)."""
    from encoder import checkpoint as ckpt

    folder = Path(tcfg.out)
    try:
        stored = ckpt.read_config(folder).get("train")
        steps = ckpt.read_json(folder / "manifest.json").get("steps")
    except BadInput:
        return False
    return stored == _jsonable(asdict(tcfg)) and steps == tcfg.steps


def _reusable(budget, variant, work, device) -> bool:
    done = work / variant / "result.json"
    if not done.is_file():
        return False
    tcfg, fcfg = variant_configs(budget, variant, work, device)
    config = _jsonable({"train": asdict(tcfg), "finetune": asdict(fcfg) if fcfg else None,
                        "sets": list(budget.sets)})
    return json.loads(done.read_text()).get("config") == config


def summarize(budget: Budget, results: dict, wall_s: float) -> dict:
    from harness.metrics import paired_p
    from encoder.distributed import resolve_device
    from encoder.loop import git_commit, hardware

    base = results["baseline"]
    n_cmp = max(1, (len(results) - 1) * len(budget.sets))
    rows = {}
    for v, r in results.items():
        row = {k: r[k] for k in ("switch", "params", "mlm_val_loss", "mlm_train_loss", "ft_val_acc", "ft_temperature",
                                 "checkpoint_sha256", "train_s", "wall_s", "queries")}
        row["ndcg@10"] = {s: r["results"][s]["ndcg@10"] for s in budget.sets}
        row["mean_ndcg@10"] = sum(row["ndcg@10"].values()) / len(budget.sets)
        if v != "baseline":
            row["delta"] = {s: row["ndcg@10"][s] - base["results"][s]["ndcg@10"] for s in budget.sets}
            row["p"] = {s: paired_p(r["per_query_ndcg"][s], base["per_query_ndcg"][s]) for s in budget.sets}
        rows[v] = row
    return {
        "budget": asdict(budget), "variants": rows, "comparisons": n_cmp, "alpha": 0.05,
        "bonferroni_alpha": 0.05 / n_cmp, "wall_s": round(wall_s, 1),
        "total_variant_wall_s": round(sum(r["wall_s"] for r in results.values()), 1),
        "hardware": {**hardware(resolve_device("auto")),
                     "load_note": "the machine's cores were shared with other jobs; times are wall times"},
        "git_commit": git_commit(), "corpus": "WEB New Testament (scope nt)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _mark(p: float, alpha: float, bonf: float) -> str:
    return "**" if p < bonf else ("*" if p < alpha else "")


def reading(summary: dict) -> list[str]:
    """One line per switch, from the numbers: the mean change and where it is significant."""
    lines = []
    sets = summary["budget"]["sets"]
    base = summary["variants"]["baseline"]
    noise = summary["variants"].get("seed-1")
    floor = abs(noise["mean_ndcg@10"] - base["mean_ndcg@10"]) if noise else None
    for v, row in summary["variants"].items():
        if v == "baseline":
            continue
        d = row["mean_ndcg@10"] - base["mean_ndcg@10"]
        if v == "seed-1":
            lines.append(f"**seed-1** (the baseline, another seed): mean ndcg@10 {row['mean_ndcg@10']:.3f} vs "
                         f"{base['mean_ndcg@10']:.3f} ({d:+.3f}), MLM val loss {row['mlm_val_loss']:.3f} vs "
                         f"{base['mlm_val_loss']:.3f}, pair val acc {row['ft_val_acc']:.3f} vs "
                         f"{base['ft_val_acc']:.3f}. Nothing was flipped: a change of this size in another row is "
                         "training noise, whatever its p-value (the paired tests see query noise only).")
            continue
        worse = [s for s in sets if row["p"][s] < summary["alpha"] and row["delta"][s] < 0]
        better = [s for s in sets if row["p"][s] < summary["alpha"] and row["delta"][s] > 0]
        strong = [s for s in sets if row["p"][s] < summary["bonferroni_alpha"]]
        what = (f"**{v}** ({row['switch']}): mean ndcg@10 {row['mean_ndcg@10']:.3f} vs {base['mean_ndcg@10']:.3f} "
                f"({d:+.3f})")
        if not worse and not better:
            what += "; no measurable difference on any set at this budget (no p < 0.05)"
        else:
            if better:
                what += f"; better on {', '.join(better)}"
            if worse:
                what += f"; worse on {', '.join(worse)}"
            what += (f" (p < 0.05; survives Bonferroni on {', '.join(strong)})" if strong
                     else " (p < 0.05, none survives Bonferroni)")
        if floor is not None:  # one extra seed is a rough yardstick, so a ratio, not a verdict
            what += (f"; {abs(d) / floor:.0f}x the seed's own change of {floor:.3f}" if floor > 0 else
                     "; the seed changed nothing measurable")
        if row["mlm_val_loss"] is not None and base["mlm_val_loss"] is not None:
            what += f". MLM val loss {row['mlm_val_loss']:.3f} vs {base['mlm_val_loss']:.3f}"
        lines.append(what + ".")
    return lines


def to_markdown(summary: dict) -> str:
    b = summary["budget"]
    sets = b["sets"]
    head = "| variant | " + " | ".join(sets) + " | mean | MLM val loss | pair val acc | wall s |"
    sep = "|---" * (len(sets) + 5) + "|"
    rows = []
    for v, r in summary["variants"].items():
        cells = []
        for s in sets:
            cell = f"{r['ndcg@10'][s]:.3f}"
            if v != "baseline":
                cell += f" ({r['delta'][s]:+.3f}{_mark(r['p'][s], summary['alpha'], summary['bonferroni_alpha'])})"
            cells.append(cell)
        acc = f"{r['ft_val_acc']:.3f}" if r["ft_val_acc"] is not None else "-"
        mlm = f"{r['mlm_val_loss']:.3f}" if r["mlm_val_loss"] is not None else "-"
        rows.append(f"| {v} | " + " | ".join(cells) + f" | {r['mean_ndcg@10']:.3f} | {mlm} | {acc} | {r['wall_s']:.0f} |")
    queries = ", ".join(f"{s} {n}" for s, n in summary["variants"]["baseline"]["queries"].items())
    hw = summary["hardware"]
    model = ", ".join(f"{k} {v}" for k, v in b["model"].items())
    reading_lines = "\n".join(f"- {line}" for line in reading(summary))
    return f"""# Encoder ablations

Generated by `bench ablate --budget {b['name']}` ({summary['date']}, commit {(summary['git_commit'] or '?')[:10]}).
Each row is trained FROM SCRATCH with the same budget and evaluated by the harness (`encoder` retriever, WEB New
Testament); cells are ndcg@10, with the change against the baseline and its paired t-test mark: `*` p < 0.05,
`**` p < {summary['bonferroni_alpha']:.4f} (Bonferroni over {summary['comparisons']} comparisons).

| | |
|---|---|
| model | the small preset reduced to: {model}; {summary['variants']['baseline']['params']:,} parameters |
| tokenizer | {b['tokenizer']} |
| MLM phase | {b['mlm_steps']} steps x {b['mlm_batch']} windows of <= 64 word pieces, lr {b['mlm_lr']} (SGD {b['sgd_lr'][0]}), warmup {b['mlm_warmup']}, linear decay; all five translations + Nave's prose{'' if b['limit'] is None else f' (first {b["limit"]} verses each)'} |
| contrastive phase | {b['ft_steps']} steps x {b['ft_batch']} pairs (in-batch negatives), max_len {b['ft_max_len']}, lr {b['ft_lr']} (SGD {b['sgd_lr'][1]}), warmup {b['ft_warmup']}, learned temperature (init 0.05); xlate/span/Nave pairs with the evaluation hold-outs |
| evaluation | queries per set: {queries} |
| hardware | {hw.get('cpu')}, {hw.get('cpu_count')} cores, torch threads {hw.get('torch_threads')}, device {hw.get('device')}; {hw['load_note']} |
| wall time | {summary['total_variant_wall_s'] / 60:.1f} min for all variants from scratch (sum of each variant's training + evaluation); the last `bench ablate` took {summary['wall_s'] / 60:.1f} min, reusing stored variants whose config was unchanged |

{head}
{sep}
{chr(10).join(rows)}

"pair val acc": in-batch top-1 accuracy on held-out verse pairs after the contrastive phase (mean over pair kinds).

## What each switch bought at this budget
The baseline reaches a mean ndcg@10 of {summary['variants']['baseline']['mean_ndcg@10']:.3f} and an MLM validation
loss of {summary['variants']['baseline']['mlm_val_loss']:.3f}: at this budget every model is early in training, so
the table measures how fast a recipe gets going, which is not the same as where it ends up.

{reading_lines}

A budget this small measures what a switch does to a model's first few hundred steps, not what it does to a trained
model; a switch that shows nothing here can still matter at the shipped checkpoint's size or beyond.
"""


def write(summary: dict, md_path: Path, json_path: Path) -> None:
    atomic_write_text(json_path, json.dumps(summary, indent=1) + "\n")
    atomic_write_text(md_path, to_markdown(summary))
