"""The regression gate on the shipped checkpoint: it passes against its own baseline within float noise, a damaged copy
fails with exit 1 naming what fell, a baseline from another corpus is refused with exit 2, and verdicts round-trip.

The baseline was made on another machine: its numbers are compared within float noise (1e-3 on a mean), never for
bit-equality (a near-tie that swaps in the last bits on another CPU moved one ndcg@10 by 1e-4)."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from corpus.errors import BadInput
from harness import gate as G
from harness.report import Report
from corpus.paths import REPO
from retrievers.encoder import DEFAULT_CHECKPOINT
from tests.test_cli import assert_one_line_error, bench
from tests.test_reports_clean import git_repo

BASELINE = REPO / "reports" / "baseline.json"


def damaged_copy(tmp_path, how: str):
    """A loadable checkpoint whose weights are wrecked: shuffled token embeddings or re-initialised weights."""
    from corpus.paths import file_sha256

    dst = tmp_path / f"damaged-{how}"
    shutil.copytree(DEFAULT_CHECKPOINT, dst, ignore=shutil.ignore_patterns("trainer_state.pt"))
    w = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    for name, t in w.items():
        if how == "shuffled" and t.dim() == 2 and t.shape[0] > 1000:  # the token embedding (tied to the MLM head)
            w[name] = t[torch.randperm(t.shape[0], generator=g)].contiguous()
        elif how == "reinit" and t.dim() == 2:
            w[name] = (torch.randn(t.shape, generator=g) * 0.02).contiguous()
    save_file(w, dst / "model.safetensors")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["weights_sha256"] = file_sha256(dst / "model.safetensors")  # a deliberate change, not corruption
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def runs_in_repo() -> set:
    runs = REPO / "reports" / "runs"
    return set(runs.iterdir()) if runs.is_dir() else set()


@pytest.mark.slow
def test_shipped_checkpoint_passes_its_own_baseline_within_float_noise(home, tmp_path):
    verdict_path = tmp_path / "verdict.json"
    before = runs_in_repo()
    v = G.run(DEFAULT_CHECKPOINT, verdict_path=verdict_path, home=home)  # in process: the gate is a library function
    assert runs_in_repo() == before  # with --verdict elsewhere, the run folder goes there too, not into reports/runs
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [Path(v.meta["run_folder"]).name]
    assert G.Verdict.from_dict(json.loads(verdict_path.read_text())) == v
    assert v.passed and not v.failed and v.baseline == "reports/baseline.json"  # the repository's, whatever the CWD
    assert v.candidate == DEFAULT_CHECKPOINT.relative_to(REPO).as_posix()
    assert {r.set for r in v.rows} == set(G.GATE_SETS)
    assert all(abs(r.delta) <= 1e-3 and r.status == "unchanged" for r in v.rows), [(r.set, r.metric, r.delta)
                                                                           for r in v.rows if abs(r.delta) > 1e-3]
    # round trip: what was written reads back to the same verdict
    assert G.Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v


@pytest.mark.slow
def test_damaged_checkpoint_fails_and_names_the_metrics(tmp_path):
    bad = damaged_copy(tmp_path, "shuffled")
    p = bench("gate", "--checkpoint", str(bad), "-s", "keyword-xlate", "-s", "thematic-curated",
              "--verdict", str(tmp_path / "v.json"))
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "gate failed" in p.stderr and "keyword-xlate/encoder/ndcg@10" in p.stderr
    v = G.Verdict.from_dict(json.loads((tmp_path / "v.json").read_text()))
    assert not v.passed and "keyword-xlate/encoder/ndcg@10" in v.failed


def test_baseline_from_another_corpus_is_refused(tmp_path):
    base = json.loads(BASELINE.read_text())
    base["meta"]["corpus"]["id"] = "kjv-nt-000000000000"
    other = tmp_path / "baseline.json"
    other.write_text(json.dumps(base))
    p = bench("gate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--baseline", str(other), "-s", "distractor")
    assert_one_line_error(p, "kjv-nt-000000000000")


def test_baseline_from_another_set_version_is_refused(tmp_path):
    base = json.loads(BASELINE.read_text())
    base["meta"]["sets"]["distractor"]["version"] = "0123456789ab"
    other = tmp_path / "baseline.json"
    other.write_text(json.dumps(base))
    p = bench("gate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--baseline", str(other), "-s", "distractor")
    assert_one_line_error(p, "version")


def test_unreadable_checkpoint_and_bad_baseline_are_bad_input(tmp_path):
    assert_one_line_error(bench("gate", "--checkpoint", str(tmp_path / "nope")), "no such checkpoint")
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_CHECKPOINT, broken, ignore=shutil.ignore_patterns("trainer_state.pt"))
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(bench("gate", "--checkpoint", str(broken), "-s", "distractor"), "model.safetensors")
    (tmp_path / "b.json").write_text("{")
    assert_one_line_error(bench("gate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--baseline",
                                str(tmp_path / "b.json")), "b.json")


def test_update_baseline_refuses_a_dirty_work_tree_before_evaluating(home, tmp_path):
    dirty = git_repo(tmp_path / "repo", dirty=True)
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="refuses a dirty work tree.*--allow-dirty"):
        G.run(DEFAULT_CHECKPOINT, baseline=tmp_path / "b.json", update_baseline=True, repo=dirty, home=home)
    with pytest.raises(BadInput, match="cannot tell whether the work tree is clean.*--allow-dirty"):
        G.run(DEFAULT_CHECKPOINT, baseline=tmp_path / "b.json", update_baseline=True, repo=tmp_path, home=home)
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "b.json").exists()  # refused before any evaluation
    G.refuse_dirty(git_repo(tmp_path / "clean", dirty=False))  # a clean one passes


def test_a_baseline_written_with_allow_dirty_says_so():
    report = Report.load(BASELINE)
    assert G.to_baseline(report, DEFAULT_CHECKPOINT).meta["gate"].get("allow_dirty") is None
    meta = G.to_baseline(report, DEFAULT_CHECKPOINT, allow_dirty=True).meta["gate"]
    assert meta["allow_dirty"] is True and meta["checkpoint"] == DEFAULT_CHECKPOINT.relative_to(REPO).as_posix()


def test_classify_needs_both_size_and_significance():
    assert G.classify(-0.05, 0.001, 0.01, 0.05) == "worse"
    assert G.classify(-0.05, 0.2, 0.01, 0.05) == "unchanged"  # large but noisy
    assert G.classify(-0.005, 0.001, 0.01, 0.05) == "unchanged"  # real but within tolerance
    assert G.classify(0.05, 0.001, 0.01, 0.05) == "better"
