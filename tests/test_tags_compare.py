"""Query tags through the typed Report: `bench compare` breaks every metric down by tag with the paired test per tag,
and the terminal shows the by-tag table as report.md does."""

import io

import pytest
from rich.console import Console

from corpus.qsets import read_set
from harness import compare as C
from harness.cli import render
from harness.report import Report
from harness.runner import RunConfig, external, run_benchmark

TAGS = ("episode", "question")


@pytest.fixture(scope="module")
def tagged(home, tmp_path_factory):
    """The distractor set's first 12 queries, tagged alternately, run with ilike and bm25: (report, folder)."""
    d = tmp_path_factory.mktemp("tagged")
    qs = read_set("distractor")
    qids = list(qs.queries)[:12]
    (d / "styles.tsv").write_text("".join(f"{q}\t{qs.queries[q]}\t{TAGS[i % 2]}\n" for i, q in enumerate(qids)))
    (d / "styles.trec").write_text("".join(f"{q} 0 {doc} {rel}\n" for q in qids for doc, rel in qs.qrels[q].items()))
    return run_benchmark(RunConfig(retrievers=("ilike", "bm25"), out_root=d / "runs"),
                         external=external(d / "styles.tsv", d / "styles.trec"), home=home)


def test_the_report_keeps_the_breakdown_and_reads_it_back(tagged):
    report, folder = tagged
    assert list(report.by_tag["styles"]) == list(TAGS)
    assert Report.load(folder).to_dict()["by_tag"] == report.to_dict()["by_tag"]
    assert report.tag_of("styles")[report.by_tag["styles"]["question"]["qids"][0]] == "question"


def test_compare_breaks_down_by_tag(tagged, tmp_path):
    report, folder = tagged
    table = C.combine([(folder, C.load(folder))], only=("bm25", "ilike"))
    mine, theirs = table.by_tag["styles"]["question"], report.by_tag["styles"]["question"]
    assert mine["results"] == theirs["results"] and mine["qids"] == theirs["qids"]
    assert mine["significance"]["ndcg@10"]["bm25"]["ilike"] == pytest.approx(
        theirs["significance"]["ndcg@10"]["bm25"]["ilike"])
    C.write(table, tmp_path)
    assert "### styles by query tag (ndcg@10)" in (tmp_path / "compare.md").read_text()


def test_the_terminal_shows_the_by_tag_table(tagged):
    report, _ = tagged
    out = io.StringIO()
    render.result_tables(report, Console(file=out, width=150))
    shown = out.getvalue()
    assert "styles by query tag (ndcg@10)" in shown and "question (6)" in shown and "episode (6)" in shown
