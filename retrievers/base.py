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

A retriever is named by a spec: a registered name (`REGISTRY`: the built-ins; an adapter to a live service or to
another program joins it as an ordinary name, listed in `CHECKED` when its answers come from outside), a name an
installed package registers under the entry-point group `versebench.retrievers`, or an import path
`package.module:factory`. Built-ins are trusted; everything from outside is wrapped in `Checked`, which holds each
answer to the contract below and turns anything else into one line naming the retriever and the query.

Each retriever declares what a user may set as a frozen options dataclass; the registry checks the options against it
(an option a retriever does not have is BadInput naming the ones it has, see `config_from_options`) and calls
`factory(corpus, options, home=..., on_progress=...)`. `home` is the cache root (index, verse vectors): where, never
what, since every cache is keyed by content; so, like the progress callback, it is an argument of the build and no
option, and it never reaches a config, a run key or a report. The retriever records the options it was made with as
`.options`, so a run can be named by (retriever, options, k) and handed to a retriever made of others (the hybrid)
instead of being searched again.

A retriever whose answers can fail query by query (a live service, `retrievers/http.py`) may tolerate some failures
when told to: each such query gets `{}`, and after each search the retriever lists them as `failed` (`{qid:
problem}`), which the runner records in the report, marking it incomplete. A failure it does not tolerate is
`QueryFailed`, whose message already names the retriever, the query and the problem.
"""

import dataclasses
import importlib
import importlib.metadata
import inspect
import math
import numbers
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from corpus.errors import BadInput, redact


# Cosines and fused scores live in [-1, 2]; float32 noise between CPUs is about 1e-6 there, so 5 places keep every
# difference a model means and drop the ones a kernel makes.
SCORE_DECIMALS = 5


def stable_scores(scores: np.ndarray) -> np.ndarray:
    """`scores` rounded to SCORE_DECIMALS places: what a retriever ranks by when its floats come from CPU kernels."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


class QueryFailed(BadInput):
    """A search stopped by a query the retriever could not answer, said in full by the retriever itself (which query,
    what went wrong). `Checked` passes it on unchanged instead of searching each query alone for the culprit."""


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
    "dense": ("retrievers.model_folder", "make", "DenseOptions"),
    "sword": ("retrievers.sword", "make", "SwordOptions"),
    "http": ("retrievers.http", "make", "HttpOptions"),
}
# Registered names whose answers come from outside this package (a live service, another program) and so are
# checked like plugins' (see `Checked`); an adapter registered here joins this set.
CHECKED: frozenset[str] = frozenset({"http"})
# What `-r all` runs: one retriever of each kind. bm25-rm3 is BM25 with expansion; it has its own report (lexical.md).
# `dense` needs a model folder, so it is run only when named. `sword` runs in its default mode, multiword: "all
# words", in canonical order, which is what Xiphos and BibleTime search for by default (retrievers/sword.py); it sits
# beside ilike, the other search an app ships.
ALL = ("ilike", "sword", "bm25", "encoder", "minilm", "hybrid")
# Installed packages register retrievers under this entry-point group (name = "package.module:factory").
ENTRY_POINTS = "versebench.retrievers"


def names() -> tuple[str, ...]:
    """The built-in retrievers."""
    return tuple(REGISTRY)


def entry_point_names() -> tuple[str, ...]:
    """Names installed packages register under `ENTRY_POINTS`, in name order. A built-in name wins over an entry
    point of the same name (installing a package must not change what `-r bm25` means), so those are left out."""
    return tuple(sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)} - set(REGISTRY)))


def listed() -> tuple[str, ...]:
    """Every name `-r` takes without an import path: the built-ins, then the installed entry points."""
    return names() + entry_point_names()


def expand_all() -> tuple[str, ...]:
    """What `-r all` runs: `ALL`, then every installed entry point."""
    return ALL + entry_point_names()


@dataclass(frozen=True)
class NoOptions:
    """The options of a plugin whose factory declares none."""


@dataclass(frozen=True)
class Source:
    """What a retriever spec resolves to. A spec is a registered name (`bm25`), an entry-point name, or an import path
    `package.module:factory`."""
    spec: str
    factory: Callable
    options: type  # the frozen options dataclass the factory takes
    outside: bool  # its answers are checked before anything scores them (plugins, CHECKED names)
    origin: str  # for reports: "built-in", "import path", "entry point of <distribution> <version>"


