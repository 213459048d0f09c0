"""The `bench` command line. Command bodies import their modules lazily so `bench --help` stays fast."""

import json
import sys

import typer

from harness.errors import BadInput

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="versebench: an evaluation harness for verse search.")
corpus_app = typer.Typer(no_args_is_help=True, help="Build and inspect Bible corpora.")
qrels_app = typer.Typer(no_args_is_help=True, help="Build, validate and count query sets.")
data_app = typer.Typer(no_args_is_help=True, help="Look at the encoder's training data.")
app.add_typer(corpus_app, name="corpus")
app.add_typer(qrels_app, name="qrels")
app.add_typer(data_app, name="data")


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    try:
        app()
    except BadInput as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


# ---- corpus -------------------------------------------------------------------------------------------------------

# ---- qrels --------------------------------------------------------------------------------------------------------

# ---- run / search -------------------------------------------------------------------------------------------------

# ---- encoder: data / train / finetune -----------------------------------------------------------------------------

# ---- gate / compare / perf ----------------------------------------------------------------------------------------
