"""Strict parsing of queries, qrels and runs: every malformed file gets one line naming file, line and problem."""

import pytest

from corpus.errors import BadInput
from corpus.qsets import (QuerySet, check_ids, external_set, format_qrels, format_run, read_qrels, read_queries,
                           read_run, restrict)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


@pytest.mark.parametrize("content, problem, line", [
    ("q1\tbread of life\nq2 no tab here\n", "expected 2 or 3 tab-separated columns", 2),
    ("q1\tbread\tof life\n", "bad tag 'of life'", 1),
    ("q1\tbread\tquestion\textra\n", "expected 2 or 3 tab-separated columns", 1),
    ("q1\tbread\nq1\tlife\n", "duplicate query id 'q1'", 2),
    ("", "file is empty", None),
    ("\n  \n", "file is empty", None),
    (b"q1\tok\nq2\tcaf\xe9\n", "not UTF-8", 2),
])
def test_bad_queries_name_file_and_line(tmp_path, content, problem, line):
    p = write(tmp_path, "queries.tsv", content)
    with pytest.raises(BadInput) as e:
        read_queries(p)
    msg = str(e.value)
    assert problem in msg and str(p) in msg and "\n" not in msg
    if line:
        assert f"{p}:{line}:" in msg


@pytest.mark.parametrize("content, problem, line", [
    ("q1 0 John.3.16 1\nq1 0 John.3.17\n", "expected 4 columns", 2),
    ("q1 0 John.3.16 high\n", "is not an integer", 1),
    ("q1 0 John.3.16 3\n", "out of range", 1),
    ("q1 0 John.3.16 1\nq1 0 John.3.16 2\n", "duplicate judgment", 2),
    ("", "file is empty", None),
])
def test_bad_qrels_name_file_and_line(tmp_path, content, problem, line):
    p = write(tmp_path, "qrels.trec", content)
    with pytest.raises(BadInput) as e:
        read_qrels(p)
    assert problem in str(e.value)
    if line:
        assert f"{p}:{line}:" in str(e.value)


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        read_queries(tmp_path / "nope.tsv")


def test_round_trip_formats(tmp_path):
    qrels = {"q1": {"John.3.16": 2, "Rom.5.8": 1}, "q2": {"Matt.5.3": 1}}
    assert read_qrels(write(tmp_path, "q.trec", format_qrels(qrels))) == qrels
    run = {"q1": {"John.3.16": 3.5, "Rom.5.8": 1.25}, "q2": {"Matt.5.3": 0.1}}
    text = format_run(run, "bm25")
    assert text.splitlines()[0] == "q1 Q0 John.3.16 1 3.5 bm25"
    assert read_run(write(tmp_path, "r.trec", text)) == run


def test_run_file_keeps_scores_exactly(tmp_path):
    # Tie-broken scores differ by one ULP; a run file that rounded them would bring the ties back (a real bug:
    # runs were first written with 8 decimals).
    import math
    a = 2.0
    b = math.nextafter(a, -math.inf)
    back = read_run(write(tmp_path, "r.trec", format_run({"q": {"x": a, "y": b}}, "t")))
    assert back["q"]["y"] == b and back["q"]["y"] < back["q"]["x"]


def test_ids_that_do_not_line_up_are_refused(tmp_path):
    with pytest.raises(BadInput, match="not in"):
        check_ids({"q1": "a"}, {"q1": {"d": 1}, "q9": {"d": 1}}, "queries.tsv", "qrels.trec")
    with pytest.raises(BadInput, match="no relevant judgment"):
        check_ids({"q1": "a", "q2": "b"}, {"q1": {"d": 1}, "q2": {"d": 0}}, "queries.tsv", "qrels.trec")
    q = write(tmp_path, "queries.tsv", "a\tbread\n")
    r = write(tmp_path, "qrels.trec", "b 0 John.6.35 1\n")
    with pytest.raises(BadInput):
        external_set(q, r)


def test_restrict_drops_queries_outside_scope():
    qs = QuerySet("kw", {"ot": "new heart", "mix": "love", "nt": "bread"},
                  {"ot": {"Ezek.36.26": 2}, "mix": {"Lev.19.18": 1, "Matt.22.39": 2}, "nt": {"John.6.35": 2}},
                  meta={"scope": "all"})
    nt = restrict(qs, "nt")
    assert list(nt.queries) == ["mix", "nt"]
    assert nt.qrels["mix"] == {"Matt.22.39": 2}
    assert nt.meta["queries_dropped_by_scope"] == 1
    assert restrict(qs, "all") is qs


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    # a real bug: mkstemp's 0600 leaked into every report, so other users could not read them
    import os
    import stat

    from corpus.paths import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_a_third_column_is_the_query_tag(tmp_path):
    from corpus.qsets import read_tagged_queries

    p = write(tmp_path, "queries.tsv", "q1\tbread of life\tquestion\nq2\tlove your enemies\n")
    assert read_tagged_queries(p) == ({"q1": "bread of life", "q2": "love your enemies"}, {"q1": "question"})
    assert read_queries(p) == {"q1": "bread of life", "q2": "love your enemies"}
