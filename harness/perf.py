"""`bench perf`: the speed benchmarks behind reports/perf.md, in one process and one run. Numbers are measured, printed
and written; nothing here asserts a target (targets are compared in the report, as met or missed).

The machine is shared and its load moves, so where a figure is a comparison it is measured side by side in this run,
alternating the two sides (our BM25 against Pyserini's own `LuceneSearcher.batch_search` on the same queries and
index; our encoder against MiniLM on the same verses), and the load average is recorded at the start and the end.

The `http` part measures a service as its clients see it: `bench serve` started as a subprocess, queried through the
`-r http` adapter at concurrency 8 (`bench perf -p http`).
"""

import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from corpus.bible import load_corpus
from corpus.paths import REPO, atomic_write_text
from corpus.qsets import load_set
from retrievers import base, bm25

QPS_SET = "keyword-xlate"  # 415 real queries: enough to time, short enough to repeat
K = 100
ROUNDS = 3  # each side-by-side comparison: the median of this many alternating rounds

STUDENT = REPO / "models" / "versebench-small"  # the distilled student: encode-time target vs MiniLM


def _bench(args, home: Path) -> float:
    """Wall seconds of one `bench ...` process, as a user would run it. The child is a CLI edge of its own and takes
    its cache root from the environment: it is handed ours, so it times warm caches, not an empty root."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "VERSEBENCH_HOME": str(home)})
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"bench {' '.join(args)} failed: {p.stderr.strip()[-300:]}")
    return round(dt, 2)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def lexical(results: dict, log, home: Path) -> None:
    """JVM start, then a BM25 index built from nothing, in a scratch cache root handed to the indexer (the corpus
    comes from `home`)."""
    from retrievers import pyserini_env

    results["jvm_start_s"] = round(_timed(pyserini_env.prepare), 2)
    corpus = load_corpus("web", "nt", home=home)
    with tempfile.TemporaryDirectory() as scratch:
        results["bm25_index_build_s"] = round(_timed(lambda: bm25.ensure_index(corpus, Path(scratch))), 2)
    log(f"BM25 index build {results['bm25_index_build_s']} s, JVM start {results['jvm_start_s']} s")


# What `qps` times: every registered retriever, plus ILIKE without its index (the plain app's cost). sword keeps
# diatheke's answers in the cache root; timed with that cache on, it would time a JSON lookup, so it runs without. An
# adapter to a service (`http`, in base.CHECKED) has nothing to time on its own: the `http` part times it against
# `bench serve`.
QPS_RUNS = {**{name: (name, {}) for name in base.names() if name != "sword" and name not in base.CHECKED},
            "sword (answers not cached)": ("sword", {"cache": False}), "ilike (no index)": ("ilike", {"index": False})}


def qps(results: dict, log, home: Path) -> None:
    """Per retriever: build time, then queries/s at k=100 over keyword-xlate after a 5-query warm-up (first-call
    costs, such as the hybrid building its parts or MiniLM loading, are not throughput). Then BM25 side by side."""
    corpus = load_corpus("web", "nt", home=home)
    queries = load_set(QPS_SET, "nt").queries
    out = results.setdefault("queries_per_s", {})
    build = results.setdefault("retriever_build_s", {})
    for label, (name, options) in QPS_RUNS.items():
        t0 = time.perf_counter()
        r = base.make(name, corpus, home=home, **options)
        build[label] = round(time.perf_counter() - t0, 2)
        r.search(dict(list(queries.items())[:5]), K)
        out[label] = round(len(queries) / _timed(lambda: r.search(queries, K)), 1)
        log(f"{label}: built in {build[label]} s, {out[label]} queries/s over {len(queries)} queries (k={K})")
    bm25_vs_pyserini(results, corpus, queries, log, home)


def bm25_vs_pyserini(results: dict, corpus, queries: dict, log, home: Path) -> None:
    """Our BM25 (all of `search`: batch search, tie handling, dicts) against Pyserini's `LuceneSearcher.batch_search`
    with the same threads and depth on the same index, reading every hit's docid and score (what any caller must)."""
    from retrievers.pyserini_env import prepare

    prepare()
    # here, not at the top: it imports torch and transformers (seconds), and must come after prepare()
    from pyserini.search.lucene import LuceneSearcher

    ours = base.make("bm25", corpus, home=home)
    theirs = LuceneSearcher(str(ours.index_dir / "lucene"))
    theirs.set_bm25(ours.config.k1, ours.config.b)
    qids, texts = list(queries), list(queries.values())

    def pyserini():
        hits = theirs.batch_search(texts, qids, k=K, threads=bm25.BATCH_THREADS)
        return {q: [(h.docid, h.score) for h in hs] for q, hs in hits.items()}

    pyserini(), ours.search(queries, K)  # warm-up, both
    times = {"ours": [], "pyserini": []}
    for _ in range(ROUNDS):
        times["ours"].append(_timed(lambda: ours.search(queries, K)))
        times["pyserini"].append(_timed(pyserini))
    med = {side: statistics.median(t) for side, t in times.items()}
    results["bm25_vs_pyserini"] = {"ours_queries_per_s": round(len(queries) / med["ours"], 1),
                                   "pyserini_queries_per_s": round(len(queries) / med["pyserini"], 1),
                                   "ratio": round(med["ours"] / med["pyserini"], 2), "rounds": ROUNDS}
    log(f"BM25: ours {med['ours']:.3f} s vs Pyserini batch_search {med['pyserini']:.3f} s for {len(queries)} "
        f"queries: {results['bm25_vs_pyserini']['ratio']}x")


