"""What the dense retrievers share: a vector cache keyed by (model hash, corpus id) and exact cosine top-k."""

import hashlib
import io
from pathlib import Path

import numpy as np

from corpus import cache
from corpus.errors import BadInput
from retrievers.base import stable_scores


def vectors_path(home: Path, model_sha: str, corpus_id: str) -> Path:
    key = hashlib.sha256(f"{model_sha}\0{corpus_id}".encode()).hexdigest()[:20]
    return home / "vectors" / f"{corpus_id}-{key}.npy"


def cached_vectors(home: Path, model_sha: str, corpus, encode,
                   expect_dim: int | None = None) -> tuple[np.ndarray, bool]:
    """The corpus's verse vectors for this model, encoded once and reused from the cache root `home`: (vectors,
    came_from_cache).

    The key holds the model's content hash, so a new checkpoint can never pick up an old checkpoint's vectors.
    """
    path = vectors_path(home, model_sha, corpus.corpus_id)
    data = cache.read_file(path, "verse-vector")
    if data is not None:
        try:
            vecs = np.load(io.BytesIO(data), allow_pickle=False)
            if vecs.ndim == 2 and vecs.shape[0] == len(corpus) and (expect_dim is None or vecs.shape[1] == expect_dim):
                return vecs, True
        except ValueError:
            pass
        # the manifest vouched for the bytes, but they are not these vectors: a rebuild, never trusted
        cache.notice(f"verse-vector cache {path} does not hold {len(corpus)} vectors of this model; rebuilding it")
    vecs = np.ascontiguousarray(encode(list(corpus.texts)), dtype=np.float32)
    if vecs.shape[0] != len(corpus):
        raise BadInput(f"encoder returned {vecs.shape[0]} vectors for {len(corpus)} verses")
    buf = io.BytesIO()
    np.save(buf, vecs, allow_pickle=False)
    cache.write_file(path, buf.getvalue())
    return vecs, False


def top_k(doc_vecs: np.ndarray, query_vecs: np.ndarray, ids, k: int) -> list[dict[str, float]]:
    """Exact cosine top-k (vectors are L2-normalised, so a matrix product is the cosine): one product for the whole
    batch, rounded to `SCORE_DECIMALS` places, a partition for each row's k-th best score, one sort of the k per row
    on (score desc, position asc), so ties (and near-ties within float noise) go to the earlier verse, as everywhere
    else."""
    n = doc_vecs.shape[0]
    k = min(k, n)
    # Rounded before any comparison: BLAS kernels differ between CPUs in the last bits (see base.SCORE_DECIMALS).
    scores = stable_scores(query_vecs @ doc_vecs.T)  # [q, n]
    kth = np.partition(scores, n - k, axis=1)[:, n - k, None]  # each row's k-th best score
    # Everything above the k-th score, then as many verses scoring exactly that as fit, earliest first: a tie at
    # the cut goes to the earlier verse too, which a bare argpartition does not promise.
    above, at = scores > kth, scores == kth
    take = above | (at & (np.cumsum(at, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    idx = np.nonzero(take)[1].reshape(len(scores), k)
    best = np.take_along_axis(scores, idx, axis=1)
    order = np.lexsort((idx, -best), axis=1)
    idx, best = np.take_along_axis(idx, order, axis=1), np.take_along_axis(best, order, axis=1)
    # Building the dicts is the one loop left: a run is {docid: score} per query.
    return [dict(zip(map(ids.__getitem__, row_idx), row_best)) for row_idx, row_best in zip(idx.tolist(),
                                                                                         best.tolist())]


def search_with(encode, doc_vecs: np.ndarray, ids, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
    """Encode the non-empty queries in one batch and rank; empty queries get empty results."""
    qids = [q for q, t in queries.items() if t and t.strip()]
    out = {q: {} for q in queries}
    if qids:
        qv = np.asarray(encode([queries[q] for q in qids]), dtype=np.float32)
        for q, hits in zip(qids, top_k(doc_vecs, qv, ids, k)):
            out[q] = hits
    return out
