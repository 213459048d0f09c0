"""`bench perf`'s parts, on the real index builder: the cache root is handed in, never swapped in the environment,
and every registered retriever is timed."""

import json
import os

import pytest

from corpus.bible import load_corpus
from harness import perf
from retrievers import base, bm25


def test_every_registered_retriever_is_timed_and_ilike_also_without_its_index():
    assert {name for name, _ in perf.QPS_RUNS.values()} == set(base.names()) - {"http"}  # http: the http part
    assert perf.QPS_RUNS["ilike (no index)"] == ("ilike", {"index": False})
    assert perf.QPS_RUNS["sword (answers not cached)"] == ("sword", {"cache": False})  # diatheke, not a lookup


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


def test_quantiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert perf._quantile(values, 0.5) == 50 and perf._quantile(values, 0.99) == 99
    assert perf._quantile([7.0], 0.99) == 7


@pytest.mark.slow
def test_the_http_part_measures_bench_serve_through_the_adapter(home, monkeypatch):
    """The part as `bench perf -p http` runs it, on 40 of its queries and BM25 only: a real `bench serve`, the real
    adapter at concurrency 8; its figures are there and consistent (their size is the report's business)."""
    queries = dict(list(perf.reporting_queries().items())[:40])
    assert len(perf.reporting_queries()) > 1000 and all("/" in q for q in queries)  # every reporting set, set/qid
    monkeypatch.setattr(perf, "reporting_queries", lambda: queries)
    monkeypatch.setattr(perf, "HTTP_SERVED", ("bm25",))
    results, seen = {}, []
    perf.http(results, seen.append, home)
    row = results["http"]["bm25"]
    assert row["queries"] == 40 and row["concurrency"] == 8 and row["in_process_queries_per_s"] > 0
    for k in perf.HTTP_K:
        assert row[f"k={k}"]["queries_per_s"] > 0 and 0 < row[f"k={k}"]["p50_ms"] <= row[f"k={k}"]["p99_ms"]
    assert seen[0].startswith("http -> bench serve -r bm25, k=100: ")


def test_a_run_of_some_parts_keeps_the_full_runs_provenance(tmp_path, monkeypatch, home):
    """perf.json's date, commit and load are the full run's; a later run of one part (bench perf -p http) once
    replaced them, so every figure seemed to come from that run. Its own go under partial_runs."""
    path = tmp_path / "perf.json"
    full = {"date": "2026-11-30", "machine": {"cpus": 2}, "git": {"commit": "81ed356"}, "load_average": [0.2] * 3,
            "load_average_end": [1.5] * 3, "jvm_start_s": 0.74}
    path.write_text(json.dumps(full))
    monkeypatch.setitem(perf.PARTS, "tiny", lambda results, log, home: results.update(tiny_s=0.1))
    perf.run(["tiny"], log=lambda m: None, path=path, home=home)
    got = json.loads(path.read_text())
    assert {k: got[k] for k in full} == full and got["tiny_s"] == 0.1
    ran = got["partial_runs"]["tiny"]
    assert set(ran) == set(perf.RUN_META) and ran["date"] != "2026-11-30"
