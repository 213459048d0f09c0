"""The retriever protocol, the registry of retrievers by name, and the helpers every retriever shares.

Contract for every retriever's `search(queries, k)`:
- returns `{qid: {docid: score}}` with one entry per query id, holding at most `k` verses;
- higher score = better, and scores are STRICTLY decreasing in the intended rank order; ties are broken by canonical
  corpus position (earlier verse first) and then made strict with `strictly_decreasing`, so any evaluator that sorts
  by score reproduces the ranking (write run files with full precision, `repr(score)`, or the tie-breaks are lost);
- a query with nothing searchable in it (empty, only punctuation) gets `{}`, not an error;
- scores computed in floating point by kernels that differ between CPUs (a BLAS matrix product, a model's forward
  pass) are rounded to `SCORE_DECIMALS` places (`stable_scores`) BEFORE the corpus-order tie-break: another machine
  gets the same scores up to float32's last bits, so two verses closer than that are a tie on every machine and go
  in corpus order, instead of swapping with the CPU. (A pair that straddles a rounding boundary can still swap; the
  chance is the float noise over 10^-SCORE_DECIMALS, about 1 in 10 for such near-ties, and tests that compare with
  numbers made elsewhere allow 1e-3 on a mean.)

Each retriever declares what a user may set as a frozen options dataclass; the registry checks the options against it
(an option a retriever does not have is BadInput naming the ones it has, see `config_from_options`) and calls
`factory(corpus, options, home=..., on_progress=...)`. `home` is the cache root (index, verse vectors): where, never
what, since every cache is keyed by content; so, like the progress callback, it is an argument of the build and no
option, and it never reaches a config, a run key or a report. The retriever records the options it was made with as
`.options`, so a run can be named by (retriever, options, k) and handed to a retriever made of others (the hybrid)
instead of being searched again.
"""

import dataclasses
import importlib
import math
import re
from pathlib import Path

import numpy as np
import typing
from collections.abc import Iterable
from typing import Any, Protocol

from corpus.errors import BadInput


# Cosines and fused scores live in [-1, 2]; float32 noise between CPUs is about 1e-6 there, so 5 places keep every
# difference a model means and drop the ones a kernel makes.
SCORE_DECIMALS = 5


def stable_scores(scores: np.ndarray) -> np.ndarray:
    """`scores` rounded to SCORE_DECIMALS places: what a retriever ranks by when its floats come from CPU kernels."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


class Retriever(Protocol):
    name: str
    config: Any  # a frozen dataclass; everything that decides the results

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]: ...


# Names -> (module, factory, options dataclass). Imported only when asked for, so listing names costs nothing.
REGISTRY: dict[str, tuple[str, str, str]] = {
    "ilike": ("retrievers.ilike", "make", "IlikeConfig"),
    "bm25": ("retrievers.bm25", "make", "Bm25Config"),
    "bm25-rm3": ("retrievers.bm25", "make_rm3", "Bm25Rm3Config"),
    "encoder": ("retrievers.encoder", "make", "EncoderOptions"),
    "minilm": ("retrievers.minilm", "make", "MiniLMOptions"),
    "hybrid": ("retrievers.hybrid", "make", "HybridOptions"),
}
# What `-r all` runs: one retriever of each kind. bm25-rm3 is BM25 with expansion; it has its own report (lexical.md).
ALL = ("ilike", "bm25", "encoder", "minilm", "hybrid")


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def _module(name: str):
    if name not in REGISTRY:
        raise BadInput(f"unknown retriever {name!r}; choose one of: {', '.join(REGISTRY)}")
    module_name = REGISTRY[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise BadInput(f"retriever {name!r} is registered but its module {module_name} does not exist yet") from None


def options_class(name: str) -> type:
    """The frozen dataclass of the options `name` takes."""
    return getattr(_module(name), REGISTRY[name][2])


def option_names(name: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options_class(name)) if f.init)


def make(name: str, corpus, *, home: Path, on_progress=None, **options) -> Retriever:
    """Build the retriever called `name` over `corpus`, its caches under the cache root `home`. BadInput for an
    unknown name or option. `on_progress(done, total)`, when given, hears how far the long part of a build has got
    (indexing or encoding the verses)."""
    return make_from(name, corpus, config_from_options(options_class(name), options, name), home=home,
                     on_progress=on_progress)


def make_from(name: str, corpus, options, *, home: Path, on_progress=None) -> Retriever:
    """Build `name` from an instance of its options dataclass (already checked). Every factory takes
    `(corpus, options, *, home, on_progress=None)`; the callback is how far, never what, so it is no option and no
    config."""
    retriever = getattr(_module(name), REGISTRY[name][1])(corpus, options, home=home, on_progress=on_progress)
    retriever.options = options
    return retriever


def run_key(name: str, options, k: int) -> tuple:
    """What names a run: the same retriever with the same options at the same depth gives the same run."""
    return name, options, k


def config_dict(retriever: Retriever) -> dict:
    """The retriever's config as plain data for reports: `name` plus every config field; passwords redacted."""
    d = {"name": retriever.name, **dataclasses.asdict(retriever.config)}
    if d.get("dsn"):
        d["dsn"] = redact_dsn(d["dsn"])
    return d


