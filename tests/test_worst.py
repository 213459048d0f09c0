"""What got worse: the queries listed are exactly the ones that fell most (checked against the report and the TREC run
files), `bench compare --worst` and the gate show them, the gate's Markdown summary, scatter PNGs and bar-chart
confidence intervals."""

import json

import pytest

from corpus.paths import REPO
from corpus.qsets import load_set, read_run
from harness import compare as C
from harness import gate as G
from harness import worst as W
from harness.plots import bootstrap_ci
from harness.report import Report
from harness.runner import RunConfig, run_benchmark
from retrievers.encoder import DEFAULT_CHECKPOINT
from tests.test_cli import assert_one_line_error, bench
from tests.test_gate import damaged_copy

BASELINE = REPO / "reports" / "baseline.json"


@pytest.fixture(scope="module")
def folders(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    both = run_benchmark(RunConfig(retrievers=("ilike", "bm25"), sets=("distractor",), out_root=out / "both"),
                         home=home)[1]
    bm25 = run_benchmark(RunConfig(retrievers=("bm25",), sets=("distractor",), out_root=out / "bm25"), home=home)[1]
    return both, bm25


def test_drops_know_which_way_is_worse():
    a, b = {"q1": 0.5, "q2": 0.2, "q3": 0.9}, {"q1": 0.1, "q2": 0.6, "q3": 0.9}
    assert W.drops(a, b, "ndcg@10") == [("q1", 0.5, 0.1, pytest.approx(0.4))]
    # distractor@10: lower is better, so going from 0.2 to 0.6 is the drop
    assert W.drops(a, b, "distractor@10") == [("q2", 0.2, 0.6, pytest.approx(0.4))]


def test_worst_queries_are_the_report_and_run_files(home, folders):
    both, _ = folders
    rep = C.load(both)
    (a, b), = W.pairs([(both, rep)], ("ilike", "bm25"))
    assert (a.retriever, b.retriever) == ("ilike", "bm25")
    v = W.view(a, b, "distractor", "recall@100", 4, home=home)
    pa, pb = (rep.values("distractor", r, "recall@100") for r in ("ilike", "bm25"))
    fell = sorted(((pa[q] - pb[q], q) for q in pa if pb[q] < pa[q]), key=lambda t: (-t[0], t[1]))
    assert v["queries_worse"] == len(fell) > 0
    assert [q["qid"] for q in v["worst"]] == [q for _, q in fell[:4]]
    qs = load_set("distractor", "nt")
    runs = {r: read_run(both / "runs" / "distractor" / f"{r}.trec") for r in ("ilike", "bm25")}
    for q in v["worst"]:
        assert q["query"] == qs.queries[q["qid"]]
        assert {r["docid"] for r in q["relevant"]} == {d for d, rel in qs.qrels[q["qid"]].items() if rel > 0}
        # the relevant verses' ranks reproduce each side's recall@100
        assert sum(r["rank_a"] is not None for r in q["relevant"]) / len(q["relevant"]) == pytest.approx(q["a"])
        assert sum(r["rank_b"] is not None for r in q["relevant"]) / len(q["relevant"]) == pytest.approx(q["b"])
        for side, r in (("top_a", "ilike"), ("top_b", "bm25")):
            docs = runs[r][q["qid"]]
            assert [h["docid"] for h in q[side]] == sorted(docs, key=lambda d: -docs[d])[:3]
            assert [h["rank"] for h in q[side]] == [1, 2, 3]


def test_same_rows_have_nothing_worse(home, folders):
    both, bm25 = folders
    (a, b), = W.pairs([(both, C.load(both)), (bm25, C.load(bm25))])  # bm25 is the one row they share
    v = W.view(a, b, "distractor", "ndcg@10", 5, home=home)
    assert a.retriever == b.retriever == "bm25" and v["queries_worse"] == 0 and v["worst"] == []


def test_bench_compare_worst(folders, tmp_path):
    both, _ = folders
    p = bench("compare", str(both), "-r", "bm25", "-r", "ilike", "--worst", "2", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr[-2000:]
    view = json.loads((tmp_path / "worst.json").read_text())[0]
    assert view["a"].startswith("bm25") and len(view["worst"]) == 2
    md = (tmp_path / "worst.md").read_text()
    assert view["worst"][0]["query"] in p.stdout and "What got worse" in md
    assert "Relevant (rank under A, B;" in md  # was lower-cased to "a, b" by str.capitalize
    assert (tmp_path / "scatter-distractor-bm25-vs-ilike.png").read_bytes()[:4] == b"\x89PNG"


def test_worst_needs_two_sides(folders, tmp_path):
    both, bm25 = folders
    assert_one_line_error(bench("compare", str(both), str(bm25), str(BASELINE), "--worst", "3",
                                "--out", str(tmp_path)), "--worst compares two sides")
    assert_one_line_error(bench("compare", str(both), "-r", "ilike", "--worst", "3", "--out", str(tmp_path)),
                          "pick two with -r")
    assert_one_line_error(bench("compare", str(both), "--worst", "0", "--out", str(tmp_path)), "--worst")


def test_bootstrap_interval_is_seeded_and_holds_the_mean():
    values = [0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75] * 6
    lo, hi = bootstrap_ci(values)
    assert (lo, hi) == bootstrap_ci(values)  # the same report always draws the same bars
    assert lo < sum(values) / len(values) < hi
    assert bootstrap_ci([0.4] * 30) == pytest.approx((0.4, 0.4))
    assert hi - lo > (lambda l, h: h - l)(*bootstrap_ci(values * 10))  # more queries, a narrower interval


def test_summary_of_a_passing_gate():
    base = G.read_baseline(BASELINE)
    rows = G.compare(base, base, 0.01, 0.05, "student")  # the baseline against itself: nothing moved
    v = G.Verdict(passed=True, candidate="models/versebench-small", candidate_sha256="ab" * 32, baseline="b.json",
                  baseline_sha256="ab" * 32, tolerance=0.01, alpha=0.05, stat_test="student", rows=tuple(rows))
    md = W.gate_summary(v.to_dict())
    assert md.startswith("# versebench gate: PASS") and "What got worse" not in md
    # every gate set x encoder, hybrid x ndcg@10, recall@100
    assert md.count("| unchanged |") == len(rows) == len(G.GATE_SETS) * len(G.GATE_RETRIEVERS) * len(G.GATE_METRICS)


@pytest.mark.slow
def test_failing_gate_shows_what_fell(tmp_path):
    bad = damaged_copy(tmp_path, "shuffled")
    p = bench("gate", "--checkpoint", str(bad), "-s", "distractor", "--verdict", str(tmp_path / "v.json"),
              "--summary", str(tmp_path / "summary.md"))
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    v = G.Verdict.from_dict(json.loads((tmp_path / "v.json").read_text()))
    assert set(v.worst) == set(v.failed) and "distractor/encoder/recall@100" in v.failed
    base = json.loads(BASELINE.read_text())["per_query"]["distractor"]["encoder"]["recall@100"]
    for q in v.worst["distractor/encoder/recall@100"]["worst"]:
        assert q["a"] == base[q["qid"]] and q["b"] < q["a"] and q["query"] in p.stdout
        # the baseline keeps no run files; its ranking, searched again, reproduces its recorded recall@100
        assert q["top_a"] is not None
        assert sum(r["rank_a"] is not None for r in q["relevant"]) / len(q["relevant"]) == pytest.approx(q["a"])
    assert all(len(view["worst"]) == 5 for view in v.worst.values())
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# versebench gate: FAIL") and "## What got worse" in md and "**worse**" in md


def test_gate_searches_the_baseline_again_only_with_its_own_checkpoint(home, tmp_path):
    base = G.read_baseline(BASELINE)
    ranked = W.search_again(base, "encoder", "distractor", ["ds-001"], home=home)
    assert list(ranked) == ["ds-001"] and len(ranked["ds-001"]) == base.meta["run"]["k"]
    other = Report.from_dict(json.loads(base.to_json()))
    other.meta["checkpoint_sha256"]["encoder"] = "0" * 64  # made with another checkpoint than the one committed
    assert W.search_again(other, "encoder", "distractor", ["ds-001"], home=home) is None
    assert DEFAULT_CHECKPOINT.is_dir()


def test_the_gate_table_names_the_baseline_relative_to_the_repository(capsys, monkeypatch):
    from rich.console import Console

    from harness.cli import render

    monkeypatch.setenv("COLUMNS", "200")
    base = G.read_baseline(BASELINE)
    v = G.Verdict(passed=True, candidate="models/versebench-base", candidate_sha256="ab" * 32,
                  baseline="reports/baseline.json", baseline_sha256="ab" * 32, tolerance=0.01, alpha=0.05,
                  stat_test="student", rows=tuple(G.compare(base, base, 0.01, 0.05, "student")), seconds=1.0)
    render.verdict(v, "models/versebench-base", BASELINE, "v.json", Console())
    out = capsys.readouterr().out
    assert "vs reports/baseline.json" in out and str(REPO) not in out.split("\n")[0]
