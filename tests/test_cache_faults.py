"""Caches that cannot lie (#19): every kind of cache entry, damaged every way a disk or a hand can damage it
(truncated, a range zeroed, rows swapped, a file deleted, its manifest deleted, a folder replaced by a file), gives
one notice line on stderr, a rebuild, and exactly the clean results. Each test has its own cache root: damage never
touches the shared one."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from corpus import cache
from corpus.bible import Corpus, cache_paths, load_corpus
from retrievers import base

QUERIES = {"a": "God so loved the world", "b": "the beginning of the good news", "c": "repent and be baptized",
           "d": "genealogy of Jesus Christ son of David", "e": "wise men from the east"}


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def zero_range(p: Path, n: int = 100) -> None:
    data = bytearray(p.read_bytes())
    at = next(i for i in range(len(data) // 2, len(data)) if any(data[i:i + n]))  # a range that is not zeros yet
    data[at:at + n] = bytes(len(data[at:at + n]))
    p.write_bytes(bytes(data))


def swap_blocks(p: Path, size: int, start: int = 0) -> None:
    """Two different `size`-byte blocks after `start` change places (rows of an array, lines of a table)."""
    data = bytearray(p.read_bytes())
    body = range(start, len(data) - size, size)
    i = body[len(body) // 3]
    j = next(k for k in body[len(body) // 2:] if data[k:k + size] != data[i:i + size])
    data[i:i + size], data[j:j + size] = data[j:j + size], data[i:i + size]
    p.write_bytes(bytes(data))


def swap_lines(p: Path) -> None:
    lines = p.read_bytes().splitlines(keepends=True)
    lines[10], lines[11] = lines[11], lines[10]
    p.write_bytes(b"".join(lines))


def folder_to_file(d: Path) -> None:
    shutil.rmtree(d)
    d.write_text("not a folder\n")


def an_hour_old(p: Path) -> None:
    import os
    import time

    os.utime(p, (time.time() - 3600, time.time() - 3600))


def one_notice(capfd) -> str:
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("notice: ") and "Traceback" not in err, err
    return err


@pytest.fixture
def small(nt_corpus):
    return Corpus(translation="web", scope="nt", ids=nt_corpus.ids[:300], texts=nt_corpus.texts[:300],
                  manifest={**nt_corpus.manifest, "id": "web-nt-first300-faults"})


# ---- the corpus -----------------------------------------------------------------------------------------------------

CORPUS_DAMAGE = {
    "truncate": lambda tsv, manifest: truncate(tsv),
    "zero a range": lambda tsv, manifest: zero_range(tsv),
    "swap rows": lambda tsv, manifest: swap_lines(tsv),
    "delete the text": lambda tsv, manifest: tsv.unlink(),
    "delete the manifest": lambda tsv, manifest: manifest.unlink(),
    "truncate the manifest": lambda tsv, manifest: truncate(manifest),
    "folder is a file": lambda tsv, manifest: folder_to_file(tsv.parent),
}


@pytest.mark.parametrize("damage", CORPUS_DAMAGE)
def test_a_damaged_corpus_is_rebuilt(tmp_path, damage, capfd):
    clean = load_corpus("web", "nt", home=tmp_path)
    CORPUS_DAMAGE[damage](*cache_paths("web", tmp_path))
    capfd.readouterr()
    again = load_corpus("web", "nt", home=tmp_path)
    assert "corpus" in one_notice(capfd)
    assert (again.ids, again.texts, again.corpus_id) == (clean.ids, clean.texts, clean.corpus_id)
    load_corpus("web", "nt", home=tmp_path)
    assert capfd.readouterr().err == ""  # sound again


# ---- verse vectors --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder_model():
    from retrievers.encoder import checkpoint_identity
    from encoder import checkpoint as ckpt

    path, sha = checkpoint_identity()
    return ckpt.load(path), sha


def _dense(encoder_model, corpus, home):
    from encoder.embed import encode_texts
    from retrievers.dense import cached_vectors, search_with

    loaded, sha = encoder_model
    encode = lambda texts: encode_texts(loaded.model, loaded.tokenizer, texts, batch_size=64)  # noqa: E731
    vecs, _ = cached_vectors(home, sha, corpus, encode, expect_dim=loaded.model.out_dim)
    return search_with(encode, vecs, corpus.ids, QUERIES, 20)


VECTOR_DAMAGE = {
    "truncate": lambda p: truncate(p),
    "zero a range": lambda p: zero_range(p, 4 * 384),
    "swap rows": lambda p: swap_blocks(p, 4 * 384, start=128),
    "delete the file": lambda p: p.unlink(),
    "delete the manifest": lambda p: (cache.sidecar(p).unlink(), an_hour_old(p)),  # a fresh one may be mid-write
    "folder is a file": lambda p: folder_to_file(p.parent),
}


@pytest.mark.parametrize("damage", VECTOR_DAMAGE)
def test_damaged_verse_vectors_are_rebuilt(tmp_path, small, encoder_model, damage, capfd):
    from retrievers.dense import vectors_path

    want = _dense(encoder_model, small, tmp_path)
    path = vectors_path(tmp_path, encoder_model[1], small.corpus_id)
    assert path.is_file() and cache.sidecar(path).is_file()
    VECTOR_DAMAGE[damage](path)
    capfd.readouterr()
    got = _dense(encoder_model, small, tmp_path)
    one_notice(capfd)
    assert got == want
    assert _dense(encoder_model, small, tmp_path) == want and capfd.readouterr().err == ""


def test_vectors_of_the_wrong_shape_with_a_forged_manifest_are_rebuilt(tmp_path, small, encoder_model, capfd):
    """A manifest can be forged by whoever writes the cache; what the bytes parse to is still checked."""
    from retrievers.dense import vectors_path

    want = _dense(encoder_model, small, tmp_path)
    path = vectors_path(tmp_path, encoder_model[1], small.corpus_id)
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((7, 3), np.float32))
    cache.write_file(path, buf.getvalue())
    capfd.readouterr()
    assert _dense(encoder_model, small, tmp_path) == want
    one_notice(capfd)


# ---- the BM25 index -------------------------------------------------------------------------------------------------

def _largest(index: Path, suffix: str = "") -> Path:
    return max((p for p in (index / "lucene").iterdir() if p.name.endswith(suffix)), key=lambda p: p.stat().st_size)


BM25_DAMAGE = {
    "truncate": lambda d: truncate(_largest(d)),
    "zero a range of a .tim": lambda d: zero_range(_largest(d, ".tim"), 100),
    "swap blocks": lambda d: swap_blocks(_largest(d), 64),
    "delete a file": lambda d: _largest(d).unlink(),
    "delete the manifest": lambda d: (d / cache.FOLDER_MANIFEST).unlink(),
    "lucene folder is a file": lambda d: folder_to_file(d / "lucene"),
    "index folder is a file": folder_to_file,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", BM25_DAMAGE)
def test_a_damaged_bm25_index_is_rebuilt(tmp_path, small, damage, capfd):
    from retrievers.bm25 import index_path

    want = base.make("bm25", small, home=tmp_path).search(QUERIES, 20)
    assert sum(map(len, want.values())) > 20
    BM25_DAMAGE[damage](index_path(small, tmp_path))
    capfd.readouterr()
    got = base.make("bm25", small, home=tmp_path).search(QUERIES, 20)
    assert "BM25 index" in one_notice(capfd)
    assert got == want
    assert cache.check_folder(index_path(small, tmp_path), "BM25 index")


def test_a_killed_builds_temp_is_swept_and_a_live_one_kept(tmp_path, small):
    """A SIGKILLed build leaves `.tmp-NAME.<pid>`; the next build sweeps it once its process is gone (a build running
    now in another process keeps its own)."""
    import os
    import subprocess

    from corpus.paths import temp_name
    from retrievers.bm25 import ensure_index, index_path

    final = index_path(small, tmp_path)
    final.parent.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = final.parent / temp_name(final.name).replace(str(os.getpid()), str(gone.pid))
    live = final.parent / temp_name(final.name).replace(str(os.getpid()), str(os.getppid()))
    for d in (stale, live):
        (d / "lucene").mkdir(parents=True)
        (d / "lucene" / "_0.tim").write_bytes(b"x" * 1000)
    ensure_index(small, tmp_path)
    assert not stale.exists() and live.exists()


# ---- single-file entries in general (tokenizers, windows, teacher vectors use the same two calls) -------------------

def test_a_file_without_its_manifest_yet_is_rebuilt_quietly(tmp_path, capfd):
    """Another process may be between writing a cache file and its manifest: a fresh file without one is rebuilt
    (the same bytes, since keys are content) without a notice and without deleting it under the writer."""
    p = tmp_path / "entry.bin"
    p.write_bytes(b"being written")
    assert cache.read_file(p, "test") is None and p.exists() and capfd.readouterr().err == ""
    an_hour_old(p)
    assert cache.read_file(p, "test") is None and not p.exists()
    one_notice(capfd)


def test_single_file_entries(tmp_path, capfd):
    p = tmp_path / "x" / "entry.bin"
    assert cache.read_file(p, "test") is None and capfd.readouterr().err == ""  # never built: silent
    cache.write_file(p, b"0123456789" * 100)
    assert cache.read_file(p, "test") == b"0123456789" * 100
    p.write_bytes(b"0123456789" * 99 + b"0123456780")
    assert cache.read_file(p, "test") is None
    one_notice(capfd)
    assert not p.exists() and not cache.sidecar(p).exists()  # out of the way of the rebuild


@pytest.mark.slow
def test_a_sigkilled_index_build_leaves_a_temp_the_next_build_sweeps(tmp_path):
    """The KJV Bible's index (31,102 verses) is built in a child process that is SIGKILLed once its temp folder
    appears; the next build in this process removes that temp and builds the index."""
    import signal
    import subprocess
    import sys
    import time

    code = ("from corpus.bible import load_corpus; from retrievers.bm25 import ensure_index; import sys, pathlib\n"
            "h = pathlib.Path(sys.argv[1]); ensure_index(load_corpus('kjv', 'all', home=h), h)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    t0 = time.time()
    while not list((tmp_path / "indexes").glob(".tmp-*/lucene")):
        assert p.poll() is None and time.time() - t0 < 120
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert list((tmp_path / "indexes").glob(".tmp-*"))  # left behind
    from retrievers.bm25 import ensure_index

    final = ensure_index(load_corpus("kjv", "all", home=tmp_path), tmp_path)
    assert [p.name for p in (tmp_path / "indexes").iterdir()] == [final.name]
