"""Reports as DataFrames: every value in the frames is the report's, query texts are the committed set's, and the CSV
and Parquet files written by `bench run --csv` read back to the same frames."""

import json

import pandas as pd
import pytest

from corpus.qsets import read_set
from corpus.paths import REPO
from harness import frames
from harness.report import Report
from harness.runner import RunConfig, run_benchmark
from tests.test_cli import assert_one_line_error, bench

BASELINE = REPO / "reports" / "baseline.json"


@pytest.fixture(scope="module")
def run_folder(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run_benchmark(RunConfig(retrievers=("ilike", "bm25"), sets=("distractor",), out_root=out), home=home)[1]


def check_against_report(d: dict) -> None:
    rep = Report.from_dict(d)
    t = frames.tidy(rep)
    assert t.equals(frames.tidy(d)) and t.equals(rep.to_frame())  # a dict or a Report: the same frame
    expected = {(s, r, m): v for s, by_r in rep.results.items() for r, ms in by_r.items() for m, v in ms.items()}
    assert list(t.columns) == frames.TIDY_COLUMNS
    assert len(t) == len(expected)
    assert {(row.set, row.retriever, row.metric): row.value for row in t.itertuples()} == expected
    pq = frames.per_query(rep)
    expected = {(s, q, r, m): v for s, by_r in rep.per_query.items() for r, ms in by_r.items()
                for m, vals in ms.items() for q, v in vals.items()}
    assert list(pq.columns) == frames.PER_QUERY_COLUMNS
    assert len(pq) == len(expected)
    assert {(row.set, row.qid, row.retriever, row.metric): row.value for row in pq.itertuples()} == expected
    for s in rep.per_query:  # the texts are the committed set's, query by query
        queries = read_set(s).queries
        sub = pq[pq["set"] == s]
        assert (sub["query"] == sub["qid"].map(queries)).all()


def test_every_value_of_a_run_is_in_its_frames(run_folder):
    rep = json.loads((run_folder / "report.json").read_text())
    check_against_report(rep)
    assert frames.tidy(run_folder).equals(frames.tidy(rep))  # a folder, a report.json or a dict: the same frame


def test_every_value_of_the_baseline_is_in_its_frames():
    rep = json.loads(BASELINE.read_text())
    check_against_report(rep)
    assert len(frames.per_query(BASELINE)) == 6940  # 1,735 queries x encoder, hybrid x ndcg@10, recall@100


def test_a_changed_set_gives_no_query_text(run_folder):
    rep = json.loads((run_folder / "report.json").read_text())
    rep["meta"]["sets"]["distractor"]["version"] = "000000000000"  # made with judgments that are not committed
    pq = frames.per_query(rep)
    assert pq["query"].isna().all() and len(pq) > 0


def test_bench_run_csv_reads_back(tmp_path):
    p = bench("run", "-r", "ilike", "-s", "distractor", "--out", str(tmp_path / "runs"),
              "--csv", str(tmp_path / "frames"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"DataFrames in {tmp_path / 'frames'}" in p.stdout
    folder = next((tmp_path / "runs").iterdir())
    for name, df in (("summary", frames.tidy(folder)), ("per_query", frames.per_query(folder))):
        back = pd.read_csv(tmp_path / "frames" / f"{name}.csv")
        pd.testing.assert_frame_equal(back, df)
        if frames.parquet_available():
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "frames" / f"{name}.parquet"), df)


def test_csv_into_a_file_is_bad_input(tmp_path):
    (tmp_path / "taken").write_text("x")
    assert_one_line_error(bench("compare", str(BASELINE), "--out", str(tmp_path / "cmp"),
                                "--csv", str(tmp_path / "taken")), "--csv wants a folder")
