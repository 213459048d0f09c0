"""Retrievers from outside the package: the example plugin in examples/plugin/ runs through `bench run` by import path
and by its entry point (made installed for the test by a path entry and a generated *.dist-info, never by installing
into the shared environment), its options are checked like a built-in's, and an outside retriever that raises or
answers outside the contract is one line naming it and the query. The gate judges a plugin against a baseline made
from the same spec."""

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from retrievers import base
from tests.test_cli import assert_one_line_error

PLUGIN = REPO / "examples" / "plugin"
BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]

# Retrievers that break the contract, one way each; `-o bad_qid=...` picks the query the raising one fails on.
BAD_PLUGINS = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Opts:
    bad_qid: str = ""


class Bad:
    name = "bad"

    def __init__(self, corpus, how, options):
        self.ids, self.how, self.options = corpus.ids, how, options

    def search(self, queries, k):
        out = {}
        for qid in queries:
            if self.how == "raises" and qid == self.options.bad_qid:
                raise RuntimeError("the backend fell over")
            first, second = self.ids[0], self.ids[1]
            out[qid] = {"not_verses": {"John 3:16": 1.0}, "unsorted": {first: 1.0, second: 2.0},
                        "ties": {first: 1.0, second: 1.0}}.get(self.how, {first: 2.0, second: 1.0})
        return out


def raises(corpus, options: Opts, *, home, on_progress=None):
    return Bad(corpus, "raises", options)


def not_verses(corpus, options: Opts, *, home, on_progress=None):
    return Bad(corpus, "not_verses", options)


def unsorted(corpus, options: Opts, *, home, on_progress=None):
    return Bad(corpus, "unsorted", options)


def ties(corpus, options: Opts, *, home, on_progress=None):
    return Bad(corpus, "ties", options)


def fails_to_build(corpus, options: Opts, *, home, on_progress=None):
    raise OSError("cannot reach the index")


def wrong_signature(corpus):
    return None
