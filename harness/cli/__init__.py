"""The command side of versebench: typer commands (parse, call the library, render), `render.py` (every rich table
and verdict), progress bars, signal installation and the cache root's default. Nothing below harness/cli/ imports
rich or typer (tests/test_layers.py). `bench = harness.cli:main`."""

from harness.cli.app import app, main

__all__ = ["app", "main"]
