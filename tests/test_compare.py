"""`bench compare` on real saved reports: one table with significance markers, a PNG per set, refusal of reports that
cannot be compared."""

import json

import pytest

from harness import compare as C
from corpus.errors import BadInput
from harness.runner import RunConfig, run_benchmark


@pytest.fixture(scope="module")
def two_reports(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    a = run_benchmark(RunConfig(retrievers=("ilike",), sets=("distractor", "keyword"), out_root=out / "a"),
                      home=home)[1]
    b = run_benchmark(RunConfig(retrievers=("bm25",), sets=("distractor", "keyword"), out_root=out / "b"),
                      home=home)[1]
    return a / "report.json", b / "report.json"


def test_compare_writes_table_and_charts(two_reports, tmp_path):
    table = C.combine([(p, C.load(p)) for p in two_reports])
    written = C.write(table, tmp_path, "ndcg@10")
    names = {p.name for p in written}
    assert {"compare.md", "compare.json", "distractor.png", "keyword.png"} <= names
    assert (tmp_path / "distractor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "compare.md").read_text()
    rows = [r for r in table.results["distractor"]]
    assert rows == ["ilike", "bm25"]  # no two reports hold the same row, so no report labels are needed
    # bm25 beats ilike significantly on distractor ndcg@10 (0.72 vs 0.55 over 46 queries): it carries ilike's letter
    bm25_row = next(line for line in md.splitlines() if line.startswith("| b | bm25 |"))
    assert "ᵃ" in bm25_row
    # the p-values come from per-query values and agree with the run's own significance test
    assert table.significance["distractor"]["ndcg@10"][rows[1]][rows[0]] < 0.05


def test_compare_refuses_another_corpus(two_reports, tmp_path):
    other = json.loads(two_reports[1].read_text())
    other["meta"]["corpus"]["id"] = "kjv-nt-000000000000"
    p = tmp_path / "other.json"
    p.write_text(json.dumps(other))
    with pytest.raises(BadInput, match="not comparable"):
        C.combine([(two_reports[0], C.load(two_reports[0])), (p, C.load(p))])


def test_compare_refuses_unknown_metric_and_bad_file(two_reports, tmp_path):
    table = C.combine([(two_reports[0], C.load(two_reports[0]))])
    with pytest.raises(BadInput, match="--metric"):
        C.write(table, tmp_path, "ndcg@7")
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(BadInput, match="x.json"):
        C.load(tmp_path / "x.json")


def test_compare_can_keep_only_some_retrievers(two_reports):
    table = C.combine([(p, C.load(p)) for p in two_reports], only=("bm25",))
    assert all(list(rows) == ["bm25"] for rows in table.results.values())
    with pytest.raises(BadInput, match="none of the reports"):
        C.combine([(p, C.load(p)) for p in two_reports], only=("colbert",))


def test_same_retriever_in_two_reports_gets_report_labels(two_reports):
    table = C.combine([(two_reports[1], C.load(two_reports[1])), (two_reports[1], C.load(two_reports[1]))])
    rows = list(table.results["distractor"])
    assert len(rows) == 2 and all(r.startswith("bm25 [") for r in rows) and rows[0] != rows[1]