def config_from_options(cls, options: dict, retriever: str):
    """`cls(**options)`, with an unknown option as BadInput listing the known ones. Strings are converted to the
    field's type (int, float, bool), so a CLI can pass `k1=1.2` through unparsed."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise BadInput(f"{retriever}: unknown option(s) {', '.join(unknown)}; "
                       f"{retriever} takes: {', '.join(sorted(fields)) or 'no options'}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        kind = hints.get(key)
        if isinstance(value, str) and kind in (int, float, bool):
            try:
                value = _parse_bool(value) if kind is bool else kind(value)
            except ValueError:
                raise BadInput(f"{retriever}: option {key}={value!r} is not a valid {kind.__name__}") from None
        values[key] = value
    return cls(**values)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{what} must be a positive integer, got {value!r}")
    return value


def check_k(k) -> int:
    return positive_int(k, "k")


def strictly_decreasing(ranked: Iterable[tuple[str, float]]) -> dict[str, float]:
    """`ranked`: (docid, score) pairs already in the intended order, scores non-increasing. Returns them as a dict
    whose scores strictly decrease even when read as 32-bit floats: each score is rounded to float32 and one equal to
    (or, after earlier steps, above) the one before it becomes the next float32 below that one.

    Why float32: trec_eval (and so pytrec_eval and ir_measures) keeps run scores in single precision, so ties made
    strict by 64-bit ULPs came back as ties there and were broken by docid; the two evaluators then disagreed (seen on
    ILIKE runs, whose scores are small integers). A float32 step moves a score by about 1e-7 of its size.
    """
    out: dict[str, float] = {}
    prev_given = math.inf
    prev = np.float32(np.inf)
    for docid, score in ranked:
        score = float(score)
        if score > prev_given or math.isnan(score):
            raise ValueError(f"scores must be non-increasing in rank order: {docid} has {score} after {prev_given}")
        if docid in out:
            raise ValueError(f"{docid} ranked twice")
        prev_given = score
        s32 = np.float32(score)
        prev = s32 if s32 < prev else np.nextafter(prev, np.float32(-np.inf))
        out[docid] = float(prev)
    return out


def strict_order(run: dict, position: dict) -> dict:
    """Every query's scores made strictly decreasing, ties broken by canonical verse order (earlier verse first).

    Evaluators break ties their own way (ranx by internal order, trec_eval by docid), so a tie would make the same run
    score differently in different tools. Applied to every retriever's output, whatever it did itself.
    """
    return {qid: strictly_decreasing(sorted(docs.items(), key=lambda kv: (-kv[1], position.get(kv[0], math.inf),
                                                                          kv[0])))
            for qid, docs in run.items()}


def redact_dsn(dsn: str) -> str:
    """A PostgreSQL DSN with its password replaced by `***` (URI or key=value form)."""
    dsn = re.sub(r"^(\w+://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    dsn = re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", dsn)
    return re.sub(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
