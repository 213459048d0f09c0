"""The command line as a user meets it: bad input is one line on stderr and exit code 2, never a traceback, and a
failed run leaves no half-written report."""

import json
import os
import subprocess
import sys

import pytest

from corpus.errors import BadInput
from harness.runner import RunConfig, run_benchmark

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]


def bench(*args, cwd=None):
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def assert_one_line_error(p, *words):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_unknown_retriever(tmp_path):
    assert_one_line_error(bench("run", "-r", "colbert", "--out", str(tmp_path)), "unknown retriever", "bm25")


def test_unknown_set_and_bad_scope(tmp_path):
    assert_one_line_error(bench("run", "-s", "nope", "--out", str(tmp_path)), "unknown query set")
    assert_one_line_error(bench("run", "--scope", "apocrypha", "--out", str(tmp_path)), "--scope")


def test_malformed_external_files(tmp_path):
    q = tmp_path / "queries.tsv"
    r = tmp_path / "qrels.trec"
    q.write_text("q1\tbread of life\nq2 missing tab\n")
    r.write_text("q1 0 John.6.35 1\n")
    assert_one_line_error(bench("run", "--queries", str(q), "--qrels", str(r), "--out", str(tmp_path)),
                          f"{q}:2:", "2 or 3 tab-separated columns")
    q.write_bytes(b"q1\tbread of \xff life\n")
    assert_one_line_error(bench("run", "--queries", str(q), "--qrels", str(r)), "not UTF-8")


def test_qrels_whose_ids_do_not_match(tmp_path):
    q = tmp_path / "queries.tsv"
    r = tmp_path / "qrels.trec"
    q.write_text("a1\tbread of life\n")
    r.write_text("b1 0 John.6.35 1\n")
    assert_one_line_error(bench("run", "--queries", str(q), "--qrels", str(r), "--out", str(tmp_path)), "not in")
    r.write_text("a1 0 Tobit.1.1 1\n")
    assert_one_line_error(bench("run", "--queries", str(q), "--qrels", str(r), "--out", str(tmp_path)),
                          "not verses of corpus")
    assert not list(tmp_path.glob("2*")), "a refused run must not leave a report folder"


@pytest.mark.slow
def test_external_set_runs_and_writes_report(tmp_path):
    q = tmp_path / "queries.tsv"
    r = tmp_path / "qrels.trec"
    q.write_text("a1\tI am the bread of life\na2\tGod so loved the world\n")
    r.write_text("a1 0 John.6.35 2\na1 0 John.6.48 2\na2 0 John.3.16 2\n")
    p = bench("run", "-r", "bm25", "--queries", str(q), "--qrels", str(r), "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert next(iter(rep["results"].values()))["bm25"]["mrr@10"] == 1.0
    folders = [f for f in tmp_path.iterdir() if f.is_dir()]
    assert len(folders) == 1 and not folders[0].name.startswith(".tmp")
    assert {p.name for p in folders[0].iterdir()} >= {"report.json", "report.md", "runs"}


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "?!...", "x" * 10_000, 'AND ( : * "', "Jésus ¿dónde? 爱"])
def test_search_survives_odd_queries(query):
    p = bench("search", query, "-r", "bm25")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr


@pytest.mark.slow
def test_search_finds_the_new_heart_with_scope_all():
    p = bench("search", "give you a new heart", "-r", "bm25", "--scope", "all", "--json")
    assert p.returncode == 0, p.stderr
    hits = [h["docid"] for h in json.loads(p.stdout)]
    assert "Ezek.36.26" in hits


def test_failed_run_leaves_no_half_written_report(home, tmp_path):
    # the second retriever fails after the first has written its runs into the temp folder
    cfg = RunConfig(retrievers=("ilike", "bm25"), sets=("distractor",), out_root=tmp_path,
                    options={"bm25": {"no_such_option": 1}})
    with pytest.raises(BadInput, match="unknown option"):
        run_benchmark(cfg, home=home)
    assert list(tmp_path.iterdir()) == []


def test_corpus_show_unknown_reference():
    assert_one_line_error(bench("corpus", "show", "Tobit 1:1"))
