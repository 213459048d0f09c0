"""The registry: each retriever's options dataclass, unknown options refused, the list behind `-r all` in one place,
the CLI's flags routed by the registry, and the fusion weights kept outside the code package."""

import pytest

from corpus.errors import BadInput
from corpus.paths import REPO
from harness.cli.specs import expand_retrievers as _expand_retrievers, retriever_options as _retriever_options
from retrievers import base, hybrid


def test_all_is_the_registry_list():
    assert base.ALL == ("ilike", "bm25", "encoder", "minilm", "hybrid")
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
    assert hybrid.read_weights()["minilm"]["wsum"]["params"] == {"weights": [0.5, 0.5]}
