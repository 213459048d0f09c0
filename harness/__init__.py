"""versebench harness: the library (runner, metrics, Report, compare, gate, worst queries, fusion) under the command
side in harness/cli/. `from harness import evaluate` judges any retriever from Python (harness/api.py)."""

__version__ = "0.1.0"


def evaluate(retriever_or_factory, sets=(), k: int = 100, **kwargs):
    """Judge a retriever on the query sets and return a `harness.report.Report`; see `harness.api.evaluate`.
    Imported here on call, so `import harness` costs nothing."""
    from harness.api import evaluate as run

    return run(retriever_or_factory, sets, k, **kwargs)
