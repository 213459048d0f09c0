"""The generated query sets: query-text rules, the by-topic split, and that the builders are deterministic and match
what is committed under qrels/."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from corpus import qrels_build as qb
from corpus.books import NT_BOOKS
from harness.cli import app
from corpus.errors import BadInput
from corpus.paths import REPO
from corpus.qsets import QRELS_DIR, read_qrels, read_queries

THEMATIC_FILES = ["thematic-dev/queries.tsv", "thematic-dev/qrels.trec", "thematic-dev/set.json",
                  "thematic-dev/README.md", "thematic-test/queries.tsv", "thematic-test/qrels.trec",
                  "thematic-test/set.json", "thematic-test/README.md", "thematic-topics.json"]
XLATE_FILES = ["keyword-xlate/queries.tsv", "keyword-xlate/qrels.trec", "keyword-xlate/set.json",
               "keyword-xlate/README.md"]


@pytest.fixture(scope="module")
def thematic(home):
    return qb.thematic_files(home=home)


@pytest.fixture(scope="module")
def xlate(home):
    return qb.keyword_xlate_files(home=home)


def test_query_text_rules():
    assert qb.query_text("FAITH", ("INSTANCES OF", "Noah, in building the ark")) == "faith noah in building the ark"
    assert qb.query_text("FAITH", ("JUSTIFICATION BY",)) == "faith justification by"
    assert qb.query_text("ANGEL (A SPIRIT)", ("See FAITH",)) == "angel"
    assert qb.query_text("TEMPLE", ("HEROD THE GREAT' S TEMPLE",)) == "temple herod the great's temple"
    assert qb.query_text("JUDAS (JUDE)", ("Surnamed \u201cIscariot;\u201d", "Prophecies concerning; with")) == \
        "judas surnamed iscariot prophecies concerning"
    assert qb.query_text("LOVE", ("INSTANCES OF LOVE FOR JESUS",)) == "love for jesus"  # "love love" once
    assert qb.query_text("THEFT AND THIEVES", ("General scriptures concerning",)) == "theft and thieves"


def test_split_is_deterministic_and_by_head_word():
    assert qb.split_of("FAITH") == qb.split_of("FAITH IN CHRIST") == qb.split_of("FAITH, TRIAL OF")
    assert qb.split_of("CONVICTION OF SIN") == qb.split_of("CONVICTION, OF SIN")
    keys = [f"TOPIC{i}" for i in range(2000)]
    dev = sum(qb.split_of(k) == "dev" for k in keys)
    assert 0.25 < dev / len(keys) < 0.35
    assert [qb.split_of(k) for k in keys] == [qb.split_of(k) for k in keys]


def test_thematic_sets_are_sound(thematic):
    files, summary = thematic
    topics = json.loads(files["thematic-topics.json"])
    assert not set(topics["dev"]) & set(topics["test"])
    for split in ("dev", "test"):
        queries = dict(line.split("\t") for line in files[f"thematic-{split}/queries.tsv"].splitlines())
        assert 100 < len(queries) <= {"dev": qb.MAX_DEV, "test": qb.MAX_TEST}[split]
        assert len(set(queries.values())) == len(queries)  # no duplicate texts
        rel: dict[str, list[str]] = {}
        for line in files[f"thematic-{split}/qrels.trec"].splitlines():
            qid, _, docid, r = line.split()
            assert r == "1" and docid.split(".")[0] in NT_BOOKS
            rel.setdefault(qid, []).append(docid)
        assert set(rel) == set(queries)
        assert all(qb.MIN_VERSES <= len(d) <= qb.MAX_VERSES and len(set(d)) == len(d) for d in rel.values())
        for qid in queries:
            key = topics["queries"][qid]
            assert qb.split_of(key) == split and key in topics[split]
            assert qid.startswith(f"nave-{qb.topic_slug(key)}-")
    faith = dict(line.split("\t") for line in files["thematic-dev/queries.tsv"].splitlines()
                 + files["thematic-test/queries.tsv"].splitlines())
    assert "faith in christ the syrophoenician woman" in faith.values()


def test_thematic_qrels_match_nave(thematic):
    """One query checked end to end against the module text (FAITH, line 63):
    `<item>The Syrophoenician woman <ref osisRef="Matt.15.22-Matt.15.28">..; <ref osisRef="Mark.7.25-Mark.7.30">..`"""
    files, _ = thematic
    split = qb.split_of("FAITH")
    queries = read_queries_text(files[f"thematic-{split}/queries.tsv"])
    assert queries["nave-faith-63"] == "faith in christ the syrophoenician woman"
    docs = [line.split()[2] for line in files[f"thematic-{split}/qrels.trec"].splitlines()
            if line.startswith("nave-faith-63 ")]
    assert docs == [f"Matt.15.{v}" for v in range(22, 29)] + [f"Mark.7.{v}" for v in range(25, 31)]


def read_queries_text(text: str) -> dict[str, str]:
    return dict(line.split("\t") for line in text.splitlines())


def test_keyword_xlate_is_sound(home, xlate):
    from corpus.bible import load_corpus

    files, summary = xlate
    queries = read_queries_text(files["keyword-xlate/queries.tsv"])
    assert len(queries) >= 300
    books = {q.split("-", 2)[2].split(".")[0] for q in queries}
    assert books == set(NT_BOOKS)
    assert set(summary["by_translation"]) == set(qb.XLATE_TRANSLATIONS)
    qrels = [line.split() for line in files["keyword-xlate/qrels.trec"].splitlines()]
    assert [(q, d, r) for q, _, d, r in qrels] == [(q, q.split("-", 2)[2], "2") for q in queries]
    corpora = {t: load_corpus(t, "nt", home=home) for t in qb.XLATE_TRANSLATIONS}
    for qid, text in queries.items():
        _, t, docid = qid.split("-", 2)
        assert qb.SPAN_MIN <= len(text.split()) <= qb.SPAN_MAX, text
        assert text[0].isalnum() and text[-1].isalnum(), text
        assert qb._norm(text) in qb._norm(corpora[t].text(docid)), (qid, text)


@pytest.mark.slow
def test_builders_are_deterministic_and_committed_files_are_current(home, tmp_path, thematic, xlate):
    """Building twice gives identical bytes, and what is committed is what the builders make now."""
    again_t, _ = qb.thematic_files(home=home)
    again_x, _ = qb.keyword_xlate_files(home=home)
    assert again_t == thematic[0] and again_x == xlate[0]
    assert sorted(thematic[0]) == sorted(THEMATIC_FILES) and sorted(xlate[0]) == sorted(XLATE_FILES)
    for rel, text in {**thematic[0], **xlate[0]}.items():
        committed = QRELS_DIR / rel
        assert committed.is_file(), f"{rel} is not committed; run `bench qrels build`"
        assert committed.read_text("utf-8") == text, f"qrels/{rel} is stale; run `bench qrels build`"


def test_cli_build_writes_into_the_given_folder(tmp_path, xlate):
    result = CliRunner().invoke(app, ["qrels", "build", "keyword-xlate", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    for rel, text in xlate[0].items():
        assert (tmp_path / rel).read_text("utf-8") == text
    assert read_qrels(tmp_path / "keyword-xlate/qrels.trec") and read_queries(tmp_path / "keyword-xlate/queries.tsv")
    assert json.loads(result.stdout)["queries"] == len(read_queries(tmp_path / "keyword-xlate/queries.tsv"))


def test_cli_refuses_unknown_builder():
    out = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "qrels", "build", "nope"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and out.stderr.startswith("error: unknown generated set 'nope'")


def test_test_topic_keys(tmp_path):
    keys = qb.test_topic_keys()
    committed = json.loads((QRELS_DIR / qb.TOPICS_FILE).read_text("utf-8"))
    assert keys == frozenset(committed["test"]) and keys.isdisjoint(committed["dev"])
    test_qids = read_queries(QRELS_DIR / "thematic-test/queries.tsv")
    assert {committed["queries"][q] for q in test_qids} == keys
    with pytest.raises(BadInput, match="no such file"):
        qb.test_topic_keys(tmp_path)