def encoding(results: dict, log, home: Path) -> None:
    """Encoding the 7,950 NT verses from scratch (the vector cache bypassed): ours and MiniLM on the same verses,
    alternating, once each (a full pass takes tens of seconds)."""
    corpus = load_corpus("web", "nt", home=home)
    texts = list(corpus.texts)
    out = results.setdefault("encode_nt_s", {})
    encoders = {name: base.make(name, corpus, home=home) for name in ("encoder", "minilm")}
    # the distilled student, whose target is a third of MiniLM's time, measured in the same run
    encoders["encoder (versebench-small)"] = base.make("encoder", corpus, home=home, checkpoint=str(STUDENT))
    for name, r in encoders.items():
        r.encode(texts[:64])  # warm-up: MiniLM loads here, not in the timing
    for name, r in encoders.items():
        out[name] = round(_timed(lambda: r.encode(texts)), 2)
        log(f"{name}: encoded {len(texts)} verses in {out[name]} s")
    results["encoder_vs_minilm_encode"] = round(out["encoder"] / out["minilm"], 2)
    results["small_vs_minilm_encode"] = round(out["encoder (versebench-small)"] / out["minilm"], 2)


def wall(results: dict, log, home: Path) -> None:
    """Whole `bench run` commands, warm (caches filled, numba compiled): the lexical pair, then all five."""
    out = results.setdefault("bench_run_s", {})
    with tempfile.TemporaryDirectory() as scratch:
        out["ilike+bm25 warm"] = _bench(["run", "-r", "ilike", "-r", "bm25", "--out", scratch], home)
        log(f"bench run -r ilike -r bm25, warm: {out['ilike+bm25 warm']} s")
        out["all five warm"] = _bench(["run", "-r", "all", "--out", scratch], home)
        log(f"bench run -r all, warm: {out['all five warm']} s")


def gate(results: dict, log, home: Path) -> None:
    from retrievers.encoder import DEFAULT_CHECKPOINT

    if not (REPO / "reports" / "baseline.json").is_file():
        log("no reports/baseline.json: gate timing skipped")
        return
    with tempfile.TemporaryDirectory() as scratch:
        results["gate_s"] = _bench(["gate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--verdict",
                                    str(Path(scratch) / "v.json")], home)
    log(f"bench gate (shipped checkpoint vs its baseline): {results['gate_s']} s")


HTTP_SERVED = ("bm25", "hybrid")  # what `bench serve` serves for the http part: the lexical floor and the main job
HTTP_CONCURRENCY = 8
HTTP_K = (100, 10)  # the depth `bench run` asks for, and the page an app asks for


def reporting_queries() -> dict[str, str]:
    """Every query of the committed reporting sets (dev splits left out) in the default scope, keyed `set/qid`."""
    from corpus.qsets import read_set, set_names

    return {f"{name}/{qid}": text for name in set_names() if read_set(name).meta.get("split") != "dev"
            for qid, text in load_set(name, "nt").queries.items()}


