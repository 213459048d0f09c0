"""Exit codes that mean one thing (#19): 0 ok, 1 only a regression, 2 bad input or environment (a path, a
permission, a full disk, a refused file), 3 an internal error with its traceback in a log the line names. Outputs
are checked before the long part, and a full disk leaves nothing that looks complete: each output is written on a
real tiny filesystem (a tmpfs mounted for the test; CI runs as root, elsewhere these tests skip)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus.errors import one_line, redact

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
REPO = Path(__file__).resolve().parent.parent


def bench(*args, cwd=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw)


def one_error_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr[-3000:])
    return lines[0]


@pytest.fixture
def tiny_fs(tmp_path):
    """Mount a tmpfs of `size` at a fresh folder; unmounted after the test."""
    mounted = []

    def mount(size: str, name: str = "tiny", options: str = "") -> Path:
        point = tmp_path / name
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(point)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, nt_corpus):
    """15 keyword queries judged in the NT, as external files."""
    d = tmp_path_factory.mktemp("set")
    verses = set(nt_corpus.ids)
    judged = [r for r in (REPO / "qrels/keyword/qrels.trec").read_text().splitlines(keepends=True)
              if r.split()[2] in verses]
    qids = list(dict.fromkeys(r.split()[0] for r in judged))[:15]
    lines = [q for q in (REPO / "qrels/keyword/queries.tsv").read_text().splitlines(keepends=True)
             if q.split("\t", 1)[0] in qids]
    (d / "q.tsv").write_text("".join(lines))
    (d / "q.trec").write_text("".join(r for r in judged if r.split()[0] in qids))
    return d / "q.tsv", d / "q.trec"


def run_args(small_set, *more):
    return ("run", "-r", "ilike", "--queries", small_set[0], "--qrels", small_set[1], *more)


# ---- the library's one-line messages -------------------------------------------------------------------------------

def test_messages_are_redacted_folded_and_cut():
    assert redact("x postgresql://me:s3cret@db/x y") == "x postgresql://me:***@db/x y"
    assert redact("host=db password=s3cret user=me") == "host=db password=*** user=me"
    line = one_line("a.tsv:1: bad query id " + repr("x" * 10_000_000) + "\nmore")
    assert len(line) <= 400 and "\n" not in line and line.startswith("a.tsv:1: bad query id")


def test_a_10_mb_field_gives_a_short_line(tmp_path, small_set):
    bad = tmp_path / "q.tsv"
    bad.write_text("kw 1" + "y" * 10_000_000 + "\ttext\n")
    r = bench("run", "-r", "ilike", "--queries", bad, "--qrels", small_set[1], "--out", tmp_path / "out")
    line = one_error_line(r)
    assert len(r.stderr) < 600 and "bad query id" in line


def test_a_byte_order_mark_is_not_part_of_the_first_query_id(tmp_path):
    from corpus.qsets import read_qrels, read_queries

    (tmp_path / "q.tsv").write_bytes("\ufeffkw-001\tlove\n".encode())
    (tmp_path / "q.trec").write_bytes("\ufeffkw-001 0 John.3.16 2\n".encode())
    assert list(read_queries(tmp_path / "q.tsv")) == ["kw-001"]
    assert list(read_qrels(tmp_path / "q.trec")) == ["kw-001"]


def test_an_empty_dsn_is_refused(tmp_path, small_set):
    line = one_error_line(bench(*run_args(small_set, "--dsn", "", "--out", tmp_path / "out")))
    assert "dsn is empty" in line and not (tmp_path / "out").exists()


def test_compare_refuses_a_report_with_a_string_for_a_score(tmp_path):
    rep = json.loads((REPO / "reports/baseline.json").read_text())
    s = next(iter(rep["results"]))
    r = next(iter(rep["results"][s]))
    rep["results"][s][r]["ndcg@10"] = "0.5"
    (tmp_path / "bad.json").write_text(json.dumps(rep))
    line = one_error_line(bench("compare", REPO / "reports/baseline.json", tmp_path / "bad.json", "--out",
                                tmp_path / "cmp"))
    assert f"results.{s}.{r}.ndcg@10 is '0.5', not a number" in line
    assert not (tmp_path / "cmp").exists()


def test_an_internal_error_is_exit_3_with_the_traceback_in_a_log(tmp_path, small_set):
    """A bug cannot be produced on purpose, so one is planted: the runner raises ZeroDivisionError."""
    code = ("from harness import runner\n"
            "def broken(*a, **k):\n    return 1 / 0\n"
            "runner.run_benchmark = broken\n"
            "from harness.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, *map(str, run_args(small_set, "--out", tmp_path / "o"))],
                       capture_output=True, text=True, timeout=300)
    line = one_error_line(r, 3)
    assert line.startswith("internal error (ZeroDivisionError: division by zero); traceback in ")
    log = Path(line.rsplit(" ", 1)[-1])
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()
    log.unlink()


@pytest.mark.slow
def test_the_interrupt_message_hides_the_password(tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen([*BENCH, "run", "-r", "bm25", "-r", "encoder", "-r", "ilike", "-s", "keyword", "--dsn",
                          "postgresql://me:s3cret@/nodb?host=/nonexistent", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(out.glob(".tmp-*/runs/keyword/bm25.trec")):
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 300
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "s3cret" not in err and "me:***@" in err, err


# ---- outputs: checked first, written whole or not at all ------------------------------------------------------------

def test_unwritable_outputs_are_refused_before_the_run(tmp_path, small_set, tiny_fs):
    ro = tiny_fs("1m", "ro", ",ro")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args in (("--out", ro / "runs"), ("--out", a_file), ("--out", a_file / "below"), ("--csv", ro / "csv"),
                 ("--out", tmp_path / "ok", "--csv", a_file)):
        t0 = time.time()
        line = one_error_line(bench(*run_args(small_set, *args)))
        assert time.time() - t0 < 30 and ("--out" in line or "--csv" in line), line
    gate = bench("gate", "--checkpoint", "minilm", "--summary", ro / "summary.md", "--verdict", tmp_path / "v.json")
    assert "--summary" in one_error_line(gate) and not (tmp_path / "v.json").exists()
    export = bench("export", "--checkpoint", "minilm", "--out", ro / "exported")
    assert "--out" in one_error_line(export)


def test_a_full_disk_under_run_out_leaves_no_report(tmp_path, small_set, tiny_fs):
    full = tiny_fs("8k")
    line = one_error_line(bench(*run_args(small_set, "--out", full / "runs")))
    assert "No space left on device" in line
    assert not list(full.rglob("report.json")) and not list(full.glob("runs/.tmp-*"))


def test_a_full_disk_under_csv_leaves_no_half_set_of_frames(tmp_path, small_set, tiny_fs):
    full = tiny_fs("8k")
    line = one_error_line(bench(*run_args(small_set, "--out", tmp_path / "runs", "--csv", full / "csv")))
    assert "No space left on device" in line
    assert not list(full.rglob("*.csv")) and not list(full.rglob("*.parquet"))


def test_a_full_disk_under_compare_out_leaves_no_compare_md(tmp_path, small_set, tiny_fs):
    for name in ("a", "b"):
        ok = bench(*run_args(small_set, "--out", tmp_path / name))
        assert ok.returncode == 0, ok.stderr
    reports = [next((tmp_path / name).glob("*/report.json")) for name in ("a", "b")]
    full = tiny_fs("16k")
    line = one_error_line(bench("compare", *reports, "--out", full / "cmp"))
    assert "No space left on device" in line
    assert not list(full.rglob("compare.md")) and not list(full.rglob("*.png"))
    fine = bench("compare", *reports, "--out", tmp_path / "cmp")
    assert fine.returncode == 0 and (tmp_path / "cmp" / "compare.md").is_file(), fine.stderr


def test_a_full_disk_under_export_leaves_nothing_and_a_rerun_works(tmp_path, tiny_fs):
    full = tiny_fs("1m")
    line = one_error_line(bench("export", "--checkpoint", "minilm", "--out", full / "exported"))
    assert "No space left on device" in line
    assert list(full.iterdir()) == []
    os.umask(old := os.umask(0o022))
    again = bench("export", "--checkpoint", "minilm", "--out", tmp_path / "exported")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "exported" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~old  # the umask's


@pytest.mark.slow
def test_a_full_disk_under_the_verdict_leaves_no_verdict(tmp_path, tiny_fs):
    full = tiny_fs("8k")
    r = bench("gate", "--checkpoint", "minilm", "-s", "keyword", "--verdict", full / "verdict.json", "--summary",
              full / "summary.md")
    assert "No space left on device" in one_error_line(r)
    assert not (full / "verdict.json").exists() and not (full / "summary.md").exists()


def test_cache_folders_honour_the_umask(tmp_path, nt_corpus):
    from corpus.bible import Corpus
    from retrievers.bm25 import ensure_index

    small = Corpus("web", "nt", nt_corpus.ids[:50], nt_corpus.texts[:50], {**nt_corpus.manifest, "id": "umask-50"})
    old = os.umask(0o022)
    try:
        folder = ensure_index(small, tmp_path)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "manifest.json").stat().st_mode & 0o777 == 0o644
