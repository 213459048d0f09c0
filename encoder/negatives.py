"""Hard negatives for fine-tuning: verses BM25 ranks high for an anchor that are not what it is about.

The mining itself needs a retriever, and the encoder never imports retrievers: `bench mine-negatives` (harness/mine.py)
writes a TREC run, and fine-tuning reads it here. Queries of that run:
  `v:<verse id>`    the verse's WEB text (a negative for any anchor whose positive is that verse: xlate, span);
  `t:<hash>`        a Nave's label or commentary line (`text_qid`), for the anchors that are not a verse's words.

A candidate is refused when it could be a false negative for the pair:
- it is the positive verse, or shares a Nave's training label or a commentary passage with it (same topic, same
  comment: relevant by the very sources we train on);
- it is a parallel: half or more of the words of the two verses' WEB texts are shared (synoptic doublets, quotations);
- it is a keyword-xlate or held-out verse (never shown in training), or already in the batch.
The first candidate that passes, in BM25 order, is the pair's negative; a pair without one has none. Deterministic:
a function of the batch, so resumed runs repeat.
"""

import hashlib
import re

import numpy as np

from corpus.qsets import read_run
from encoder import pairs as P

PARALLEL = 0.5  # word-set overlap (Jaccard) at or above which two verses are taken as parallels


def text_qid(text: str) -> str:
    return "t:" + hashlib.sha1(P.norm(text).encode()).hexdigest()[:16]


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z']+", text.lower()))


class Negatives:
    """Candidates per mined query and the guards against false negatives, over one PairData."""

    def __init__(self, pd: P.PairData, run_path):
        self.pd = pd
        self.pos = pos = {v: k for k, v in enumerate(pd.ids)}
        run = read_run(run_path)
        self.candidates = {q: [pos[d] for d in sorted(docs, key=lambda d: -docs[d]) if d in pos]
                           for q, docs in run.items()}
        self.allowed = np.zeros(len(pd.ids), dtype=bool)
        self.allowed[pd.train_verses] = True
        self.groups: list[set] = [set() for _ in pd.ids]
        for li, verses in enumerate(pd.naves_train):
            for k in verses:
                self.groups[int(k)].add(("n", li))
        for ai, verses in enumerate(pd.comment_train):
            for k in verses:
                self.groups[int(k)].add(("c", pd.comment_passage[ai]))
        self.words = [_words(t) for t in pd.texts.get("web", pd.texts[pd.translations[0]])]
        self.stats = {"queries": len(self.candidates), "verses_with_candidates":
                      sum(1 for q in self.candidates if q.startswith("v:"))}

    def _query(self, pair: P.Pair) -> str:
        return text_qid(pair.anchor) if pair.kind in ("naves", "comment") else f"v:{pair.verse}"

    def _ok(self, cand: int, positive: int, taken: set[int]) -> bool:
        if cand == positive or cand in taken or not self.allowed[cand]:
            return False
        if self.groups[cand] & self.groups[positive]:
            return False
        a, b = self.words[cand], self.words[positive]
        return not (a and b and len(a & b) / len(a | b) >= PARALLEL)

    def pick(self, batch: list[P.Pair], translation: str = "web") -> list[str | None]:
        """One negative verse text per pair (None where no candidate passes), none of them a verse of the batch."""
        pos = self.pos
        taken = {pos[p.verse] for p in batch}
        out = []
        for p in batch:
            k = pos[p.verse]
            got = next((c for c in self.candidates.get(self._query(p), []) if self._ok(c, k, taken)), None)
            if got is None or not self.pd.texts[translation][got]:
                out.append(None)
                continue
            taken.add(got)
            out.append(self.pd.texts[translation][got])
        return out
