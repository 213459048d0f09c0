"""The cache root's default, read from the environment here and nowhere else.

Corpora, tokenizers, windows, BM25 indexes, vector caches and teacher vectors live under one cache root (numba's
compiled code does not: see harness.metrics.numba_cache_dir). The library takes it as an argument (`home`); the CLI edge (the commands under harness/cli/)
calls `default_home()` once per command and passes the result down, as do the tests and scripts, which are edges too."""

import os
from pathlib import Path


def default_home() -> Path:
    """`$VERSEBENCH_HOME`, default `~/.cache/versebench`; created if missing."""
    p = Path(os.environ.get("VERSEBENCH_HOME") or Path.home() / ".cache" / "versebench")
    p.mkdir(parents=True, exist_ok=True)
    return p
