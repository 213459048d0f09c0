"""The `bench` app: the typer groups and `main`, the process's edge. The commands live in one module per group
(sources: corpus and qrels; run: run, search, eval, tune-fusion; judge: gate, compare, perf; train: the encoder's)
and are registered here. What is slow to import (torch, numpy, ranx and numba, the JVM) is imported inside the
commands that need it, so `bench --help` stays fast."""

import sys

import typer

from corpus.errors import BadInput
from harness import metrics
from harness.cli import interrupts, judge, run, sources, train
from harness.cli.home import default_home

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="versebench: an evaluation harness for verse search.")
corpus_app = typer.Typer(no_args_is_help=True, help="Build and inspect Bible corpora.")
qrels_app = typer.Typer(no_args_is_help=True, help="Build, validate and count query sets.")
data_app = typer.Typer(no_args_is_help=True, help="Look at the encoder's training data.")
app.add_typer(corpus_app, name="corpus")
app.add_typer(qrels_app, name="qrels")
app.add_typer(data_app, name="data")
sources.register(corpus_app, qrels_app)
run.register(app)
train.register(app, data_app)
judge.register(app)


def main() -> None:
    """The edge: process state is set here once (signals, ranx's numba cache and warnings), then the command runs.
    Each command takes the cache root from `default_home()` (the environment) and passes it down.
    Typer turns a KeyboardInterrupt into exit 130 itself; `interrupts.finish` says what was interrupted and leaves
    with 130 or 143 whatever typer made of it."""
    interrupts.install("bench " + " ".join(sys.argv[1:]))
    metrics.configure(default_home())
    code = 0
    try:
        app()
    except BadInput as e:
        typer.echo(f"error: {e}", err=True)
        code = 2
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:
        code = 130
    interrupts.finish(code)
