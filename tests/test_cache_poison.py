"""Data caches never execute (#19): a pickle that runs a command (it would create a marker file) planted in place of
every file under the cache root, with a forged manifest that vouches for it, and in numba's old cache folder under
the cache root: `bench run` runs nothing, says what it rebuilt, and gives the clean numbers."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus import cache
from harness import metrics

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]


class Boom:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison_npy(marker: Path) -> bytes:
    """An .npy that `np.load(allow_pickle=True)` would unpickle (an object array holding Boom)."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([Boom(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def plant(home: Path, marker: Path) -> list[Path]:
    """Every cache file replaced by a command-running pickle, and every manifest forged to vouch for it; pickles in
    numba's old cache folder (home/numba), named as numba names its index and data files."""
    planted = []
    raw = pickle.dumps(Boom(marker))
    for p in sorted(home.rglob("*")):
        if not p.is_file() or p.name.endswith(".sha256.json") or p.name == cache.FOLDER_MANIFEST:
            continue
        p.write_bytes(poison_npy(marker) if p.suffix in (".npy", ".npz") else raw)
        planted.append(p)
        if cache.sidecar(p).is_file():
            cache.write_file(p, p.read_bytes())  # forged: the manifest now vouches for the pickle
    for folder in {m.parent for m in home.rglob(cache.FOLDER_MANIFEST)}:
        cache.seal_folder(folder)  # forged too
    numba_files = [p.relative_to(metrics.numba_cache_dir()) for p in metrics.numba_cache_dir().rglob("*.nb[ic]")]
    numba_files = numba_files or [Path("metrics_1") / "ndcg.ndcg-10.py311.nbi"]
    for rel in numba_files:
        target = home / "numba" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        planted.append(target)
    return planted


def bench_run(home: Path, out: Path, tmp: Path, verses) -> subprocess.CompletedProcess:
    """`bench run` of BM25 and the encoder on 15 keyword queries judged in the New Testament `verses`."""
    queries, qrels = tmp / "q.tsv", tmp / "q.trec"
    repo = Path(__file__).resolve().parent.parent / "qrels" / "keyword"
    judged = [r for r in (repo / "qrels.trec").read_text().splitlines(keepends=True) if r.split()[2] in verses]
    lines = [q for q in (repo / "queries.tsv").read_text().splitlines(keepends=True)
             if q.split("\t", 1)[0] in {r.split()[0] for r in judged}][:15]
    qids = {line.split("\t", 1)[0] for line in lines}
    queries.write_text("".join(lines))
    qrels.write_text("".join(r for r in judged if r.split()[0] in qids))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}  # the CLI decides where, as for a user
    env["VERSEBENCH_HOME"] = str(home)
    return subprocess.run([*BENCH, "run", "-r", "bm25", "-r", "encoder", "--queries", str(queries), "--qrels",
                           str(qrels), "--out", str(out), "--json"], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.mark.slow
def test_planted_pickles_never_run(tmp_path, nt_corpus):
    home, marker = tmp_path / "home", tmp_path / "MARKER"
    verses = set(nt_corpus.ids)
    clean = bench_run(home, tmp_path / "out1", tmp_path, verses)
    assert clean.returncode == 0, clean.stderr[-2000:]
    planted = plant(home, marker)
    kinds = {p.relative_to(home).parts[0] for p in planted}
    assert {"corpus", "vectors", "indexes", "numba"} <= kinds, kinds
    again = bench_run(home, tmp_path / "out2", tmp_path, verses)
    assert not marker.exists(), "a planted pickle ran"
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Traceback" not in again.stderr and again.stderr.count("notice:") >= 3, again.stderr
    results = lambda r: json.loads(r.stdout)["results"]  # noqa: E731
    assert results(again) == results(clean)


def test_np_load_of_a_planted_vector_file_refuses_the_pickle(tmp_path, nt_corpus):
    """The in-process half, fast: a forged manifest gets the pickle past the sha256 check, and np.load still refuses
    it (allow_pickle=False): the vectors are rebuilt and nothing runs."""
    from corpus.bible import Corpus
    from retrievers.dense import cached_vectors, vectors_path

    small = Corpus("web", "nt", nt_corpus.ids[:5], nt_corpus.texts[:5], {**nt_corpus.manifest, "id": "poison-5"})
    marker = tmp_path / "MARKER"
    path = vectors_path(tmp_path, "sha", small.corpus_id)
    cache.write_file(path, poison_npy(marker))
    vecs, from_cache = cached_vectors(tmp_path, "sha", small, lambda texts: np.eye(len(texts), 4, dtype=np.float32))
    assert not from_cache and vecs.shape == (5, 4) and not marker.exists()


def test_a_pickled_hf_weight_file_is_refused(tmp_path):
    """A Hugging Face folder with only `pytorch_model.bin`: one line, exit 2, and the pickle is never opened."""
    from encoder.hf import minilm_dir

    folder, marker = tmp_path / "bert", tmp_path / "MARKER"
    folder.mkdir()
    for name in ("config.json", "vocab.txt"):
        (folder / name).write_bytes((minilm_dir() / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Boom(marker)))
    r = subprocess.run([*BENCH, "export", "--checkpoint", str(folder), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and not marker.exists()
    assert r.stderr.strip().count("\n") == 0 and "pickled weight file is refused" in r.stderr, r.stderr


def test_numba_caches_beside_the_code_not_under_the_cache_root(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["VERSEBENCH_HOME"] = str(tmp_path)
    code = "from harness import metrics; import os; metrics.configure(); print(os.environ['NUMBA_CACHE_DIR'])"
    got = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout.strip())
    assert got.is_relative_to(sys.prefix) and not got.is_relative_to(tmp_path)
