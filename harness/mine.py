"""`bench mine-negatives`: BM25 over the whole WEB Bible for every verse and every Nave's/commentary anchor of the
fine-tuning pairs, written as a TREC run that `bench finetune --negatives` reads (encoder/negatives.py says how the
candidates are chosen and guarded). The roof runs the retriever; the encoder only reads its run."""

from pathlib import Path

from corpus.bible import load_corpus
from corpus.paths import atomic_write_text
from corpus.qsets import format_run
from encoder import pairs as P
from encoder.negatives import text_qid
from retrievers.base import make

DEPTH = 20


def queries(pd: P.PairData, corpus) -> dict[str, str]:
    """`v:<id>` -> the verse's WEB text; `t:<hash>` -> each Nave's label and commentary line."""
    out = {f"v:{d}": corpus.text(d) for d in pd.ids if d in corpus.position}
    for text in (*pd.naves_labels, *pd.comment_anchors):
        out[text_qid(text)] = text
    return out


def mine(out: Path, depth: int = DEPTH, naves_holdout: str = "dev+test", *, home: Path) -> dict:
    """Write the run to `out` (atomically); returns counts. `home`: the cache root (corpora, BM25 index)."""
    corpus = load_corpus("web", "all", home=home)
    pd = P.build(naves_holdout=naves_holdout, commentary=True, home=home)
    qs = queries(pd, corpus)
    run = make("bm25", corpus, home=home).search(qs, depth)
    atomic_write_text(out, format_run(run, "bm25-negatives"))
    return {"queries": len(qs), "with_hits": sum(1 for r in run.values() if r), "depth": depth, "out": str(out),
            "corpus": corpus.corpus_id}
