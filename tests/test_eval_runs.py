"""`bench eval` scores TREC runs made elsewhere exactly as `bench run` scores its own retrievers (it replaced
scripts/eval_runs.py): a run file written by `bench run` scores the same; verse ids written as references ("Jn 3:16",
"1 Cor 13:4") read as OSIS ids; every unknown id is named in one error line, exit 2."""

import json
from pathlib import Path

import pytest

from corpus.books import parse_ref
from corpus.errors import BadInput
from corpus.paths import REPO
from harness.report import Report
from harness.runfiles import evaluate_run_files
from harness.runner import RunConfig, run_benchmark
from tests.test_cli import assert_one_line_error, bench

SPOKEN = {"Matt": "Mt", "Mark": "Mk", "Luke": "Lk", "John": "Jn", "1Cor": "1 Cor", "Rom": "Romans", "1John": "I John",
          "Heb": "Hebrews", "Rev": "Rev"}


@pytest.fixture(scope="module")
def made(home, tmp_path_factory):
    """A real run folder: bm25 and ilike on the distractor set."""
    out = tmp_path_factory.mktemp("runs")
    return run_benchmark(RunConfig(retrievers=("bm25", "ilike"), sets=("distractor",), out_root=out), home=home)


def as_references(src: Path, dst: Path, tag: str) -> Path:
    """The run with every OSIS id written as people write references (`Jn 6:48`, `1 Cor 13:4`), under another tag."""
    lines = []
    for line in src.read_text().splitlines():
        qid, q0, docid, rank, score, _ = line.split()
        book, chapter, verse = docid.split(".")
        lines.append(f"{qid} {q0} {SPOKEN.get(book, book)} {chapter}:{verse} {rank} {score} {tag}")
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_a_run_file_written_by_bench_run_scores_the_same(home, made, tmp_path):
    report, folder = made
    runs = folder / "runs" / "distractor"
    got, out = evaluate_run_files([runs / "bm25.trec", runs / "ilike.trec"], RunConfig((), sets=("distractor",),
                                  out_root=tmp_path), home=home)
    for r in ("bm25", "ilike"):  # labelled by their tags
        assert got.results["distractor"][r] == pytest.approx(report.results["distractor"][r], abs=1e-12)
        assert got.per_query["distractor"][r] == report.per_query["distractor"][r]
    assert got.significance == report.significance
    assert "distractor@10" in got.results["distractor"]["bm25"]  # the distractor metrics too
    assert Report.load(out).to_dict() == json.loads(got.to_json())
    # the run as scored is kept beside the report, as bench run keeps it
    assert (out / "runs" / "distractor" / "bm25.trec").read_text() == (runs / "bm25.trec").read_text()


def test_reference_style_ids_normalise(home, made, tmp_path):
    report, folder = made
    spoken = as_references(folder / "runs" / "distractor" / "bm25.trec", tmp_path / "spoken.trec", "my-bm25")
    assert "Jn 6:48" in spoken.read_text()
    got, _ = evaluate_run_files([spoken], RunConfig((), sets=("distractor",), out_root=tmp_path), home=home)
    assert got.results["distractor"]["my-bm25"] == pytest.approx(report.results["distractor"]["bm25"], abs=1e-12)


@pytest.mark.parametrize("ref,osis", [("Jn 3:16", "John.3.16"), ("1 Cor 13:4", "1Cor.13.4"), ("I John 4:8", "1John.4.8"),
                                      ("First Corinthians 13:4", "1Cor.13.4"), ("2nd Tim 3:16", "2Tim.3.16"),
                                      ("Mk 1:1", "Mark.1.1"), ("Is 40:31", "Isa.40.31"), ("Phlm 1:6", "Phlm.1.6"),
                                      ("Song of Songs 2:1", "Song.2.1"), ("Rv 22:21", "Rev.22.21")])
def test_common_abbreviations_read_as_osis(ref, osis):
    assert parse_ref(ref) == osis


def test_no_listed_abbreviation_names_two_books():
    from corpus.books import _NAMES

    seen = {}
    for book, names in _NAMES.items():
        for name in (book.lower(), *names.split()):
            assert seen.setdefault(name, book) == book, (name, seen[name], book)


def test_unknown_ids_are_one_error_line_and_exit_2(tmp_path):
    run = tmp_path / "mine.trec"
    run.write_text("ds-001 Q0 John.3.16 1 3.0 mine\n"
                   "ds-001 Q0 Gen 1:1 2 2.0 mine\n"  # the Old Testament: not in the New Testament corpus
                   "ds-001 Q0 Hezekiah 3:4 3 1.5 mine\n"  # no such book
                   "ds-002 Q0 John.3.99 1 1.0 mine\n")  # no such verse
    p = bench("eval", str(run), "-s", "distractor", "--out", str(tmp_path / "out"))
    assert_one_line_error(p, "3 verse id(s) are not verses of corpus web-nt", "mine.trec: 'Gen 1:1', 'Hezekiah 3:4', "
                          "'John.3.99'")
    assert not (tmp_path / "out").exists()


def test_runs_need_one_set_that_they_answer(home, made, tmp_path):
    runs = made[1] / "runs" / "distractor"
    for cfg in (RunConfig(()), RunConfig((), sets=("distractor", "keyword"))):
        with pytest.raises(BadInput, match="one set"):
            evaluate_run_files([runs / "bm25.trec"], cfg, home=home)
    with pytest.raises(BadInput, match="none of its queries is a query of set thematic-curated"):
        evaluate_run_files([runs / "bm25.trec"], RunConfig((), sets=("thematic-curated",), out_root=tmp_path),
                           home=home)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_eval_on_an_external_set_with_frames(made, tmp_path):
    report, folder = made
    q, r = tmp_path / "q.tsv", tmp_path / "r.trec"
    q.write_text("ds-001\tbread of life\nds-002\tthe light of the world\n")
    judged = (REPO / "qrels" / "distractor" / "qrels.trec").read_text().splitlines()
    r.write_text("".join(line + "\n" for line in judged if line.split()[0] in ("ds-001", "ds-002")))
    p = bench("eval", str(folder / "runs" / "distractor" / "bm25.trec"), "--queries", str(q), "--qrels", str(r),
              "--out", str(tmp_path / "out"), "--csv", str(tmp_path / "csv"), "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert set(got["results"]) == {"q"} and set(got["per_query"]["q"]["bm25"]["ndcg@10"]) == {"ds-001", "ds-002"}
    for qid in ("ds-001", "ds-002"):
        assert got["per_query"]["q"]["bm25"]["ndcg@10"][qid] == report.per_query["distractor"]["bm25"]["ndcg@10"][qid]
    assert (tmp_path / "csv" / "summary.csv").is_file() and (tmp_path / "csv" / "per_query.csv").is_file()
    assert_one_line_error(bench("eval", str(r), "--out", str(tmp_path / "o2")), "-s SET")


def test_unwritable_csv_is_refused_before_anything_is_scored(made, tmp_path):
    """As `bench run` does: a --csv that is a file is one line, exit 2, and no report folder is left half-done."""
    report, folder = made
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    p = bench("eval", str(folder / "runs" / "distractor" / "bm25.trec"), "-s", "distractor",
              "--out", str(tmp_path / "out"), "--csv", str(a_file))
    assert_one_line_error(p, "--csv")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
