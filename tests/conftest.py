"""Shared fixtures. Corpora come from the real sources and are cached under $VERSEBENCH_HOME."""

import pytest


@pytest.fixture(scope="session")
def nt_corpus():
    """The default corpus: World English Bible, New Testament (7,950 verses)."""
    from corpus.bible import load_corpus

    return load_corpus("web", "nt")
