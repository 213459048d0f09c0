"""The `bench` app: the typer groups and `main`, the process's edge. The commands live in one module per group
(sources: corpus and qrels; run: run, eval, search, tune-fusion; judge: gate, compare, perf; serve: serve; train:
the encoder's)
and are registered here. What is slow to import (torch, numpy, ranx and numba, the JVM) is imported inside the
commands that need it, so `bench --help` stays fast."""

import os
import sys

import typer

from corpus.errors import BadInput, one_line, redact
from harness import metrics
from harness.cli import interrupts, judge, run, serve, sources, train

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
serve.register(app)


def main() -> None:
    """The edge: process state is set here once (signals, ranx's numba cache and warnings), then the command runs.
    Each command takes the cache root from `default_home()` (the environment) and passes it down.

    Exit codes mean one thing each: 0 ok; 1 only a gate's verdict (a regression); 2 bad input or environment (a
    path, a permission, a full disk, a refused file: BadInput and OSError); 3 an internal error, with its traceback
    saved to a log file that the one line names; 130/143 interrupted. Every message is one line, secrets redacted
    and long values cut. Typer turns a KeyboardInterrupt into exit 130 itself; `interrupts.finish` says what was
    interrupted and leaves with 130 or 143 whatever typer made of it."""
    interrupts.install(redact("bench " + " ".join(sys.argv[1:])))
    metrics.configure()
    code = 0
    try:
        app()
    except BadInput as e:
        code = say(f"error: {e}", 2)
    except OSError as e:
        code = say(f"error: {os_problem(e)}", 2)
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # a bug of ours: one line, and the traceback kept where the line says
        code = say(f"internal error ({type(e).__name__}: {e}); traceback in {crash_log()}", 3)
    interrupts.finish(code)


def say(message: str, code: int) -> int:
    typer.echo(one_line(message), err=True)
    return code


def os_problem(e: OSError) -> str:
    """An OSError as what a user can act on: the path and the system's words (no space left, read-only, ...)."""
    where = e.filename if e.filename is not None else ""
    return f"{where}: {e.strerror or e}" if where else str(e.strerror or e)


def crash_log() -> str:
    """Write the traceback being handled to a new log file (under the system's temp folder: the cache root's disk
    may be the thing that failed) and return its path."""
    import tempfile
    import traceback

    text = redact(traceback.format_exc())
    try:
        fd, path = tempfile.mkstemp(prefix="versebench-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"bench {redact(' '.join(sys.argv[1:]))}\n{text}")
        return path
    except OSError:
        return "(no log: the temp folder cannot be written either)"
