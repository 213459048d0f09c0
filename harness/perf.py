"""`bench perf`: the speed benchmarks behind reports/perf.md. Numbers are measured, printed and written; nothing here
asserts a target (targets are compared in the report, as met or missed, with the measured value)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from corpus.paths import REPO, atomic_write_text, home

QPS_SET = "keyword-xlate"  # 415 real queries: enough to time, short enough to repeat


def _bench(args, env=None) -> float:
    """Wall seconds of one `bench ...` process, as a user would run it."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"bench {' '.join(args)} failed: {p.stderr.strip()[-300:]}")
    return round(dt, 2)


def lexical(results: dict, log) -> None:
    """JVM start, then a BM25 index built from nothing (in a scratch home holding only the corpus cache)."""
    import shutil

    from corpus.bible import load_corpus
    from retrievers import bm25, pyserini_env

    t0 = time.perf_counter()
    pyserini_env.prepare()
    results["jvm_start_s"] = round(time.perf_counter() - t0, 2)
    corpus = load_corpus("web", "nt")
    saved = os.environ.get("VERSEBENCH_HOME")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(home() / "corpus", Path(tmp) / "corpus")
        os.environ["VERSEBENCH_HOME"] = tmp
        try:
            t0 = time.perf_counter()
            bm25.ensure_index(corpus)
            results["bm25_index_build_s"] = round(time.perf_counter() - t0, 2)
        finally:
            if saved is None:
                os.environ.pop("VERSEBENCH_HOME", None)
            else:
                os.environ["VERSEBENCH_HOME"] = saved
    log(f"BM25 index build {results['bm25_index_build_s']} s, JVM start {results['jvm_start_s']} s")


def qps(results: dict, names, log) -> None:
    from corpus.bible import load_corpus
    from corpus.qsets import load_set
    from retrievers.base import make

    corpus = load_corpus("web", "nt")
    queries = load_set(QPS_SET, "nt").queries
    out = results.setdefault("queries_per_s", {})
    build = results.setdefault("retriever_build_s", {})
    for name in names:
        t0 = time.perf_counter()
        r = make(name, corpus)
        build[name] = round(time.perf_counter() - t0, 2)
        r.search(dict(list(queries.items())[:5]), 100)  # warm-up: first-call costs are not throughput
        t0 = time.perf_counter()
        r.search(queries, 100)
        dt = time.perf_counter() - t0
        out[name] = round(len(queries) / dt, 1)
        log(f"{name}: built in {build[name]} s, {out[name]} queries/s over {len(queries)} queries (k=100)")


def encoding(results: dict, log) -> None:
    """Encoding the 7,950 NT verses from scratch (the vector cache bypassed)."""
    from corpus.bible import load_corpus
    from retrievers.encoder import EncoderRetriever
    from retrievers.minilm import MiniLM

    corpus = load_corpus("web", "nt")
    texts = list(corpus.texts)
    out = results.setdefault("encode_nt_s", {})
    for name, cls in (("encoder", EncoderRetriever), ("minilm", MiniLM)):
        r = cls(corpus)
        t0 = time.perf_counter()
        r.encode(texts)
        out[name] = round(time.perf_counter() - t0, 2)
        log(f"{name}: encoded {len(texts)} verses in {out[name]} s")


def wall(results: dict, log) -> None:
    """Whole `bench run` commands, warm (caches filled, numba compiled) and cold (an empty VERSEBENCH_HOME)."""
    out = results.setdefault("bench_run_s", {})
    lexical_cmd = ["run", "-r", "ilike", "-r", "bm25", "--out", tempfile.mkdtemp()]
    all_cmd = ["run", "-r", "all", "--out", tempfile.mkdtemp()]
    with tempfile.TemporaryDirectory() as cold:
        out["ilike+bm25 cold"] = _bench(lexical_cmd, {"VERSEBENCH_HOME": cold})
        log(f"bench run -r ilike -r bm25, cold: {out['ilike+bm25 cold']} s")
    _bench(lexical_cmd)
    out["ilike+bm25 warm"] = _bench(lexical_cmd)
    log(f"bench run -r ilike -r bm25, warm: {out['ilike+bm25 warm']} s")
    _bench(all_cmd)
    out["all five warm"] = _bench(all_cmd)
    log(f"bench run -r all, warm: {out['all five warm']} s")


def gate(results: dict, log) -> None:
    from retrievers.encoder import DEFAULT_CHECKPOINT

    if not (REPO / "reports" / "baseline.json").is_file():
        log("no reports/baseline.json: gate timing skipped")
        return
    results["gate_s"] = _bench(["gate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--verdict",
                                str(Path(tempfile.mkdtemp()) / "v.json")])
    log(f"bench gate (shipped checkpoint vs its baseline): {results['gate_s']} s")


PARTS = {"lexical": lexical, "qps": None, "encoding": encoding, "wall": wall, "gate": gate}


def run(parts, log=print) -> dict:
    from harness.report import git_commit, machine

    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                     "git": git_commit(), "load_average": os.getloadavg()}
    for part in parts:
        if part == "qps":
            qps(results, ("ilike", "bm25", "bm25-rm3", "encoder", "minilm", "hybrid"), log)
        else:
            PARTS[part](results, log)
    path = REPO / "reports" / "perf.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_text(path, json.dumps({**old, **results}, indent=1) + "\n")
    return results