@contextlib.contextmanager
def served(name: str, home: Path, timeout: float = 300):
    """`bench serve -r NAME --port 0` running (a free port, 127.0.0.1), handed our cache root; yields its base url
    once its ready line is out, and stops it after."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: nobody reads it until the end, and it never fills
        proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "serve", "-r", name,
                                 "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "VERSEBENCH_HOME": str(home), "COLUMNS": "200"})
        found: list[str] = []

        def read():  # the ready line, then whatever else it prints, so its stdout never fills either
            for line in proc.stdout:
                if not found and READY.search(line):
                    found.append(READY.search(line).group(1))

        threading.Thread(target=read, daemon=True).start()
        try:
            t0 = time.perf_counter()
            while not found and proc.poll() is None and time.perf_counter() - t0 < timeout:
                time.sleep(0.05)
            if not found:
                err.seek(0)
                raise RuntimeError(f"bench serve -r {name} did not start: {err.read().strip()[-300:]}")
            yield found[0]
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


READY = re.compile(r"at (http://\S+/) \(Ctrl-C stops\)")


def http(results: dict, log, home: Path) -> None:
    """Through `-r http` against `bench serve`, as a client of the service would see it: every query of the
    reporting sets sent at concurrency 8 (one request each, kept-open connections), after a 16-query warm-up;
    queries/s over the whole pass and each answered request's latency (p50, p99), at k = 100 and k = 10. The same
    retriever searched in process over the same queries (one batch, k = 100) is measured in the same run for
    scale. Client and server share this machine's cores."""
    corpus = load_corpus("web", "nt", home=home)
    queries = reporting_queries()
    out = results.setdefault("http", {})
    out["load_average"] = os.getloadavg()  # this part's own, since a run of this part alone is merged into perf.json
    for name in HTTP_SERVED:
        row = out[name] = {"queries": len(queries), "concurrency": HTTP_CONCURRENCY}
        with served(name, home) as root:
            r = base.make("http", corpus, home=home, url=root + "search?q={query}&k={k}",
                          concurrency=HTTP_CONCURRENCY, retries=0)
            for k in HTTP_K:
                r.search(dict(list(queries.items())[:16]), k)
                dt = _timed(lambda: r.search(queries, k))
                lat = sorted(r.inner.latencies)  # r is the Checked wrapper; the adapter keeps the timings
                row[f"k={k}"] = {"queries_per_s": round(len(queries) / dt, 1),
                                 "p50_ms": round(1000 * _quantile(lat, 0.50), 1),
                                 "p99_ms": round(1000 * _quantile(lat, 0.99), 1)}
                log(f"http -> bench serve -r {name}, k={k}: {row[f'k={k}']['queries_per_s']} queries/s over "
                    f"{len(queries)} queries at concurrency {HTTP_CONCURRENCY}, p50 {row[f'k={k}']['p50_ms']} ms, "
                    f"p99 {row[f'k={k}']['p99_ms']} ms")
        local = base.make(name, corpus, home=home)
        local.search(dict(list(queries.items())[:16]), K)
        row["in_process_queries_per_s"] = round(len(queries) / _timed(lambda: local.search(queries, K)), 1)
        log(f"{name} in process over the same queries (k={K}): {row['in_process_queries_per_s']} queries/s")
    out["load_average_end"] = os.getloadavg()


def _quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank quantile: the value at rank ceil(q * n)."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


PARTS = {"lexical": lexical, "qps": qps, "encoding": encoding, "wall": wall, "gate": gate, "http": http}


def run(parts, log=print, path: Path = REPO / "reports" / "perf.json", *, home: Path) -> dict:
    """Runs the parts in order and writes `path`: replaced by a run of every part, merged into by a partial run.
    `home`: the cache root (warm caches: the figures are warm ones, except the scratch index build)."""
    from harness.report import git_commit, machine

    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                     "git": git_commit(), "load_average": os.getloadavg()}
    for part in parts:
        PARTS[part](results, log, home)
    results["load_average_end"] = os.getloadavg()
    old = json.loads(path.read_text()) if path.is_file() and set(parts) != set(PARTS) else {}
    merged = {**old, **results}
    if old:  # a run of some parts: the full run's date, commit and load stay; this run's go beside its parts
        merged.update({key: old[key] for key in RUN_META if key in old})
        merged["partial_runs"] = {**old.get("partial_runs", {}),
                                  " ".join(parts): {key: results[key] for key in RUN_META}}
    atomic_write_text(path, json.dumps(merged, indent=1) + "\n")
    return results


RUN_META = ("date", "machine", "git", "load_average", "load_average_end")
