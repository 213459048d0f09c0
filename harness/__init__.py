"""versebench harness: corpus, query sets, runner, metrics, reports, gate, CLI."""

__version__ = "0.1.0"
