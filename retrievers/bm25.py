"""bm25 and bm25-rm3: Pyserini's Lucene (Anserini) over the corpus, index built once per corpus and cached.

Index: Anserini's default English analyzer (Porter stemmer, Lucene's English stopwords removed), document vectors
stored (RM3 needs them), one indexing thread with verses added in canonical order, so the same corpus always gives
the same index. It lives in `<cache root>/indexes/<corpus id>-<hash of the index settings>/` (the cache root is
handed in), built in a temporary folder beside it and renamed into place when complete.

Lucene document ids are zero-padded corpus positions ("000123"), mapped back to verse ids here. Anserini rounds
scores to 1e-4 and breaks the resulting ties by lexicographic docid, which with these ids is canonical order: the
house tie-break for free. Where a tie could straddle the cut-off at k we fetch more and cut ourselves.

Queries go through Anserini's bag-of-words path: the text is analyzed, never parsed as Lucene query syntax, so
`AND ( : * "` is just punctuation. A query is cut to `max_query_chars` (at a space where there is one); Lucene's clause
limit is raised to cover the worst case of that many one-character terms plus RM3's expansion terms.

We call Anserini's `SimpleIndexer` and `SimpleSearcher` (the Java classes inside Pyserini's LuceneIndexer and
LuceneSearcher, from the jar Pyserini ships) through pyjnius ourselves: importing `pyserini.search.lucene` also
imports pyserini.encode, torch and transformers, 13-25 s here, none of which BM25 uses.

Parameters: k1=0.9, b=0.4 and RM3's fb_terms=10, fb_docs=10, original_query_weight=0.5 are Pyserini's defaults,
not tuned on this corpus.
"""

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from corpus import cache
from corpus.errors import BadInput
from retrievers.base import check_k, positive_int, strictly_decreasing

BATCH_THREADS = 2
INDEX_FORMAT = 1  # bump when what goes into the index changes
ANALYZER = "anserini-default-english: porter stemmer, english stopwords removed"


@dataclass(frozen=True)
class Bm25Config:
    k1: float = 0.9
    b: float = 0.4
    max_query_chars: int = 1000  # longer queries are cut (at a space) to this many characters
    analyzer: str = field(default=ANALYZER, init=False)  # fixed: recorded for reports, not an option


@dataclass(frozen=True)
class Bm25Rm3Config(Bm25Config):
    fb_terms: int = 10
    fb_docs: int = 10
    original_query_weight: float = 0.5


class Bm25Retriever:
    def __init__(self, name: str, corpus, config: Bm25Config, home: Path, on_progress=None):
        self.name = name
        self.config = config
        self._ids = corpus.ids
        self.index_dir = ensure_index(corpus, home, on_progress=on_progress)
        try:
            self._searcher = _open_searcher(self.index_dir, len(corpus), config)
        except UnreadableIndex:
            # Its manifest vouched for files Lucene cannot read: whoever wrote them wrote the manifest too. Still
            # damage, not a reason to stop: once more from scratch.
            cache.notice(f"BM25 index {self.index_dir} cannot be opened by Lucene; rebuilding it")
            cache.discard(self.index_dir)
            self.index_dir = ensure_index(corpus, home, on_progress=on_progress)
            self._searcher = _open_searcher(self.index_dir, len(corpus), config)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        check_k(k)
        n = len(self._ids)
        qids = list(queries)
        texts = [cut_query(queries[q], self.config.max_query_chars) for q in qids]
        fetch = min(n, k + 16)
        hits = self._batch_search(texts, qids, fetch)
        results = {}
        for qid, text in zip(qids, texts):
            got = _hits(hits.get(qid))
            size = fetch
            while size < n and len(got) == size and _tie_may_straddle(got, k):
                size = min(n, size * 4)
                got = _hits(self._searcher.search(text, size))
            results[qid] = strictly_decreasing((self._ids[int(d)], s) for d, s in got[:k])
        return results

    def _batch_search(self, texts: list[str], qids: list[str], k: int):
        from jnius import autoclass

        array_list = autoclass("java.util.ArrayList")
        jtexts, jqids = array_list(), array_list()
        for text, qid in zip(texts, qids):
            jtexts.add(text)
            jqids.add(qid)
        return self._searcher.batch_search(jtexts, jqids, k, BATCH_THREADS)


def make(corpus, config: Bm25Config, *, home: Path, on_progress=None) -> Bm25Retriever:
    """Options: k1, b, max_query_chars."""
    return Bm25Retriever("bm25", corpus, _checked(config), home, on_progress)


def make_rm3(corpus, config: Bm25Rm3Config, *, home: Path, on_progress=None) -> Bm25Retriever:
    """Options: k1, b, max_query_chars, fb_terms, fb_docs, original_query_weight."""
    return Bm25Retriever("bm25-rm3", corpus, _checked(config), home, on_progress)


