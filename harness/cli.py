"""The `bench` command line. Command bodies import their modules lazily so `bench --help` stays fast."""

import json
import sys

import typer

from corpus.errors import BadInput

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="versebench: an evaluation harness for verse search.")
corpus_app = typer.Typer(no_args_is_help=True, help="Build and inspect Bible corpora.")
qrels_app = typer.Typer(no_args_is_help=True, help="Build, validate and count query sets.")
data_app = typer.Typer(no_args_is_help=True, help="Look at the encoder's training data.")
app.add_typer(corpus_app, name="corpus")
app.add_typer(qrels_app, name="qrels")
app.add_typer(data_app, name="data")


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    try:
        app()
    except BadInput as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


# ---- corpus -------------------------------------------------------------------------------------------------------

def _corpus_stats(c) -> dict:
    return {"translation": c.translation, "scope": c.scope, "verses": len(c), "corpus_id": c.corpus_id,
            "words": c.manifest["words"], "books": c.manifest["books"], "sha256": c.manifest["sha256"],
            "source": c.manifest["source"]}


@corpus_app.command("build")
def corpus_build(translation: str = typer.Option("web", "--translation", "-t", help="web|kjv|asv|ylt|dar|all"),
                 scope: str = typer.Option("nt", "--scope", "-s", help="nt|ot|all"),
                 json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Build (or rebuild) a corpus cache from its source and print its counts."""
    from rich.progress import Progress

    from corpus.bible import TRANSLATIONS, load_corpus

    names = TRANSLATIONS if translation == "all" else (translation,)
    rows = []
    with Progress(transient=True, disable=json_out) as progress:
        task = progress.add_task("building corpora", total=len(names))
        for name in names:
            progress.update(task, description=f"building {name}")
            rows.append(_corpus_stats(load_corpus(name, scope, rebuild=True)))
            progress.advance(task)
    if json_out:
        emit_json(rows if translation == "all" else rows[0])
        return
    for r in rows:
        typer.echo(f"{r['corpus_id']}: {r['verses']} verses, {r['books']} books, {r['words']} words")


@corpus_app.command("stats")
def corpus_stats(translation: str = typer.Option("web", "--translation", "-t"),
                 scope: str = typer.Option("nt", "--scope", "-s"),
                 json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Counts and content id of a corpus (built on first use)."""
    from corpus.bible import load_corpus

    r = _corpus_stats(load_corpus(translation, scope))
    if json_out:
        emit_json(r)
        return
    for key in ("corpus_id", "translation", "scope", "verses", "books", "words", "sha256"):
        typer.echo(f"{key:12} {r[key]}")
    typer.echo(f"{'source':12} {json.dumps(r['source'], ensure_ascii=False)}")


@corpus_app.command("show")
def corpus_show(ref: str = typer.Argument(..., help="a verse: John.3.16, 'John 3:16', 'Ezek 36:26'"),
                translation: str = typer.Option("web", "--translation", "-t")) -> None:
    """Print one verse."""
    from corpus.books import scope_of
    from corpus.bible import load_corpus, parse_ref

    docid = parse_ref(ref)
    typer.echo(f"{docid} ({translation}) {load_corpus(translation, scope_of(docid)).text(docid)}")


# ---- qrels --------------------------------------------------------------------------------------------------------

@qrels_app.command("validate")
def qrels_validate(
    set_: list[str] = typer.Option([], "--set", "-s", help="Set to check (repeatable); default: all."),
    translation: str = typer.Option("web", "--translation"),
):
    """Check every committed set: format, docids in the corpus for the set's scope, duplicates, unjudged queries."""
    from corpus.bible import load_corpus
    from corpus.qsets import set_names, validate_set

    ids = {}

    def corpus_ids(scope):
        if scope not in ids:
            ids[scope] = set(load_corpus(translation, scope).ids)
        return ids[scope]

    for name in set_ or set_names():
        st = validate_set(name, corpus_ids)
        extra = f", {st['distractors']} distractors" if "distractors" in st else ""
        typer.echo(f"ok  {name}: {st['queries']} queries, {st['relevant']} relevant{extra} (scope {st['scope']})")


@qrels_app.command("stats")
def qrels_stats(as_json: bool = typer.Option(False, "--json")):
    """Counts per committed set."""
    from corpus.qsets import read_set, set_names, stats

    out = {name: stats(read_set(name)) for name in set_names()}
    if as_json:
        emit_json(out)
        return
    for name, st in out.items():
        typer.echo(f"{name:18} {st['queries']:5} queries {st['relevant']:6} relevant  scope={st['scope']} "
                   f"split={st['split']} kind={st['kind']}" + (f" distractors={st['distractors']}" if "distractors" in st else ""))


@qrels_app.command("build")
def qrels_build_cmd(
    name: str = typer.Argument(..., help="thematic (Nave's -> thematic-dev, thematic-test) or keyword-xlate."),
    out: str = typer.Option(None, "--out", help="Root folder to write the set folders into (default: qrels/)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Generate a query set from its sources (deterministic: the same inputs give byte-identical files)."""
    from rich.console import Console

    from corpus import qrels_build

    with Console(stderr=True).status(f"building {name} ..."):
        summary = qrels_build.build(name, out)
    if as_json:
        emit_json(summary)
        return
    for path in summary["written"]:
        typer.echo(f"wrote {path}")
    if name == "thematic":
        typer.echo(f"queries: {summary['queries']}  topics: {summary['topics']}  unparsed refs: "
                   f"{summary['unparsed_refs']}")
    else:
        typer.echo(f"queries: {summary['queries']}  by translation: {summary['by_translation']}")

# ---- run / search -------------------------------------------------------------------------------------------------

def _retriever_names() -> list[str]:
    from retrievers.base import names

    return names()


# Which retrievers each retriever-specific flag goes to; the registry refuses options a retriever does not have.
OPTION_TARGETS = {"dsn": ("ilike",), "checkpoint": ("encoder", "hybrid"), "dense": ("hybrid",),
                  "fusion": ("hybrid",)}


def _retriever_options(retrievers, **given) -> dict:
    out = {r: {} for r in retrievers}
    for opt, val in given.items():
        if val is None:
            continue
        targets = [r for r in retrievers if r in OPTION_TARGETS[opt]]
        if not targets:
            raise BadInput(f"--{opt} applies to {' or '.join(OPTION_TARGETS[opt])}, which this command does not run")
        for r in targets:
            out[r][opt] = val
    return out


def _expand_retrievers(chosen: list[str]) -> tuple[str, ...]:
    known = _retriever_names()
    out = []
    for r in chosen:
        if r == "all":
            out += [n for n in ("ilike", "bm25", "encoder", "minilm", "hybrid") if n in known]
        elif r not in known:
            raise BadInput(f"unknown retriever {r!r}; choose from: {', '.join(known)}, all")
        else:
            out.append(r)
    return tuple(dict.fromkeys(out))


def _write_frames(report: dict, folder: str | None) -> str:
    """`--csv DIR`: the report's DataFrames; returns what to add to the closing line."""
    if not folder:
        return ""
    from harness import frames

    written = frames.write(report, folder)
    return f"; DataFrames in {folder} ({', '.join(p.name for p in written)})"


@app.command()
def run(
    retriever: list[str] = typer.Option(["bm25"], "--retriever", "-r", help="Retriever name (repeatable), or 'all'."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Query set (repeatable); default: every set in scope."),
    queries: str = typer.Option(None, "--queries", help="External queries TSV (with --qrels)."),
    qrels: str = typer.Option(None, "--qrels", help="External qrels TREC (with --queries)."),
    distractors: str = typer.Option(None, "--distractors", help="External distractors TREC (optional)."),
    k: int = typer.Option(100, "--k", help="Depth of each run."),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all"),
    translation: str = typer.Option("web", "--translation"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Encoder checkpoint folder (encoder, hybrid)."),
    dense: str = typer.Option(None, "--dense", help="Hybrid's dense side: encoder | minilm."),
    fusion: str = typer.Option(None, "--fusion", help="Hybrid's ranx fusion method (wsum, rrf, ...)."),
    dsn: str = typer.Option(None, "--dsn", help="postgresql://... to run ILIKE on PostgreSQL instead of SQLite."),
    stat_test: str = typer.Option("student", "--stat-test", help="ranx paired test: student | fisher."),
    out: str = typer.Option(None, "--out", help="Folder under which the run folder is written."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON to stdout."),
    csv: str = typer.Option(None, "--csv", help="Also write the results as DataFrames (CSV, Parquet) to this folder."),
):
    """Run retrievers over query sets, evaluate with ranx, write runs and reports under reports/runs/."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dataclasses import replace
    from pathlib import Path

    from harness import report as R
    from corpus.books import SCOPES
    from corpus.qsets import external_set
    from harness.runner import RunConfig, run_benchmark

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if stat_test not in ("student", "fisher"):
        raise BadInput(f"--stat-test must be student or fisher, got {stat_test!r}")
    if (queries is None) != (qrels is None):
        raise BadInput("--queries and --qrels go together")
    ext = external_set(queries, qrels, distractors) if queries else None
    names = _expand_retrievers(retriever)
    cfg = RunConfig(retrievers=names, sets=tuple(set_), scope=scope, translation=translation, k=k,
                    stat_test=stat_test,
                    options=_retriever_options(names, checkpoint=checkpoint, dense=dense, fusion=fusion, dsn=dsn))
    if out:
        cfg = replace(cfg, out_root=Path(out))
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=as_json) as progress:
        report, folder = run_benchmark(cfg, external=ext, progress=progress)
    frames_written = _write_frames(report, csv)
    if as_json:
        emit_json(report)
        return
    R.print_tables(report, Console())
    Console().print(f"runs and report written to {folder}" + frames_written)


@app.command()
def search(
    query: str = typer.Argument(..., help="What you would type into the app's search box."),
    retriever: str = typer.Option("bm25", "--retriever", "-r"),
    k: int = typer.Option(10, "--k"),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all"),
    translation: str = typer.Option("web", "--translation"),
    checkpoint: str = typer.Option(None, "--checkpoint"),
    dense: str = typer.Option(None, "--dense"),
    fusion: str = typer.Option(None, "--fusion"),
    dsn: str = typer.Option(None, "--dsn"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Top hits for one query, with reference, score and verse text (hybrid also shows its parts)."""
    from rich.console import Console
    from rich.table import Table

    from corpus.books import SCOPES
    from corpus.bible import load_corpus
    from harness.runner import strict_order
    from retrievers.base import make

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 1 <= k <= 1000:
        raise BadInput(f"--k must be between 1 and 1000, got {k}")
    name = _expand_retrievers([retriever])[0]
    corpus = load_corpus(translation, scope)
    opts = _retriever_options([name], checkpoint=checkpoint, dense=dense, fusion=fusion, dsn=dsn)[name]
    r = make(name, corpus, **opts)
    explain = getattr(r, "explain", None)
    parts = explain(query, k) if explain else None  # {docid: {part: (score, rank)}}
    hits = strict_order(r.search({"q": query}, k), corpus.position).get("q", {})
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    if as_json:
        emit_json([{"rank": i, "docid": d, "score": s, "text": corpus.text(d), **({"parts": parts.get(d)} if parts else {})}
                   for i, (d, s) in enumerate(ranked, 1)])
        return
    table = Table(title=f"{name}: {query!r} ({corpus.corpus_id})", title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("verse")
    table.add_column("score", justify="right")
    part_names = sorted({p for v in (parts or {}).values() for p in v})
    for p in part_names:
        table.add_column(f"{p} score (rank)", justify="right")
    table.add_column("text")
    for i, (d, s) in enumerate(ranked, 1):
        extra = []
        for p in part_names:
            sc = (parts.get(d) or {}).get(p)
            extra.append("-" if sc is None else f"{sc[0]:.3f} ({sc[1]})")
        table.add_row(str(i), d, f"{s:.3f}", *extra, corpus.text(d))
    console = Console()
    console.print(table)
    if not ranked:
        console.print("no verse matched")

@app.command("tune-fusion")
def tune_fusion(
    dense: str = typer.Option("encoder", "--dense", help="encoder | minilm"),
    fusion: str = typer.Option("wsum", "--fusion"),
    set_: list[str] = typer.Option([], "--set", "-s", help="Dev split(s) to tune on; default: every dev split."),
    metric: str = typer.Option("ndcg@10", "--metric"),
    checkpoint: str = typer.Option(None, "--checkpoint"),
    scope: str = typer.Option("nt", "--scope"),
):
    """Tune hybrid fusion parameters with ranx.optimize_fusion on dev splits only; saves retrievers/fusion_weights.json."""
    from corpus.bible import load_corpus
    from corpus.qsets import load_set, read_set, set_names
    from harness.fusion import tune

    names = list(set_) or [n for n in set_names() if read_set(n).meta.get("split") == "dev"]
    sets = [load_set(n, scope) for n in names]
    entry = tune(load_corpus("web", scope), dense, fusion, sets, metric=metric, checkpoint=checkpoint)
    emit_json(entry)


# ---- encoder: data / train / finetune -----------------------------------------------------------------------------

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


@data_app.command("inspect")
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
    sources = data.load_sources(cfg.translations, cfg.scope, cfg.naves, cfg.limit)
    tk = tok.build(cfg.tokenizer, data.sources_key(sources, cfg.val_fraction), data.texts_fn(sources, cfg.val_fraction))
    ws = data.load_windows(tk, sources, PRESETS[preset].max_len, cfg.val_fraction)
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


@app.command("train-plot")
def train_plot_cmd(checkpoint: str = typer.Argument(..., help="a checkpoint folder (or its train_log.jsonl)"),
                   out: str = typer.Option(None, "--out", help="PNG path (default CHECKPOINT/training.png)"),
                   reference: float = typer.Option(None, "--reference", help="draw a reference loss line"),
                   title: str = typer.Option("", "--title")):
    """Plot a training run: train/validation MLM loss and gradient norm per step."""
    from pathlib import Path

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


@app.command("train")
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
              as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON at the end")):
    """Pre-train the in-repo encoder with masked language modelling; writes a checkpoint folder."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from encoder import checkpoint as ckpt
    from encoder.train import TrainConfig, preset_config, resolve_device, train

    resolve_device(device)  # refuse an unusable device before any data is loaded
    if threads is not None:
        if threads < 1:
            raise BadInput(f"--threads must be at least 1, got {threads}")
        import torch
        torch.set_num_threads(threads)  # process-wide, so it is set here, not inside train()
    model = {k: v for k, v in (("norm", norm), ("act", act), ("pos", pos)) if v is not None}
    given = dict(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, warmup=warmup, max_len=max_len,
                 limit=limit, tokenizer=tokenizer, seed=seed, device=device, compile=compile_ or None,
                 translations=tuple(t.strip() for t in translations.split(",")) if translations else None,
                 model=model or None)
    if resume:  # the stored config is the base; options given here override it (train() refuses real changes)
        folder = Path(out or f"build/encoder-{preset or 'small'}")
        ckpt.recover(folder)
        stored = TrainConfig.from_dict(ckpt.read_config(folder).get("train", {}))
        if preset is not None and preset != stored.preset:
            raise BadInput(f"{folder}: the checkpoint is preset {stored.preset}, not {preset}")
        cfg = TrainConfig.from_dict({**asdict(stored), "out": str(folder),
                                     **{k: v for k, v in given.items() if v is not None}})
    else:
        cfg = preset_config(preset or "small", out=out, **given)
    if no_clip:
        cfg = replace(cfg, clip=None)

    from encoder.distributed import from_env

    main = from_env().main  # under torchrun only rank 0 reports
    interactive = sys.stderr.isatty() and main
    every = max(1, cfg.steps // 50)
    with Progress(TextColumn("[bold]train {task.fields[preset]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}  val {task.fields[val]}  {task.fields[tps]:.0f} tok/s"),
                  TimeRemainingColumn(), disable=not interactive, transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, preset=cfg.preset, loss=float("nan"), val="-", tps=0.0)

        def on_step(rec: dict, total: int) -> None:
            val = f"{rec['val_loss']:.3f}" if "val_loss" in rec else None
            bar.update(task, completed=rec["step"], loss=rec["loss"], tps=rec["tokens_per_s"],
                       **({"val": val} if val else {}))
            if not interactive and (rec["step"] % every == 0 or val or rec["step"] == total):
                typer.echo(f"step {rec['step']}/{total} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                           f"grad_norm {rec['grad_norm']:.3f} tok/s {rec['tokens_per_s']:.0f}"
                           + (f" val_loss {val}" if val else ""), err=True)

        path = train(cfg, resume=resume, overwrite=overwrite, on_step=on_step)
    if not main:
        return
    manifest = ckpt.read_json(path / "manifest.json")
    if as_json:
        emit_json({"checkpoint": str(path), **manifest})
    else:
        typer.echo(f"checkpoint {path}: {manifest['steps']} steps, train loss {manifest['final_train_loss']:.4f}, "
                   f"val loss {manifest['final_val_loss']}, {manifest['wall_s']} s")


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise BadInput(f"--threads must be at least 1, got {threads}")
    import torch
    torch.set_num_threads(threads)  # process-wide, so it is set by the command, not inside the training function


@app.command("finetune")
def finetune_cmd(init: str = typer.Option(..., "--from", help="pre-trained checkpoint folder to start from"),
                 out: str = typer.Option(None, "--out", help="checkpoint folder (default build/finetune-NAME)"),
                 steps: int = typer.Option(None, "--steps", help="optimizer steps (total, also when resuming)"),
                 batch_size: int = typer.Option(None, "--batch-size",
                                                help="pairs per step over all processes (in-batch negatives)"),
                 lr: float = typer.Option(None, "--lr", help="peak learning rate"),
                 temperature: str = typer.Option(None, "--temperature", help="'learned' (init 0.05) or a number"),
                 max_len: int = typer.Option(None, "--max-len", help="word pieces per text (default 64)"),
                 warmup: int = typer.Option(None, "--warmup", help="warmup steps; 0 = none"),
                 naves_holdout: str = typer.Option(None, "--naves-holdout",
                                                   help="dev+test (default) or test: Nave topics kept out"),
                 device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N"),
                 resume: bool = typer.Option(False, "--resume", help="continue the fine-tune in --out"),
                 overwrite: bool = typer.Option(False, "--overwrite", help="replace a checkpoint already in --out"),
                 seed: int = typer.Option(None, "--seed"),
                 threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's "
                                                                     "choice; 1 is often faster on a busy machine)"),
                 as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON at the end")):
    """Fine-tune an encoder checkpoint for retrieval (contrastive, in-batch negatives); writes a checkpoint folder.
    Runs under `torchrun --nproc_per_node N` too (rank 0 writes)."""
    from dataclasses import asdict
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from encoder import checkpoint as ckpt
    from encoder.distributed import from_env
    from encoder.finetune import FinetuneConfig, finetune, parse_temperature
    from encoder.train import resolve_device

    resolve_device(device)
    _set_threads(threads)
    given = dict(init=init, steps=steps, batch_size=batch_size, lr=lr, max_len=max_len, warmup=warmup,
                 naves_holdout=naves_holdout, seed=seed, device=device)
    if temperature is not None:
        given["temperature"], given["learn_temperature"] = parse_temperature(temperature)
    folder = Path(out or f"build/finetune-{Path(init).resolve().name}")
    given["out"] = str(folder)
    if resume:
        ckpt.recover(folder)
        stored = ckpt.read_config(folder).get("finetune")
        if stored is None:
            raise BadInput(f"{folder}: not a fine-tuned checkpoint (no \"finetune\" in config.json)")
        cfg = FinetuneConfig.from_dict({**asdict(FinetuneConfig.from_dict(stored)),
                                        **{k: v for k, v in given.items() if v is not None}})
    else:
        cfg = FinetuneConfig.from_dict({k: v for k, v in given.items() if v is not None})

    main = from_env().main
    interactive = sys.stderr.isatty() and main
    every = max(1, cfg.steps // 50)
    with Progress(TextColumn("[bold]finetune"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.2f}  T {task.fields[t]:.3f}  "
                             "val acc {task.fields[val]}  {task.fields[tps]:.0f} tok/s"),
                  TimeRemainingColumn(), disable=not interactive, transient=False) as bar:
        task = bar.add_task("finetune", total=cfg.steps, loss=float("nan"), acc=0.0, t=cfg.temperature, val="-",
                            tps=0.0)

        def on_step(rec: dict, total: int) -> None:
            val = f"{rec['val_acc']:.3f}" if "val_acc" in rec else None
            bar.update(task, completed=rec["step"], loss=rec["loss"], acc=rec["acc"], t=rec["temperature"],
                       tps=rec["tokens_per_s"], **({"val": val} if val else {}))
            if not interactive and (rec["step"] % every == 0 or val or rec["step"] == total):
                typer.echo(f"step {rec['step']}/{total} loss {rec['loss']:.4f} acc {rec['acc']:.3f} "
                           f"lr {rec['lr']:.2e} grad_norm {rec['grad_norm']:.3f} T {rec['temperature']:.4f} "
                           f"tok/s {rec['tokens_per_s']:.0f}" + (f" val_acc {val} val_loss {rec['val_loss']:.4f}"
                                                                 if val else ""), err=True)

        path = finetune(cfg, resume=resume, overwrite=overwrite, on_step=on_step)
    if not main:
        return
    manifest = ckpt.read_json(path / "manifest.json")
    if as_json:
        emit_json({"checkpoint": str(path), **manifest})
    else:
        fv = manifest.get("final_val") or {}
        typer.echo(f"checkpoint {path}: {manifest['steps']} steps, train loss {manifest['final_train_loss']:.4f}, "
                   f"val acc {fv.get('val_acc')}, temperature {manifest['temperature']:.4f}, {manifest['wall_s']} s")



@app.command("ablate")
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
    from pathlib import Path

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from harness import ablate as A
    from encoder.train import resolve_device
    from corpus.paths import REPO

    resolve_device(device)
    _set_threads(threads)
    if budget not in A.BUDGETS:
        raise BadInput(f"unknown budget {budget!r}; choose from {', '.join(A.BUDGETS)}")
    folder = Path(work) if work else REPO / "build" / "ablate" / budget
    base = Path(report) if report else (REPO / "reports" / "ablations" if budget == "cpu" else folder / "ablations")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not sys.stderr.isatty(), transient=True) as progress:
        summary = A.ablate(budget, folder, tuple(only), device, progress=progress)
    A.write(summary, base.with_suffix(".md"), base.with_suffix(".json"))
    if as_json:
        emit_json(summary)
        return
    typer.echo(A.to_markdown(summary).split("## What")[0].rstrip().split("\n\n")[-1])
    typer.echo(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')} in {summary['wall_s'] / 60:.1f} min")

# ---- gate / compare / perf ----------------------------------------------------------------------------------------

@app.command()
def gate(
    checkpoint: str = typer.Option(..., "--checkpoint", help="Candidate encoder checkpoint folder."),
    baseline: str = typer.Option("reports/baseline.json", "--baseline"),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Largest drop that never fails (absolute)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the paired test."),
    stat_test: str = typer.Option("student", "--stat-test", help="ranx paired test: student | fisher."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Gate only these sets (default: all gate sets)."),
    verdict_path: str = typer.Option(None, "--verdict", help="Where to write the verdict JSON."),
    update_baseline: bool = typer.Option(False, "--update-baseline",
                                         help="Rewrite the baseline from this candidate if it passes."),
    summary: str = typer.Option(None, "--summary", help="Also write the verdict as Markdown here (for a CI job "
                                                        "summary, e.g. $GITHUB_STEP_SUMMARY)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict JSON to stdout."),
):
    """Refuse an encoder checkpoint that is significantly worse than the committed baseline (exit 1); on failure,
    show the five queries that fell most on each failing metric."""
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from corpus.paths import atomic_write_text
    from harness import gate as G
    from harness import worst as W

    t0 = time.perf_counter()
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha must be between 0 and 1, got {alpha}")
    if tolerance < 0:
        raise BadInput(f"--tolerance must be >= 0, got {tolerance}")
    sets = tuple(set_) or G.GATE_SETS
    bad = [s for s in sets if s not in G.GATE_SETS]
    if bad:
        raise BadInput(f"{bad[0]!r} is not a gate set ({', '.join(G.GATE_SETS)})")
    base_path = Path(baseline)
    base = None
    if base_path.exists() or not update_baseline:
        base = G.read_baseline(base_path)
        base = {**base, "results": {s: v for s, v in base["results"].items() if s in sets},
                "per_query": {s: v for s, v in base["per_query"].items() if s in sets}}
    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        report, folder = G.evaluate_candidate(checkpoint, sets, progress=progress, stat_test=stat_test)
    cand_sha = report["meta"]["checkpoint_sha256"].get("encoder", "")
    if base is None:  # first baseline ever: nothing to compare with
        G.write_json(base_path, G.to_baseline(report, checkpoint, sets))
        err.print(f"no baseline at {base_path}: wrote one from {checkpoint}")
        return
    G.check_basis(report, base, base_path)
    rows = G.compare(report, base, tolerance, alpha, stat_test)
    failed = tuple(f"{r.set}/{r.retriever}/{r.metric}" for r in rows if r.status == "worse")
    worst = W.for_gate(report, folder, base, failed, n=5)
    verdict = G.Verdict(passed=not failed, candidate=str(checkpoint), candidate_sha256=cand_sha,
                        baseline=str(base_path), baseline_sha256=base["meta"]["gate"]["checkpoint_sha256"] or "",
                        tolerance=tolerance, alpha=alpha, stat_test=stat_test, rows=tuple(rows), failed=failed,
                        date=report["meta"]["date"], seconds=round(time.perf_counter() - t0, 1),
                        meta={"run_folder": str(folder), "corpus": report["meta"]["corpus"]["id"]}, worst=worst)
    G.write_json(Path(verdict_path) if verdict_path else folder / "verdict.json", verdict.to_dict())
    if summary:
        atomic_write_text(summary, W.gate_summary(verdict.to_dict()))
    if as_json:
        emit_json(verdict.to_dict())
    else:
        table = Table(title=f"gate: {checkpoint} vs {base_path} (tolerance {tolerance}, alpha {alpha})",
                      title_justify="left")
        for h in ("set", "retriever", "metric", "baseline", "candidate", "delta", "p", "status"):
            table.add_column(h, justify="right" if h in ("baseline", "candidate", "delta", "p") else "left")
        style = {"worse": "red", "better": "green", "unchanged": ""}
        for r in rows:
            table.add_row(r.set, r.retriever, r.metric, f"{r.baseline:.4f}", f"{r.candidate:.4f}",
                          f"{r.delta:+.4f}", f"{r.p_value:.3g}", f"[{style[r.status]}]{r.status}[/]" if style[r.status]
                          else r.status)
        Console().print(table)
        W.print_views(list(worst.values()), Console())
        Console().print(f"verdict: {'PASS' if verdict.passed else 'FAIL'} in {verdict.seconds:.1f} s "
                        f"(written to {Path(verdict_path) if verdict_path else folder / 'verdict.json'})")
    if failed:
        err.print(f"gate failed: significant drops in {', '.join(failed)}")
        raise typer.Exit(1)
    if update_baseline:
        G.write_json(base_path, G.to_baseline(report, checkpoint, sets))
        err.print(f"baseline {base_path} updated from {checkpoint}")


@app.command()
def compare(
    reports: list[str] = typer.Argument(..., help="report.json files (or run folders) to put side by side."),
    out: str = typer.Option(None, "--out", help="Folder for compare.md and the PNG charts."),
    metric: str = typer.Option("ndcg@10", "--metric", help="Metric the charts show."),
    retriever: list[str] = typer.Option([], "--retriever", "-r", help="Only these retrievers (repeatable)."),
    worst: int = typer.Option(None, "--worst", help="List the N queries that fell most from A to B on --metric "
                                                    "(two reports, or one report and two -r)."),
    csv: str = typer.Option(None, "--csv", help="Also write the comparison as DataFrames (CSV, Parquet) here."),
    as_json: bool = typer.Option(False, "--json"),
):
    """One table across saved reports, with significance markers, a PNG bar chart per set (95% bootstrap intervals)
    and, where the reports pair up as A and B, a per-query scatter PNG."""
    from pathlib import Path

    from rich.console import Console

    from harness import compare as C
    from harness import worst as W
    from harness.report import print_tables

    if worst is not None and worst < 1:
        raise BadInput(f"--worst must be at least 1, got {worst}")
    loaded = [(p, C.load(p)) for p in reports]
    table = C.combine(loaded, only=tuple(retriever))
    folder = Path(out) if out else C.default_out()
    written = C.write(table, folder, metric)
    views, more = W.for_compare(loaded, tuple(retriever), metric, worst, folder)
    written += more
    frames_written = _write_frames(table, csv)
    if as_json:
        emit_json({**table, "worst": views} if worst else table)
        return
    print_tables(table, Console())
    W.print_views(views, Console())
    Console().print(f"wrote {', '.join(str(p) for p in written)}" + frames_written)


@app.command()
def perf(
    part: list[str] = typer.Option([], "--part", "-p",
                                   help="lexical | qps | encoding | wall | gate (repeatable); default: all."),
):
    """Speed benchmarks (index build, queries/s, encoding, whole runs cold and warm, gate); writes reports/perf.json."""
    from harness import perf as P

    parts = list(part) or list(P.PARTS)
    bad = [p for p in parts if p not in P.PARTS]
    if bad:
        raise BadInput(f"unknown --part {bad[0]!r}; choose from {', '.join(P.PARTS)}")
    P.run(parts, log=lambda m: typer.echo(m, err=True))
    typer.echo("wrote reports/perf.json")
