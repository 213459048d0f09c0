"""`bench perf`'s parts, on the real index builder: the cache root is handed in, never swapped in the environment,
and every registered retriever is timed."""

import json
import os

from corpus.bible import load_corpus
from harness import perf
from retrievers import base, bm25


def test_every_registered_retriever_is_timed_and_ilike_also_without_its_index():
    assert {name for name, _ in perf.QPS_RUNS.values()} == set(base.names()) - {"http"}  # http: the http part
    assert perf.QPS_RUNS["ilike (no index)"] == ("ilike", {"index": False})


def test_index_build_goes_to_the_root_handed_in_and_the_environment_is_left_alone(home, tmp_path):
    corpus = load_corpus("web", "nt", home=home)
    home_index = bm25.ensure_index(corpus, home)
    stamp = home_index.stat().st_mtime_ns
    env = os.environ.get("VERSEBENCH_HOME")
    seen, out = [], tmp_path / "perf.json"
    results = perf.run(["lexical"], log=seen.append, path=out, home=home)
    assert os.environ.get("VERSEBENCH_HOME") == env  # bench perf once swapped it for the build
    assert home_index.stat().st_mtime_ns == stamp  # built elsewhere, from nothing: the cached index is untouched
    assert results["bm25_index_build_s"] > 0 and len(results["load_average"]) == 3
    assert bm25.index_path(corpus, tmp_path).parent == tmp_path / "indexes"
    assert json.loads(out.read_text())["bm25_index_build_s"] == results["bm25_index_build_s"]
    assert "BM25 index build" in seen[0]
