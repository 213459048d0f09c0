"""Query tags and pooled judgments: judged@10 and the by-tag breakdown by hand, then through `bench run` on a small
real tagged set (report, markdown and frames)."""

import json

import pytest

from harness import frames
from harness import metrics as M
from tests.test_cli import bench


def test_judged_at_counts_any_grade_and_missing_places():
    qrels = {"a": {"d1": 1, "d2": 0}, "b": {"d1": 2}}
    run = {"a": {"d2": 3.0, "x": 2.5, "d1": 2.0, "y": 1.0}, "b": {"z": 1.0}}
    means, per = M.judged_at(run, qrels, k=4)
    assert per["judged@4"] == {"a": 0.5, "b": 0.75}  # a: d2, d1 of 4; b: z unjudged, 3 empty places count judged
    assert means["judged@4"] == pytest.approx(0.625)


def test_by_tag_means_and_paired_tests_use_only_the_tags_queries():
    pq = {"x": {"ndcg@10": {"q1": 1.0, "q2": 0.0, "q3": 0.5, "q4": 0.7}},
          "y": {"ndcg@10": {"q1": 0.0, "q2": 0.0, "q3": 0.5, "q4": 0.3}}}
    out = M.by_tag({"q1": "question", "q2": "question", "q3": "episode", "q4": "episode"}, pq)
    assert out["question"]["qids"] == ["q1", "q2"] and out["question"]["results"]["x"]["ndcg@10"] == 0.5
    assert out["episode"]["results"]["y"]["ndcg@10"] == pytest.approx(0.4)
    p = out["question"]["significance"]["ndcg@10"]["x"]["y"]
    assert p == M.paired_p({"q1": 1.0, "q2": 0.0}, {"q1": 0.0, "q2": 0.0})


@pytest.mark.slow
def test_bench_run_breaks_a_tagged_pooled_set_down_by_tag(tmp_path):
    q, r = tmp_path / "natural.tsv", tmp_path / "qrels.trec"
    q.write_text("n1\tjesus feeds thousands with a few loaves\tepisode\n"
                 "n2\tthe light of the world\tparaphrase\n"
                 "n3\twhat happens when we die\tquestion\n")
    r.write_text("n1 0 John.6.11 2\nn1 0 Mark.6.41 2\nn1 0 John.6.1 0\n"
                 "n2 0 John.8.12 2\nn2 0 Matt.5.14 1\nn2 0 John.1.1 0\n"
                 "n3 0 John.11.25 2\nn3 0 Phil.1.23 1\n")
    p = bench("run", "-r", "bm25", "-r", "ilike", "--queries", str(q), "--qrels", str(r),
              "--out", str(tmp_path / "runs"), "--csv", str(tmp_path / "frames"))
    assert p.returncode == 0, p.stderr[-2000:]
    folder = next((tmp_path / "runs").iterdir())
    rep = json.loads((folder / "report.json").read_text())
    res = rep["results"]["natural"]
    assert 0.0 <= res["bm25"]["judged@10"] <= 1.0  # the qrels record 0 grades: judged by pooling
    tags = rep["by_tag"]["natural"]
    assert set(tags) == {"episode", "paraphrase", "question"} and tags["episode"]["qids"] == ["n1"]
    assert tags["episode"]["results"]["bm25"]["ndcg@10"] == rep["per_query"]["natural"]["bm25"]["ndcg@10"]["n1"]
    assert "by query tag" in (folder / "report.md").read_text()
    tidy = frames.tidy(folder)
    assert set(tidy.tag) == {"all", "episode", "paraphrase", "question"}
    pq = frames.per_query(folder)
    assert dict(zip(pq.qid, pq.tag)) == {"n1": "episode", "n2": "paraphrase", "n3": "question"}