def resolve(spec: str) -> Source:
    """The factory and options dataclass behind `spec`; BadInput for a spec that names nothing importable.

    How a plugin declares its options: by annotating its factory's second parameter with a frozen dataclass,
    `def make(corpus, options: MyOptions, *, home, on_progress=None)`, exactly as the built-ins do; a factory whose
    options parameter has no annotation takes no options. The annotation is the declaration, so the signature a
    reader sees and the options the registry checks can never disagree."""
    if not isinstance(spec, str) or not spec:
        raise BadInput(f"a retriever is a name or package.module:factory, got {spec!r}")
    if spec in REGISTRY:
        module_name, factory, options = REGISTRY[spec]
        module = _builtin_module(spec, module_name)
        return Source(spec, getattr(module, factory), getattr(module, options), spec in CHECKED, "built-in")
    if ":" in spec:
        return _plugin(spec, _import_path(spec), "import path")
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}
    if spec in eps:
        ep = eps[spec]
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
        try:
            factory = ep.load()
        except Exception as e:  # noqa: BLE001 - a plugin's import may raise anything; one line names it
            raise BadInput(f"retriever {spec!r}: loading entry point {ep.value} raised {_one_line(e)}") from None
        return _plugin(spec, factory, f"entry point {ep.value} of {dist}")
    raise BadInput(f"unknown retriever {spec!r}; choose one of: {', '.join(listed())}, "
                   f"or give an import path package.module:factory")


