"""Real servers for the tests: `bench serve` as a subprocess, or the app on uvicorn in a thread, both on 127.0.0.1
with a port the system picks; and a small HTTP client (the standard library's, so what is tested is the server)."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
READY = re.compile(r"at (http://\S+/) \(Ctrl-C stops\)")


@contextmanager
def bench_serve(*args, timeout: float = 180):
    """`bench serve ARGS --port 0` running; yields (process, base URL) once its ready line is out."""
    proc = subprocess.Popen([*BENCH, "serve", *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        url = _ready_line(proc, timeout)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _ready_line(proc, timeout: float) -> str:
    found: list[str] = []

    def read():
        for line in proc.stdout:
            m = READY.search(line)
            if m:
                found.append(m.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise AssertionError(f"bench serve did not get ready (exit {proc.wait()}): {proc.stderr.read()[-2000:]}")
    return found[0]


@contextmanager
def in_thread(app):
    """The ASGI app on uvicorn in a thread, on a free 127.0.0.1 port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def get_json(url: str, method: str = "GET") -> tuple[int, dict]:
    status, headers, body = get(url, method)
    assert headers.get("content-type", "").startswith("application/json"), headers
    return status, json.loads(body)
