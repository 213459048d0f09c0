"""scripts/eval_runs.py scores TREC runs made elsewhere (the GPU session returns them) exactly as the runner scores
its own, and refuses runs over another corpus in one line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from corpus.paths import REPO
from harness.runner import RunConfig, run_benchmark
from tests.test_cli import assert_one_line_error

SETS = ("keyword", "distractor")


def eval_runs(runs, out, home):
    return subprocess.run([sys.executable, "scripts/eval_runs.py", str(runs), str(out)], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "VERSEBENCH_HOME": str(home)})


def test_scores_equal_the_runners(home, tmp_path):
    report, folder = run_benchmark(RunConfig(retrievers=("bm25",), sets=SETS, out_root=tmp_path / "runs"), home=home)
    ext = tmp_path / "ext" / "bm25"
    ext.mkdir(parents=True)
    for s in SETS:  # the GPU session's layout: <label>/<set>.trec
        shutil.copy(folder / "runs" / s / "bm25.trec", ext / f"{s}.trec")
    p = eval_runs(ext.parent, tmp_path / "out", home)
    assert p.returncode == 0, p.stderr
    got = json.loads((tmp_path / "out" / "report.json").read_text())
    for s in SETS:
        assert got["results"][s]["bm25"] == pytest.approx(report["results"][s]["bm25"], abs=1e-12)
        assert got["per_query"][s]["bm25"]["ndcg@10"] == pytest.approx(report["per_query"][s]["bm25"]["ndcg@10"])


def test_refuses_a_run_over_other_verses(home, tmp_path):
    ext = tmp_path / "ext" / "x"
    ext.mkdir(parents=True)
    (ext / "keyword.trec").write_text("kw-001 Q0 Gen.1.1 1 1.0 x\n")  # an Old Testament verse: not in the NT corpus
    assert_one_line_error(eval_runs(ext.parent, tmp_path / "out", home), "not verses of")
    assert not (tmp_path / "out").exists()
