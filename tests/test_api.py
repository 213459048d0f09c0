"""`from harness import evaluate`: a retriever judged from Python gets the numbers `bench run` gives it, as a Report;
and `import harness` does nothing until it is called."""

import subprocess
import sys

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from harness import evaluate
from harness.report import Report
from harness.runner import RunConfig, run_benchmark
from retrievers.base import make


@pytest.fixture(scope="module")
def by_runner(home, tmp_path_factory):
    return run_benchmark(RunConfig(retrievers=("ilike",), sets=("distractor",),
                                   out_root=tmp_path_factory.mktemp("runs")), home=home)[0]


def test_a_registry_name_scores_as_bench_run_does(home, by_runner):
    report = evaluate("ilike", sets="distractor", home=home)
    assert isinstance(report, Report)
    assert report.results == by_runner.results and report.per_query == by_runner.per_query
    assert report.meta["retrievers"]["ilike"] == by_runner.meta["retrievers"]["ilike"]
    assert "distractor@10" in report.results["distractor"]["ilike"]  # the distractor metrics come too


class Renamed:
    """A retriever from outside the registry: any object with a name and a search."""

    def __init__(self, inner):
        self.name, self.inner = "my-ilike", inner

    def search(self, queries, k):
        return self.inner.search(queries, k)


def test_a_retriever_object_and_a_factory_score_the_same(home, nt_corpus, by_runner):
    mine = Renamed(make("ilike", nt_corpus, home=home))
    report = evaluate(mine, sets=["distractor"], home=home)
    assert report.results["distractor"]["my-ilike"] == by_runner.results["distractor"]["ilike"]
    assert report.meta["retrievers"]["my-ilike"] == {"name": "my-ilike"}  # no config dataclass: just its name

    def my_factory(corpus, home):
        return Renamed(make("ilike", corpus, home=home))

    by_factory = evaluate(my_factory, sets=["distractor"], k=10, home=home)
    assert by_factory.meta["run"]["k"] == 10
    assert by_factory.results["distractor"]["my_factory"]["ndcg@10"] == pytest.approx(
        by_runner.results["distractor"]["ilike"]["ndcg@10"])
    assert by_factory.to_markdown().startswith("# versebench run")
    assert set(by_factory.to_frame()["retriever"]) == {"my_factory"}


class Overlap:
    """The README's example: a retriever class is a factory, built over the corpus."""
    name = "overlap"

    def __init__(self, corpus):
        self.verses = [(d, set(t.lower().split())) for d, t in zip(corpus.ids, corpus.texts)]

    def search(self, queries, k):
        out = {}
        for qid, text in queries.items():
            words = set(text.lower().split())
            scored = sorted(((len(words & vw), d) for d, vw in self.verses), key=lambda x: -x[0])
            out[qid] = {d: float(n) for n, d in scored[:k] if n}
        return out


def test_a_retriever_class_is_a_factory(home):
    report = evaluate(Overlap, sets=["distractor"], home=home)
    assert report.retrievers() == ["overlap"]
    assert report.results["distractor"]["overlap"]["ndcg@10"] == pytest.approx(0.3965, abs=1e-3)  # the README's


def test_what_is_not_a_retriever_is_bad_input(home):
    with pytest.raises(BadInput, match="not int"):
        evaluate(3, sets=["distractor"], home=home)
    with pytest.raises(BadInput, match="not a retriever"):
        evaluate(lambda corpus: "nope", sets=["distractor"], home=home)
    with pytest.raises(BadInput, match="options go with a registry name"):
        evaluate(Renamed(None), sets=["distractor"], options={"k1": 1.0}, home=home)
    with pytest.raises(BadInput, match="unknown retriever"):
        evaluate("no-such-retriever", sets=["distractor"], home=home)


def test_importing_harness_imports_nothing_heavy():
    code = "import sys, harness; print(sorted(m for m in sys.modules if m.startswith(('harness.', 'ranx', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
