"""Clean committed metadata (issue 13, item 3): reports record paths relative to the repository, never the machine's
absolute or home paths; git's silence is explained."""

import json
import re
import subprocess

import pytest

from corpus.paths import REPO
from harness import report as R
from harness.runner import RunConfig

# An absolute POSIX path with at least two parts (/home/x, /tmp/y), a home path (~/x), or a Windows drive path.
ABSOLUTE = re.compile(r"""(?<![\w.:/~-])(/(?:home|root|tmp|work|Users|var|opt|usr|mnt|srv)/|~/|[A-Za-z]:\\)""")


def committed_reports() -> list:
    # the shipped models' config and manifest too: a checkpoint started from the installed MiniLM said where it lay
    out = subprocess.run(["git", "ls-files", "reports", "models"], cwd=REPO, capture_output=True, text=True,
                         check=True)
    files = [REPO / f for f in out.stdout.split() if f.endswith((".json", ".md", ".jsonl")) and (REPO / f).is_file()]
    assert files, "no committed reports found"
    return files


def test_no_committed_report_holds_an_absolute_path():
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}"
             for path in committed_reports()
             for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if ABSOLUTE.search(line)]
    assert found == []


def test_the_scanner_sees_absolute_paths():
    assert ABSOLUTE.search('"out_root": "/work/main/reports/runs"')
    assert ABSOLUTE.search("checkpoint ~/models/x") and ABSOLUTE.search(r"C:\Users\me")
    assert not ABSOLUTE.search('"out_root": "reports/runs"') and not ABSOLUTE.search("https://example.org/home/x")


def test_reports_record_repository_relative_paths(nt_corpus, tmp_path):
    cfg = RunConfig(retrievers=("encoder",), out_root=REPO / "reports" / "runs",
                    options={"encoder": {"checkpoint": str(REPO / "models" / "versebench-small")}})
    configs = {"encoder": {"checkpoint": str(REPO / "models" / "versebench-small"), "cache": str(tmp_path)}}
    meta = R.new_meta(nt_corpus, cfg, configs, {}, [])
    assert meta["run"]["out_root"] == "reports/runs"
    assert meta["run"]["options"]["encoder"]["checkpoint"] == "models/versebench-small"
    assert meta["retrievers"]["encoder"]["checkpoint"] == "models/versebench-small"
    assert meta["retrievers"]["encoder"]["cache"] == f"(outside the repository)/{tmp_path.name}"
    assert not ABSOLUTE.search(json.dumps(meta))


def test_without_git_the_report_says_why_commit_is_null(tmp_path, monkeypatch):
    state = R.git_commit(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and "not a git repository" in state["why"]
    monkeypatch.setenv("PATH", str(tmp_path))
    state = R.git_commit()
    assert state == {"commit": None, "dirty": None, "why": "git is not on PATH"}
    meta = {"corpus": {"id": "c", "verses": 1}, "run": {"k": 10, "stat_test": "student"}, "versebench": "0",
            "git": state, "date": "d", "sets": {}}
    assert "at an unknown commit (git is not on PATH)" in R.Report(meta, {}).to_markdown()


def git_repo(path, dirty: bool):
    """A new git work tree at `path` with one commit; `dirty`: a tracked file changed since."""
    path.mkdir()
    run = lambda *a: subprocess.run(["git", *a], cwd=path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (path / "f").write_text("1")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    if dirty:
        (path / "f").write_text("2")
    return path


@pytest.mark.parametrize("dirty", [False, True])
def test_git_state_of_a_work_tree(tmp_path, dirty):
    state = R.git_commit(git_repo(tmp_path / "repo", dirty))
    assert len(state["commit"]) == 40 and state["dirty"] is dirty