def _builtin_module(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise BadInput(f"retriever {name!r} is registered but its module {module_name} does not exist yet") from None


def _import_path(spec: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadInput(f"retriever {spec!r}: an import path is package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # the plugin itself is missing, not one of its own imports
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise BadInput(f"retriever {spec!r}: no module named {e.name!r} (is it installed, or on PYTHONPATH?)") \
                from None
        raise BadInput(f"retriever {spec!r}: importing {module_name} raised {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - a plugin's import may raise anything; one line names it
        raise BadInput(f"retriever {spec!r}: importing {module_name} raised {_one_line(e)}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise BadInput(f"retriever {spec!r}: module {module_name} has no {attr!r}")
    return factory


def _plugin(spec: str, factory, origin: str) -> Source:
    """A plugin's factory checked against the registry's signature, and the options dataclass it declares."""
    if not callable(factory):
        raise BadInput(f"retriever {spec!r}: {factory!r} is not callable")
    try:
        sig = inspect.signature(factory, eval_str=True)
    except (NameError, ValueError, TypeError) as e:
        raise BadInput(f"retriever {spec!r}: cannot read the factory's signature ({_one_line(e)})") from None
    try:
        sig.bind(None, None, home=None, on_progress=None)
    except TypeError:
        raise BadInput(f"retriever {spec!r}: the factory must take (corpus, options, *, home, on_progress=None); "
                       f"it takes {sig}") from None
    options = list(sig.parameters.values())[1].annotation
    if options is inspect.Parameter.empty:
        options = NoOptions
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)
            and options.__dataclass_params__.frozen):
        raise BadInput(f"retriever {spec!r}: the factory's options parameter must be annotated with a frozen "
                       f"dataclass, got {options!r}")
    return Source(spec, factory, options, True, origin)


def options_class(name: str) -> type:
    """The frozen dataclass of the options `name` (any spec) takes."""
    return resolve(name).options


def option_names(name: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options_class(name)) if f.init)


def make(name: str, corpus, *, home: Path, on_progress=None, **options) -> Retriever:
    """Build the retriever `name` (any spec) over `corpus`, its caches under the cache root `home`. BadInput for an
    unknown name or option. `on_progress(done, total)`, when given, hears how far the long part of a build has got
    (indexing or encoding the verses)."""
    return make_from(name, corpus, config_from_options(options_class(name), options, name), home=home,
                     on_progress=on_progress)


def make_from(name: str, corpus, options, *, home: Path, on_progress=None) -> Retriever:
    """Build `name` from an instance of its options dataclass (already checked). Every factory takes
    `(corpus, options, *, home, on_progress=None)`; the callback is how far, never what, so it is no option and no
    config. A retriever from outside comes back wrapped in `Checked`."""
    source = resolve(name)
    if not source.outside:
        retriever = source.factory(corpus, options, home=home, on_progress=on_progress)
    else:
        try:
            inner = source.factory(corpus, options, home=home, on_progress=on_progress)
        except BadInput as e:
            raise BadInput(f"retriever {name}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a plugin may raise anything; one line names it
            raise BadInput(f"retriever {name}: building it raised {_one_line(e)}") from None
        retriever = Checked(inner, source, corpus, options)
    retriever.options = options
    return retriever


class Checked:
    """A retriever from outside this package, held to the contract: every answer is checked before anything scores
    it, and whatever goes wrong is one line naming the retriever and the query. The built-ins are trusted (their own
    tests hold them to the contract); an outside system is not, because a wrong answer from it would be scored as a
    bad result instead of reported as a bug."""

    def __init__(self, inner, source: Source, corpus, options):
        self.inner, self.name, self.position = inner, source.spec, corpus.position
        self.origin = source.origin
        self.failed: dict[str, str] = {}  # the last search's failed queries (see the module docstring)
        config = getattr(inner, "config", None)
        # The config is what decides the results; a plugin without a dataclass config is decided by its options.
        self.config = config if dataclasses.is_dataclass(config) and not isinstance(config, type) else options

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        try:
            run = self.inner.search(queries, k)
        except QueryFailed:
            raise
        except Exception as e:  # noqa: BLE001 - a plugin may raise anything; one line names it and the query
            raise BadInput(f"retriever {self.name}: search raised {_one_line(e)}{self._culprit(queries, k)}") \
                from None
        out = check_run(run, queries, k, self.position, self.name)
        self.failed = self._failed(out, queries)
        return out

    def _failed(self, run: dict, queries: dict[str, str]) -> dict[str, str]:
        """The inner retriever's `failed` of this search, held to its meaning: queries asked, each answered `{}`."""
        failed = getattr(self.inner, "failed", None) or {}
        if not isinstance(failed, Mapping):
            raise BadInput(f"retriever {self.name}: failed is {type(failed).__name__}, not {{qid: problem}}")
        for qid, problem in failed.items():
            if qid not in queries or run[qid]:
                raise BadInput(f"retriever {self.name}: lists query id {qid!r} as failed, but it was not asked or "
                               f"has results")
        return {qid: str(problem) for qid, problem in failed.items()}

    def _culprit(self, queries: dict[str, str], k: int) -> str:
        """Which query makes the search raise: each is searched alone until one does (only on the way to an error,
        so a batch search stays a batch)."""
        for qid, text in queries.items():
            try:
                self.inner.search({qid: text}, k)
            except Exception:  # noqa: BLE001
                return f" on query {_query(qid, text)}"
        return f" on a batch of {len(queries)} queries (each alone succeeded)"


def check_run(run, queries: dict[str, str], k: int, position, retriever: str) -> dict[str, dict[str, float]]:
    """`run` as the contract wants it, or BadInput naming `retriever` and the first query that breaks it: one entry
    per query asked, at most `k` verses of the corpus each, scores finite and strictly decreasing in the order given
    (an equal score is a tie whose order the retriever left undecided)."""
    if not isinstance(run, Mapping):
        raise BadInput(f"retriever {retriever}: search returned {type(run).__name__}, not {{qid: {{docid: score}}}}")
    extra = [q for q in run if q not in queries]
    if extra:
        raise BadInput(f"retriever {retriever}: returned results for query id {extra[0]!r}, which it was not asked")
    out = {}
    for qid, text in queries.items():
        where = f"retriever {retriever}: query {_query(qid, text)}"
        if qid not in run:
            raise BadInput(f"{where}: no entry in the results (a query with no hits gets {{}})")
        hits = run[qid]
        if not isinstance(hits, Mapping):
            raise BadInput(f"{where}: results are {type(hits).__name__}, not {{docid: score}}")
        if len(hits) > k:
            raise BadInput(f"{where}: {len(hits)} verses returned, more than k={k}")
        out[qid], prev = {}, math.inf
        for docid, score in hits.items():
            if not isinstance(docid, str) or docid not in position:
                raise BadInput(f"{where}: {docid!r} is not a verse id of the corpus (OSIS, like 'John.3.16')")
            if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
                raise BadInput(f"{where}: score {score!r} of {docid} is not a finite number")
            if score >= prev:
                what = "a tie (break it: retrievers.base.strictly_decreasing does, in corpus order)" if score == prev \
                    else "unsorted"
                raise BadInput(f"{where}: scores must strictly decrease in rank order; {docid} has {score!r} after "
                               f"{prev!r}: {what}")
            out[qid][docid], prev = float(score), score
    return out


def _query(qid: str, text: str) -> str:
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{qid} ({text!r})"


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def run_key(name: str, options, k: int) -> tuple:
    """What names a run: the same retriever with the same options at the same depth gives the same run."""
    return name, options, k


def config_dict(retriever: Retriever) -> dict:
    """The retriever's config as plain data for reports: `name` plus every config field; passwords redacted."""
    config = getattr(retriever, "config", None)  # the protocol asks for one; a bare object from outside may lack it
    d = {"name": retriever.name, **(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {})}
    if getattr(retriever, "origin", None):  # a retriever from outside: where it came from
        d["origin"] = retriever.origin
    if d.get("dsn"):
        d["dsn"] = redact_dsn(d["dsn"])
    if isinstance(d.get("url"), str):  # a service's url (http, a plugin's): user:password@ never reaches a report
        d["url"] = redact(d["url"])
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
        kind, optional = _unwrap_optional(hints.get(key))
        if isinstance(value, str) and optional and value.strip().lower() == "none":
            value = None
        elif isinstance(value, str) and kind in (int, float, bool):
            try:
                value = _parse_bool(value) if kind is bool else kind(value)
            except ValueError:
                raise BadInput(f"{retriever}: option {key}={value!r} is not a valid {kind.__name__}") from None
        values[key] = value
    return cls(**values)


def _unwrap_optional(kind) -> tuple[Any, bool]:
    """`int | None` -> (int, True); `int` -> (int, False): an optional number still parses from a string."""
    args = typing.get_args(kind)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return kind, False


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