def _checked(config: Bm25Config) -> Bm25Config:
    positive = {"max_query_chars": config.max_query_chars}
    if isinstance(config, Bm25Rm3Config):
        positive |= {"fb_terms": config.fb_terms, "fb_docs": config.fb_docs}
    for key, value in positive.items():
        positive_int(value, f"bm25: {key}")
    if not (config.k1 >= 0 and 0 <= config.b <= 1):
        raise BadInput(f"bm25: need k1 >= 0 and 0 <= b <= 1, got k1={config.k1}, b={config.b}")
    if isinstance(config, Bm25Rm3Config) and not 0 <= config.original_query_weight <= 1:
        raise BadInput(f"bm25-rm3: original_query_weight must be in [0, 1], got {config.original_query_weight}")
    return config


def cut_query(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > 0 else cut


def _hits(hits) -> list[tuple[str, float]]:
    return [(h.docid, h.score) for h in hits or ()]


def _tie_may_straddle(got: list[tuple[str, float]], k: int) -> bool:
    """Could a verse we did not fetch tie (after Anserini's rounding to 1e-4) with the k-th hit? Anserini's scores are
    that rounding minus 1e-6 per earlier tie, in float32; bound it generously so no tie escapes."""
    if len(got) <= k:
        return False
    kth, last = got[k - 1][1], got[-1][1]
    return kth - last <= 1e-4 + 1e-6 * len(got) + 1e-6 * abs(kth)


# ---- index ---------------------------------------------------------------------------------------------------------

def index_settings(corpus) -> dict:
    return {"corpus": corpus.corpus_id, "format": INDEX_FORMAT, "analyzer": ANALYZER, "docvectors": True,
            "docids": "zero-padded canonical position", "anserini": _anserini_jar()}


def index_path(corpus, home: Path) -> Path:
    """Where the corpus's index lives under the cache root `home`."""
    digest = hashlib.sha256(json.dumps(index_settings(corpus), sort_keys=True).encode()).hexdigest()[:12]
    return home / "indexes" / f"{corpus.corpus_id}-{digest}"


def ensure_index(corpus, home: Path, on_progress=None) -> Path:
    """The corpus's Lucene index, built on first use under the cache root `home`. Returns its folder. A build calls
    `on_progress(done, total)` with the verses indexed so far."""
    final = index_path(corpus, home)
    # Every file's sha256 is checked before Lucene opens any (a zeroed .tim gave wrong numbers, a truncated one a
    # Java traceback): a damaged index is one notice and a rebuild. Measured cost in reports/perf.md.
    if cache.check_folder(final, "BM25 index"):
        return final
    if len(corpus) >= 10**6:
        raise BadInput(f"{corpus.corpus_id}: {len(corpus)} verses; docids are six digits")
    from retrievers.pyserini_env import prepare

    prepare()
    from jnius import autoclass

    tmp = cache.temp_folder(final)
    try:
        start = time.perf_counter()
        # The arguments LuceneIndexer passes, plus document vectors; one thread keeps documents in the order added.
        indexer = autoclass("io.anserini.index.SimpleIndexer")(
            ["-index", str(tmp / "lucene"), "-storeDocvectors", "-input", "", "-collection", "JsonCollection",
             "-threads", "1"])
        docs = [json.dumps({"id": f"{i:06d}", "contents": t}) for i, t in enumerate(corpus.texts)]
        for at in range(0, len(docs), 1000):
            added = indexer.addRawDocuments(docs[at:at + 1000])
            if added != len(docs[at:at + 1000]):
                raise RuntimeError(f"Anserini indexed {added} of {len(docs[at:at + 1000])} verses")
            if on_progress is not None:
                on_progress(at + added, len(docs))
        indexer.close()
        manifest = {**index_settings(corpus), "verses": len(corpus),
                    "build_seconds": round(time.perf_counter() - start, 2)}
        cache.publish_folder(tmp, final, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _anserini_jar() -> str:
    from retrievers.pyserini_env import _anserini_jar_dir

    jars = sorted(p for p in os.listdir(_anserini_jar_dir()) if p.endswith("-fatjar.jar"))
    return jars[-1] if jars else "none"


class UnreadableIndex(Exception):
    """Lucene cannot open the index, or it holds another number of verses than the corpus."""


def _open_searcher(index_dir: Path, verses: int, config: Bm25Config):
    from retrievers.pyserini_env import prepare

    prepare()
    from jnius import JavaException, autoclass

    try:
        searcher = autoclass("io.anserini.search.SimpleSearcher")(str(index_dir / "lucene"))
    except JavaException as e:
        raise UnreadableIndex(str(e).splitlines()[0][:200]) from None
    if searcher.get_total_num_docs() != verses:
        raise UnreadableIndex(f"index holds {searcher.get_total_num_docs()} verses, corpus has {verses}")
    searcher.set_bm25(float(config.k1), float(config.b))
    extra = 0
    if isinstance(config, Bm25Rm3Config):
        # As LuceneSearcher.set_rm3 does for an index with document vectors: no collection class, no debug output,
        # keep only English-looking terms.
        searcher.set_rm3(None, int(config.fb_terms), int(config.fb_docs), float(config.original_query_weight),
                         False, True)
        extra = config.fb_terms
    # Every analyzed term is one clause and every term is at least one character long. The limit is JVM-wide; it
    # only ever goes up.
    index_searcher = autoclass("org.apache.lucene.search.IndexSearcher")
    need = config.max_query_chars + extra + 64
    if index_searcher.getMaxClauseCount() < need:
        index_searcher.setMaxClauseCount(need)
    return searcher
