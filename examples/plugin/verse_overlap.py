"""A versebench retriever plugin: each verse scores the idf of the query words it contains."""

import math
import re
from collections import Counter
from dataclasses import dataclass

from retrievers.base import strictly_decreasing

WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class OverlapOptions:  # what `-o key=value` may set; versebench checks the keys and converts the values
    idf: bool = True  # weigh a shared word by its rarity; false: count shared words


class Overlap:
    name = "overlap"

    def __init__(self, corpus, options: OverlapOptions):
        self.config, self.ids = options, corpus.ids
        self.words = [set(WORD.findall(text.lower())) for text in corpus.texts]
        df = Counter(w for words in self.words for w in words)
        self.weight = {w: math.log(len(self.ids) / n) if options.idf else 1.0 for w, n in df.items()}

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return {qid: self.rank(set(WORD.findall(text.lower())), k) for qid, text in queries.items()}

    def rank(self, query: set[str], k: int) -> dict[str, float]:
        scored = [(sum(self.weight[w] for w in query & words), i) for i, words in enumerate(self.words)
                  if query & words]
        best = sorted(scored, key=lambda s: (-s[0], s[1]))[:k]  # ties: the earlier verse first
        return strictly_decreasing((self.ids[i], score) for score, i in best)  # scores must strictly decrease


def make(corpus, options: OverlapOptions, *, home, on_progress=None) -> Overlap:
    """The factory versebench calls; the annotation of `options` declares the options dataclass."""
    return Overlap(corpus, options)
