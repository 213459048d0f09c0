"""Query-set tags (issue 17, item 3): queries.tsv may carry a style tag in a third column; `bench run`, the frames
and `bench compare` break every metric down by tag, with the paired test on each tag's queries."""

import json

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from corpus.qsets import read_queries_tagged, read_set
from harness import compare as C
from harness import frames
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


def test_every_metric_is_broken_down_by_tag(tagged):
    report, _ = tagged
    parts = report.by_tag["styles"]
    assert list(parts) == list(TAGS) and report.set_info("styles")["tags"] == {"episode": 6, "question": 6}
    for tag, part in parts.items():
        assert len(part["queries"]) == 6
        for r in ("ilike", "bm25"):
            for m, vals in report.per_query["styles"][r].items():
                assert part["results"][r][m] == pytest.approx(sum(vals[q] for q in part["queries"]) / 6)
        assert 0 <= part["significance"]["ndcg@10"]["bm25"]["ilike"] <= 1  # the paired test on the tag's queries
    assert report.tag_of("styles")[list(report.per_query["styles"]["bm25"]["ndcg@10"])[1]] == "question"


def test_the_tables_and_files_show_the_tags(tagged):
    report, folder = tagged
    md = (folder / "report.md").read_text()
    assert "## By query tag" in md and "### styles · episode (6 queries)" in md
    assert Report.load(folder).by_tag == json.loads(json.dumps(report.by_tag))
    pq = frames.per_query(folder)
    assert list(pq.columns) == ["set", "qid", "query", "tag", "retriever", "metric", "value"]
    assert set(pq["tag"]) == set(TAGS)
    bt = frames.by_tag(folder)
    assert list(bt.columns) == frames.BY_TAG_COLUMNS and set(bt["tag"]) == set(TAGS)
    assert len(bt) == 2 * 2 * len(report.results["styles"]["bm25"])  # tags x retrievers x metrics


def test_compare_breaks_down_by_tag(tagged, tmp_path):
    report, folder = tagged
    table = C.combine([(folder, C.load(folder))], only=("bm25", "ilike"))
    assert set(table.by_tag["styles"]) == set(TAGS)
    assert table.by_tag["styles"]["question"]["results"]["bm25"] == report.by_tag["styles"]["question"]["results"]["bm25"]
    written = {p.name for p in C.write(table, tmp_path)}
    assert "styles · question" in (tmp_path / "compare.md").read_text() and "compare.json" in written


def test_untagged_sets_keep_their_reports_as_they_were():
    base = Report.load(REPO / "reports" / "baseline.json")
    assert base.by_tag is None and "by_tag" not in base.to_dict() and base.tag_report() is None


@pytest.mark.parametrize("text,said", [("a\tx\tq\nb\ty\n", "tag every query or none"),
                                       ("a\tx\nb\ty\tq\n", "tag every query or none"),
                                       ("a\tx\tq r\n", "bad tag"), ("a\tx\tq\tz\n", "2 or 3")])
def test_tags_are_all_or_none_and_one_word(tmp_path, text, said):
    (tmp_path / "q.tsv").write_text(text)
    with pytest.raises(BadInput, match=said):
        read_queries_tagged(tmp_path / "q.tsv")
