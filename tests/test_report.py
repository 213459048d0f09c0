"""The typed Report: every committed report reads and writes back to the same JSON, and a run's Report is what its
folder holds."""

import json

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from harness.report import Report

COMMITTED = sorted(p for p in (REPO / "reports").rglob("*.json")
                   if "runs" not in p.relative_to(REPO / "reports").parts
                   and {"meta", "results"} <= set(json.loads(p.read_text("utf-8"))))


def test_the_committed_reports_are_found():
    names = {p.relative_to(REPO).as_posix() for p in COMMITTED}
    assert {"reports/baseline.json", "reports/hybrid/compare.json", "reports/lexical/compare.json"} <= names


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_committed_report_loads_and_saves_back_to_equal_json(path, tmp_path):
    rep = Report.load(path)
    assert rep.to_dict() == json.loads(path.read_text("utf-8"))
    rep.save(tmp_path)
    assert json.loads((tmp_path / "report.json").read_text("utf-8")) == json.loads(path.read_text("utf-8"))
    assert Report.load(tmp_path) == rep  # a folder loads through its report.json


def test_the_baseline_writes_back_byte_for_byte(tmp_path):
    path = REPO / "reports" / "baseline.json"
    Report.load(path).write_json(tmp_path / "b.json")
    assert (tmp_path / "b.json").read_bytes() == path.read_bytes()


def test_a_report_reads_by_attribute():
    rep = Report.load(REPO / "reports" / "baseline.json")
    assert rep.significance is None  # a baseline keeps none; it is left out again on save
    assert "distractor" in rep.sets and rep.retrievers("distractor") == ["encoder", "hybrid"]
    values = rep.values("distractor", "encoder", "ndcg@10")
    assert abs(sum(values.values()) / len(values) - rep.results["distractor"]["encoder"]["ndcg@10"]) < 1e-9
    assert rep.values("distractor", "encoder", "no-such-metric") is None
    assert rep.set_info("distractor")["queries"] == len(values)
    frame = rep.to_frame()
    assert len(frame) == sum(len(ms) for by_r in rep.results.values() for ms in by_r.values())
    assert rep.to_markdown().startswith("# versebench run")


def test_what_is_not_a_report_is_one_line_of_bad_input(tmp_path):
    (tmp_path / "a.json").write_text('{"results": {}}')
    (tmp_path / "b.json").write_text("[1, 2]")
    (tmp_path / "c.json").write_text("{")
    for name, said in (("a.json", "no 'meta'"), ("b.json", "not a JSON object"), ("c.json", "not a valid report"),
                       ("d.json", "no such report")):
        with pytest.raises(BadInput, match=said):
            Report.load(tmp_path / name)
    with pytest.raises(BadInput, match="without a report.json"):
        Report.load(tmp_path)
