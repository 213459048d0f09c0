"""Kendall's tau between sets' system orders, checked by hand and against scipy where it is installed."""

import pytest

from harness.agreement import kendall_tau, table


def test_tau_by_hand():
    a = {"x": 0.1, "y": 0.2, "z": 0.3, "w": 0.4}
    assert kendall_tau(a, a) == 1.0
    assert kendall_tau(a, {k: -v for k, v in a.items()}) == -1.0
    # one swapped pair of six: (5 - 1) / 6
    assert kendall_tau(a, {"x": 0.1, "y": 0.2, "z": 0.4, "w": 0.3}) == pytest.approx(4 / 6)
    assert kendall_tau({"x": 1, "y": 2}, {"x": 1, "y": 2}) is None  # too few systems to rank


def test_tau_b_with_ties_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    a = {"p": 0.3, "q": 0.3, "r": 0.5, "s": 0.1, "t": 0.9}
    b = {"p": 0.2, "q": 0.6, "r": 0.6, "s": 0.1, "t": 0.4}
    names = sorted(a)
    want = stats.kendalltau([a[n] for n in names], [b[n] for n in names]).statistic
    assert kendall_tau(a, b) == pytest.approx(want)


def test_table_is_symmetric_over_every_pair():
    results = {"s1": {"a": {"ndcg@10": 0.1}, "b": {"ndcg@10": 0.2}, "c": {"ndcg@10": 0.3}},
               "s2": {"a": {"ndcg@10": 0.3}, "b": {"ndcg@10": 0.2}, "c": {"ndcg@10": 0.1}}}
    t = table(results)
    assert t["s1"]["s2"] == t["s2"]["s1"] == -1.0 and t["s1"]["s1"] == 1.0


def test_bench_agreement_on_a_committed_comparison(tmp_path):
    from corpus.paths import REPO
    from tests.test_cli import assert_one_line_error, bench

    p = bench("agreement", str(REPO / "reports" / "hybrid" / "compare.json"), "--json", "--out", str(tmp_path / "a.md"))
    assert p.returncode == 0, p.stderr[-2000:]
    got = __import__("json").loads(p.stdout)
    assert len(got["systems"]) >= 3 and got["tau"]["keyword"]["keyword"] == 1.0
    assert all(-1.0 <= v <= 1.0 for row in got["tau"].values() for v in row.values() if v is not None)
    assert "Kendall" in (tmp_path / "a.md").read_text()
    assert_one_line_error(bench("agreement", str(REPO / "reports" / "baseline.json")), "three or more retrievers")
