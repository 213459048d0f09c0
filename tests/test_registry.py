"""The registry: each retriever's options dataclass, unknown options refused, the list behind `-r all` in one place,
the CLI's flags routed by the registry, and the fusion weights kept outside the code package."""

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from harness.cli.specs import expand_retrievers as _expand_retrievers, retriever_options as _retriever_options
from retrievers import base, hybrid


def test_all_is_the_registry_list():
    assert base.ALL == ("ilike", "sword", "bm25", "encoder", "minilm", "hybrid")
    assert set(base.ALL) <= set(base.names())
    assert _expand_retrievers(["all"]) == base.ALL
    assert _expand_retrievers(["bm25", "all", "bm25-rm3"]) == ("bm25", *[n for n in base.ALL if n != "bm25"],
                                                               "bm25-rm3")


def test_every_retriever_declares_its_options():
    assert base.option_names("ilike") == ("backend", "dsn", "max_words", "index")
    assert base.option_names("bm25") == ("k1", "b", "max_query_chars")  # the analyzer is recorded, not set
    assert base.option_names("bm25-rm3") == ("k1", "b", "max_query_chars", "fb_terms", "fb_docs",
                                             "original_query_weight")
    assert base.option_names("encoder") == ("checkpoint", "batch_size")
    assert base.option_names("minilm") == ("batch_size",)
    assert base.option_names("hybrid") == ("dense", "fusion", "checkpoint", "depth", "sparse")
    assert base.option_names("sword") == ("mode", "operator", "max_words", "cache")
    for name in base.names():
        cls = base.options_class(name)
        with pytest.raises(AttributeError):  # frozen
            setattr(cls(), base.option_names(name)[0], None)


@pytest.mark.parametrize("name", ["encoder", "minilm", "hybrid"])
def test_unknown_options_are_refused_before_anything_is_built(home, name):
    with pytest.raises(BadInput, match=rf"{name}: unknown option\(s\) colour; {name} takes: "):
        base.make(name, None, colour="blue", home=home)  # no corpus needed: refused before the factory runs
    with pytest.raises(BadInput, match="batch_size='big' is not a valid int"):
        base.make("minilm", None, batch_size="big", home=home)


def test_cli_flags_go_where_the_registry_says():
    got = _retriever_options(["ilike", "encoder", "hybrid", "bm25"], checkpoint="ck", dsn="postgresql://x",
                             dense=None)
    assert got == {"ilike": {"dsn": "postgresql://x"}, "encoder": {"checkpoint": "ck"}, "hybrid": {"checkpoint": "ck"},
                   "bm25": {}}
    with pytest.raises(BadInput, match="--dsn applies to ilike, which this command does not run"):
        _retriever_options(["bm25"], dsn="postgresql://x")
    with pytest.raises(BadInput, match="--checkpoint applies to encoder or hybrid"):
        _retriever_options(["minilm"], checkpoint="ck")


def test_fusion_weights_are_data_outside_the_code_package():
    assert hybrid.WEIGHTS_FILE == REPO / "reports" / "fusion" / "weights.json"
    assert hybrid.WEIGHTS_FILE.is_file() and not (REPO / "retrievers" / "fusion_weights.json").exists()
    for dense in ("encoder", "minilm"):  # tuned values, re-tuned when a model changes: only their shape is fixed
        w = hybrid.read_weights()[dense]["wsum"]["params"]["weights"]
        assert len(w) == 2 and abs(sum(w) - 1.0) < 1e-9



def test_dash_o_goes_to_the_retrievers_that_take_the_key():
    from harness.cli.specs import parse_options

    got = _retriever_options(["bm25", "bm25-rm3", "ilike"], ["k1=1.2", "bm25-rm3/fb_terms=5"], dsn="postgresql://x")
    assert got == {"bm25": {"k1": "1.2"}, "bm25-rm3": {"k1": "1.2", "fb_terms": "5"},
                   "ilike": {"dsn": "postgresql://x"}}
    assert parse_options(["model=/a/b=c"], ["dense"]) == {"dense": {"model": "/a/b=c"}}  # only the key is split
    for pairs, words in ((["k1"], "give key=value"), (["colour=red"], "no retriever of this command takes it"),
                         (["minilm/batch_size=2"], "'minilm' is not one of this command's retrievers"),
                         (["k1=1", "k1=2"], "given twice")):
        with pytest.raises(BadInput, match=words):
            parse_options(pairs, ["bm25"])
    with pytest.raises(BadInput, match="disagree"):
        _retriever_options(["encoder"], ["checkpoint=a"], checkpoint="b")
