"""Long work shows progress: a bar with an ETA on a terminal, nothing at all on a pipe or with --json. The layers below
the roof report through a plain `on_progress(done, total)` callable; here it is called with real work (encoding real
verses with our encoder and with MiniLM, indexing real verses with Lucene, a whole run)."""

import io
import os
import pty
import subprocess
import sys
import threading

import numpy as np
import pytest
from rich.console import Console

from corpus.bible import Corpus
from harness.cli.progress import Bars
from harness.runner import RunConfig, run_benchmark

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]


def first(corpus, n: int, name: str) -> Corpus:
    """The first `n` real verses of `corpus` as a corpus of their own (own id, own cache entries)."""
    return Corpus(translation=corpus.translation, scope=corpus.scope, ids=corpus.ids[:n], texts=corpus.texts[:n],
                  manifest={**corpus.manifest, "id": f"{corpus.corpus_id}-first{n}-{name}"})


# ---- the helper ---------------------------------------------------------------------------------------------------

def test_bars_are_off_on_a_pipe_and_with_json_even_on_a_terminal():
    assert not Bars(console=Console(file=io.StringIO())).enabled
    main, side = pty.openpty()
    try:
        with open(side, "w", closefd=False) as tty:
            assert Bars(console=Console(file=tty)).enabled
            assert not Bars(quiet=True, console=Console(file=tty)).enabled
    finally:
        os.close(main)
        os.close(side)


def test_off_bars_write_nothing():
    out = io.StringIO()
    with Bars(console=Console(file=out)) as bars:
        cb = bars.callback("encoding")
        for i in range(11):
            cb(i, 10)
        cb.describe("still nothing")
    assert out.getvalue() == ""


def test_bars_show_count_and_eta_on_a_terminal():
    out = io.StringIO()
    with Bars(console=Console(file=out, force_terminal=True, width=120), enabled=True) as bars:
        cb = bars.callback("encoding web-nt")
        cb(0, 10)
        cb(3, 10)
        bars.progress.refresh()
        shown = out.getvalue()
        cb(10, 10)
        assert not bars.progress.tasks  # a finished bar goes away
    assert "encoding web-nt" in shown and "3/10" in shown and "eta" in shown


# ---- the callbacks, called by real work ----------------------------------------------------------------------------

def test_encode_texts_reports_after_every_batch(nt_corpus):
    from encoder import checkpoint as ckpt
    from encoder.embed import encode_texts
    from retrievers.encoder import DEFAULT_CHECKPOINT

    c = ckpt.load(DEFAULT_CHECKPOINT)
    texts = list(nt_corpus.texts[:50])
    calls = []
    vecs = encode_texts(c.model, c.tokenizer, texts, batch_size=16, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(16, 50), (32, 50), (48, 50), (50, 50)]
    assert np.array_equal(vecs, encode_texts(c.model, c.tokenizer, texts, batch_size=16))


def test_encoder_retriever_reports_encoding_the_corpus(nt_corpus, tmp_path):
    from retrievers.base import make

    calls = []
    # tmp_path as the cache root: a cold vector cache, so the verses must be encoded
    r = make("encoder", first(nt_corpus, 60, "enc"), home=tmp_path, on_progress=lambda d, t: calls.append((d, t)),
             batch_size=32)
    assert not r.from_cache and calls == [(32, 60), (60, 60)]
    calls.clear()
    assert make("encoder", first(nt_corpus, 60, "enc"), home=tmp_path,
                on_progress=lambda d, t: calls.append((d, t))).from_cache
    assert calls == []  # vectors from the cache: nothing to report


def test_minilm_in_chunks_gives_the_vectors_of_one_call(nt_corpus):
    from retrievers import minilm

    m = object.__new__(minilm.MiniLM)  # the encoder alone, without encoding a corpus first
    m.config = minilm.MiniLMConfig(batch_size=4)
    texts = list(nt_corpus.texts[:72])  # 2 chunks of 8 batches of 4, and a part chunk
    calls = []
    chunked = m.encode(texts, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(32, 72), (64, 72), (72, 72)]
    assert np.array_equal(chunked, m.encode(texts))


def test_bm25_index_build_reports_verses_indexed(nt_corpus, tmp_path):
    from retrievers.bm25 import ensure_index

    calls = []
    ensure_index(first(nt_corpus, 2500, "bm25"), tmp_path, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_a_run_counts_its_steps_to_the_end(home, tmp_path):
    out = io.StringIO()
    cfg = RunConfig(retrievers=("ilike",), sets=("keyword",), out_root=tmp_path)
    with Bars(console=Console(file=out, force_terminal=True, width=120), enabled=True) as bars:
        run_benchmark(cfg, progress=bars.for_run(), home=home)
        (task,) = bars.progress.tasks
        assert (task.completed, task.total) == (3, 3)  # build, search, evaluate


# ---- the commands ---------------------------------------------------------------------------------------------------

def bench(*args, home, stderr=subprocess.PIPE):
    env = {**os.environ, "VERSEBENCH_HOME": str(home)}
    return subprocess.run([*BENCH, *args], stdout=subprocess.PIPE, stderr=stderr, timeout=600, env=env)


def test_a_cold_index_build_on_a_pipe_leaves_stderr_empty(tmp_path):
    """A fresh cache: the corpus is built and BM25 indexes it, with stderr a pipe (the index bar used to leave a
    blank line there)."""
    p = bench("search", "love one another", "-r", "bm25", "--k", "3", home=tmp_path)
    assert p.returncode == 0 and b"love one another" in p.stdout, p.stderr
    assert p.stderr == b""


@pytest.mark.parametrize("json_out", [False, True])
def test_corpus_build_on_a_terminal_shows_a_bar_unless_json(tmp_path, json_out):
    main, side = pty.openpty()
    seen = []
    reader = threading.Thread(target=_drain, args=(main, seen), daemon=True)
    reader.start()
    try:
        p = bench("corpus", "build", "-t", "web", *(["--json"] if json_out else []), home=tmp_path, stderr=side)
    finally:
        os.close(side)
        reader.join(timeout=10)
        os.close(main)
    assert p.returncode == 0
    shown = b"".join(seen)
    assert (b"building web" in shown) != json_out, shown[-500:]
    if json_out:
        assert shown == b""


def _drain(fd: int, into: list) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed
            return
        if not chunk:
            return
        into.append(chunk)
