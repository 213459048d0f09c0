"""Shared fixtures. Corpora come from the real sources and are cached under the cache root the CLI would use
($VERSEBENCH_HOME, default ~/.cache/versebench): the tests are an edge too, and share the machine's warm caches."""

import pytest

from harness import metrics
from harness.cli import interrupts
from harness.cli.home import default_home

# Process state the CLI sets at its edge (harness.cli.main), set once here for tests that call the library in process:
# where numba caches ranx's compiled code, ranx's warning filters, and a JVM kept off SIGINT/SIGTERM.
metrics.configure()
interrupts.keep_jvm_off_signals()


@pytest.fixture(scope="session")
def home():
    """The cache root every library call in the tests is handed (a test wanting a cold cache passes its own)."""
    return default_home()


@pytest.fixture(scope="session")
def nt_corpus(home):
    """The default corpus: World English Bible, New Testament (7,950 verses)."""
    from corpus.bible import load_corpus

    return load_corpus("web", "nt", home=home)


@pytest.fixture
def one_thread():
    """One intra-op thread for training tests: the CI box is small and shared, and one thread is steadier than two
    fighting other jobs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