'''


def fake_install(site: Path) -> None:
    """What `pip install examples/plugin` leaves for importlib.metadata to find: a *.dist-info with METADATA and the
    entry points of the plugin's own pyproject.toml (so the test runs the entry point the example ships)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text("utf-8"))["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, eps in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {target}" for name, target in eps.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    fake_install(site)
    (site / "bad_plugins.py").write_text(BAD_PLUGINS)
    return site


def bench(site: Path, *args):
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(site), str(PLUGIN), str(REPO)])}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def run_json(site, tmp_path, *args) -> dict:
    p = bench(site, "run", *args, "-s", "keyword", "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


@pytest.fixture
def on_path(site, monkeypatch):
    """The example plugin and the fake installation importable in this process too."""
    for p in (str(PLUGIN), str(site)):
        monkeypatch.syspath_prepend(p)
    import importlib

    importlib.invalidate_caches()


def test_the_example_runs_by_import_path_and_by_entry_point(site, tmp_path):
    by_path = run_json(site, tmp_path, "-r", "verse_overlap:make")
    by_name = run_json(site, tmp_path, "-r", "overlap")
    a = by_path["results"]["keyword"]["verse_overlap:make"]
    b = by_name["results"]["keyword"]["overlap"]
    assert a == b and a["ndcg@10"] > 0.5  # a real lexical retriever, not a stub
    assert by_name["meta"]["retrievers"]["overlap"] == {
        "name": "overlap", "idf": True, "origin": "entry point verse_overlap:make of versebench-overlap 0.1.0"}
    assert by_path["meta"]["retrievers"]["verse_overlap:make"]["origin"] == "import path"


def test_entry_points_list_in_help_and_run_with_all(site):
    help_text = bench(site, "run", "--help").stdout
    said = " ".join(help_text.split()).replace("│ ", "")
    assert "hybrid, dense, sword, http, overlap, all, or package.module:factory" in said
    p = subprocess.run([sys.executable, "-c", "from harness.cli.specs import expand_retrievers as e; "
                        "print(','.join(e(['all'])))"], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(PLUGIN), str(REPO)])})
    assert p.stdout.split() == [",".join((*base.ALL, "overlap"))], p.stderr


def test_options_are_checked_like_a_builtins(site, tmp_path):
    plain = run_json(site, tmp_path, "-r", "verse_overlap:make", "-o", "idf=false")
    assert plain["meta"]["retrievers"]["verse_overlap:make"]["idf"] is False
    assert_one_line_error(bench(site, "run", "-r", "overlap", "-o", "idf=maybe", "-s", "keyword"),
                          "overlap: option idf='maybe' is not a valid bool")
    assert_one_line_error(bench(site, "run", "-r", "overlap", "-o", "colour=red", "-s", "keyword"),
                          "-o colour", "overlap takes idf")
    assert_one_line_error(bench(site, "run", "-r", "overlap", "-o", "bm25/k1=1", "-s", "keyword"),
                          "'bm25' is not one of this command's retrievers")


@pytest.mark.parametrize("factory, words", [
    ("raises", ["search raised RuntimeError: the backend fell over", "on query kw-003 ("]),
    ("not_verses", ["'John 3:16' is not a verse id"]),
    ("unsorted", ["scores must strictly decrease", "unsorted"]),
    ("ties", ["scores must strictly decrease", "a tie"]),
    ("fails_to_build", ["building it raised OSError: cannot reach the index"]),
    ("wrong_signature", ["must take (corpus, options, *, home, on_progress=None)"]),
])
def test_a_plugin_that_breaks_the_contract_is_one_line(site, tmp_path, factory, words):
    args = ["-o", "bad_qid=kw-003"] if factory == "raises" else []
    p = bench(site, "run", "-r", f"bad_plugins:{factory}", *args, "-s", "keyword", "--out", str(tmp_path))
    assert_one_line_error(p, f"bad_plugins:{factory}", *words)
    assert not any(tmp_path.iterdir())  # no half-written report


def test_specs_that_name_nothing_are_one_line(site):
    for spec, words in (("no_such_module:make", ["no module named 'no_such_module'"]),
                        ("verse_overlap:nothing", ["has no 'nothing'"]), ("colbert", ["unknown retriever",
                                                                                     "overlap", "package.module"])):
        assert_one_line_error(bench(site, "run", "-r", spec, "-s", "keyword"), spec, *words)


# ---- in process: the checks themselves -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Corpus:
    ids: tuple = ("Matt.1.1", "Matt.1.2", "Matt.1.3")

    @property
    def position(self):
        return {d: i for i, d in enumerate(self.ids)}


def test_check_run_holds_the_contract():
    pos, q = Corpus().position, {"a": "faith", "b": "hope"}
    ok = {"a": {"Matt.1.2": 0.9, "Matt.1.1": 0.1}, "b": {}}
    assert base.check_run(ok, q, 10, pos, "p") == ok
    for run, words in (
        ([], "returned list"), ({"a": {}}, "query b ('hope'): no entry"), ({**ok, "c": {}}, "query id 'c'"),
        ({**ok, "a": [("Matt.1.1", 1.0)]}, "results are list"), ({**ok, "a": {"Matt.1.1": float("nan")}}, "finite"),
        ({**ok, "a": {"Matt.1.1": True}}, "finite"), ({**ok, "a": {"Matt.1.1": "1"}}, "finite"),
        ({**ok, "a": {"Matt.1.1": 1.0, "Matt.1.2": 0.5, "Matt.1.3": 0.1}}, "more than k=2"),
    ):
        with pytest.raises(BadInput, match="^retriever p: ") as e:
            base.check_run(run, q, 2, pos, "p")
        assert words in str(e.value) and "\n" not in str(e.value)


def test_plugins_declare_options_by_annotation(on_path):
    import verse_overlap

    src = base.resolve("verse_overlap:make")
    assert src.options is verse_overlap.OverlapOptions and src.outside and src.origin == "import path"
    assert base.option_names("overlap") == ("idf",)
    assert not base.resolve("bm25").outside  # the built-ins are trusted


def test_an_entry_point_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    info = tmp_path / "shadow-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[versebench.retrievers]\nbm25 = nowhere:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib.metadata

    assert "bm25" in {ep.name for ep in importlib.metadata.entry_points(group=base.ENTRY_POINTS)}
    assert base.listed().count("bm25") == 1 and base.resolve("bm25").origin == "built-in"


# ---- the gate takes a plugin ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gate_judges_a_plugin_against_a_baseline_from_the_same_spec(site, tmp_path):
    b = str(tmp_path / "baseline.json")
    gate = ("gate", "-s", "keyword", "-s", "keyword-xlate", "--baseline", b)
    first = bench(site, *gate, "-r", "verse_overlap:make", "--update-baseline", "--allow-dirty")
    assert first.returncode == 0 and "wrote one from verse_overlap:make" in first.stderr, first.stderr[-2000:]
    said = " ".join(first.stderr.split())  # the baseline named as the verdict names it, never this machine's path
    assert "no baseline at (outside the repository)/baseline.json" in said and str(tmp_path) not in said
    assert json.loads(Path(b).read_text())["meta"]["gate"]["retrievers"] == ["verse_overlap:make"]
    same = bench(site, *gate, "-r", "verse_overlap:make", "--verdict", str(tmp_path / "same.json"))
    assert same.returncode == 0, same.stderr[-2000:]
    worse = bench(site, *gate, "-r", "verse_overlap:make", "-o", "idf=false", "--verdict", str(tmp_path / "w.json"))
    assert worse.returncode == 1 and "gate failed" in worse.stderr, (worse.returncode, worse.stderr[-2000:])
    verdict = json.loads((tmp_path / "w.json").read_text())
    assert verdict["candidate"] == "verse_overlap:make -o idf=false"
    assert any(f.startswith("keyword-xlate/verse_overlap:make/") for f in verdict["failed"])
    assert_one_line_error(bench(site, *gate, "-r", "bm25"), "baseline was made from verse_overlap:make",
                          "the candidate is bm25")
    assert_one_line_error(bench(site, *gate), "either -r SPEC")
