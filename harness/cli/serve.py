"""`bench serve`: retrievers as JSON over HTTP, and the search page (harness.serve), on uvicorn."""

import asyncio
import errno
import functools
import socket
import sys

import typer

from corpus.bible import load_corpus
from corpus.errors import BadInput
from harness.cli import specs
from harness.cli.home import default_home
from harness.cli.progress import Bars


def serve(
    retriever: list[str] = typer.Option(["bm25"], "--retriever", "-r", help=specs.RETRIEVER_HELP),
    option: list[str] = typer.Option([], "--option", "-o", help=specs.OPTION_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(4000, "--port", help="Port to listen on; 0 takes a free one (the ready line says "
                                                  "which)."),
    set_: list[str] = typer.Option([], "--set", "--sets", "-s",
                                   help="Query set whose judgments the page marks (repeatable); default: every "
                                        "committed set."),
    scope: str = typer.Option("nt", "--scope", help="nt | ot | all"),
    translation: str = typer.Option("web", "--translation"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Encoder checkpoint folder (encoder, hybrid)."),
    dense: str = typer.Option(None, "--dense", help="Hybrid's dense side: encoder | minilm."),
    fusion: str = typer.Option(None, "--fusion", help="Hybrid's ranx fusion method (wsum, rrf, ...)."),
    dsn: str = typer.Option(None, "--dsn", help="postgresql://... to run ILIKE on PostgreSQL instead of SQLite."),
    window_ms: float = typer.Option(2.0, "--batch-window-ms", help="How long a request waits for others to search "
                                                                   "with it in one batch."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most queries searched in one batch."),
):
    """Serve retrievers as JSON over HTTP (GET /search?q=...&k=10&r=NAME, /health) with a search page at /."""
    from corpus.books import SCOPES
    from corpus.qsets import load_set, set_names
    from harness.serve import make_app

    if scope not in SCOPES:
        raise BadInput(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 0 <= port <= 65535:
        raise BadInput(f"--port must be from 0 to 65535, got {port}")
    if window_ms < 0 or max_batch < 1:
        raise BadInput("--batch-window-ms must be 0 or more and --max-batch 1 or more")
    names = specs.expand_retrievers(retriever)
    options = specs.retriever_options(names, option, checkpoint=checkpoint, dense=dense, fusion=fusion, dsn=dsn)
    sets = [load_set(n, scope) for n in (set_ or set_names())]
    sock = listen(host, port)  # before the slow part: a port in use is said at once
    home = default_home()
    corpus = load_corpus(translation, scope, home=home)
    retrievers = build(names, options, corpus, home)
    app = make_app(retrievers, corpus, sets, window_s=window_ms / 1000, max_batch=max_batch,
                   on_error=lambda line: typer.echo(f"bench serve: 500: {line}", err=True))
    bound = sock.getsockname()
    where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    judged = sum(len(s.queries) for s in sets)
    ready = (f"bench serve: {', '.join(names)} over {corpus.corpus_id} ({judged} judged queries from {len(sets)} "
             f"sets) at http://{where}:{bound[1]}/ (Ctrl-C stops)")
    asyncio.run(run_server(app, sock, ready))


def build(names, options: dict, corpus, home) -> dict:
    """Every retriever built in the thread that will make its searches, and searched once there, so that what a
    retriever builds on first use (the hybrid's parts, the JVM's classes) is done before the first request."""
    from harness.serve import build_in_own_thread
    from retrievers.base import make

    def made(name, on_progress):
        r = make(name, corpus, home=home, on_progress=on_progress, **options[name])
        r.search({"warm-up": "grace and peace"}, 10)
        return r

    out = {}
    with Bars() as bars:
        for name in names:
            bar = bars.callback(f"{name}: {corpus.corpus_id} verses")
            out[name] = build_in_own_thread(name, functools.partial(made, name, bar))
    return out


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or BadInput naming what is wrong."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BadInput(f"--host {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise BadInput(f"{host}:{port} is in use; choose another --port (0 takes a free one)") from None
        raise BadInput(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(256)
    return sock


async def run_server(app, sock: socket.socket, ready: str) -> None:
    """uvicorn on `sock`; the ready line goes to stdout once it accepts requests (scripts and tests wait for it)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        typer.echo(ready)
        sys.stdout.flush()
    await task


def register(app: typer.Typer) -> None:
    from harness.cli.run import with_retriever_names

    app.command()(with_retriever_names(serve))
