"""Times the lexical retrievers on the WEB NT and prints JSON: JVM start, BM25 index build, queries per second.

    .venv/bin/python scripts/perf_lexical.py [--k 100] [--fresh]

300 queries: every query of the committed sets, topped up with the first eight words of evenly spaced verses.
--fresh builds the BM25 index in a temporary VERSEBENCH_HOME (the corpus cache is copied, not rebuilt). Run it in a
fresh process: the JVM can only start once.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def queries_300(corpus) -> dict[str, str]:
    from corpus.qsets import load_set, set_names

    queries = {}
    for name in set_names():
        for qid, text in load_set(name, "nt").queries.items():
            queries[f"{name}/{qid}"] = text
    queries = dict(list(queries.items())[:300])
    step = len(corpus) // (300 - len(queries) + 1)
    for i in range(step, len(corpus), step):
        if len(queries) == 300:
            break
        queries[f"verse/{corpus.ids[i]}"] = " ".join(corpus.texts[i].split()[:8])
    return queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    if args.fresh:
        from corpus.paths import home

        fresh = Path(tempfile.mkdtemp(prefix="versebench-perf-"))
        if (home() / "corpus").is_dir():
            shutil.copytree(home() / "corpus", fresh / "corpus")
        os.environ["VERSEBENCH_HOME"] = str(fresh)

    from corpus.bible import load_corpus
    from retrievers import bm25
    from retrievers.base import make
    from retrievers.pyserini_env import prepare

    corpus = load_corpus("web", "nt")
    queries = queries_300(corpus)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "corpus": corpus.corpus_id,
           "queries": len(queries), "k": args.k}
    t = time.perf_counter()
    prepare()
    out["jvm_start_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    cached = bm25.index_path(corpus).is_dir()
    bm25.ensure_index(corpus)
    out["bm25_index_s"] = None if cached else round(time.perf_counter() - t, 2)
    for name in ("ilike", "bm25", "bm25-rm3"):
        t = time.perf_counter()
        r = make(name, corpus)
        built = time.perf_counter() - t
        r.search(dict(list(queries.items())[:5]), args.k)  # warm-up (JIT, SQLite page cache)
        t = time.perf_counter()
        r.search(queries, args.k)
        dt = time.perf_counter() - t
        out[name] = {"make_s": round(built, 2), "search_s": round(dt, 2), "queries_per_s": round(len(queries) / dt, 1)}
    if args.fresh:
        shutil.rmtree(os.environ["VERSEBENCH_HOME"], ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
