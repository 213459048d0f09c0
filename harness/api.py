"""`harness.evaluate`: judge a retriever from Python exactly as `bench run` judges a built-in, and get a Report.

    from harness import evaluate
    report = evaluate("bm25", sets=["keyword"], home=Path("~/.cache/versebench").expanduser())
    report = evaluate(MyRetriever(...), sets=["keyword"], home=...)       # anything with .name and .search
    report = evaluate(lambda corpus: MyRetriever(corpus), sets=[...], home=...)   # a factory over the corpus
    print(report.to_markdown()); report.to_frame(); report.save("out/")

Nothing is written unless you save the report; the caches (corpus, index, verse vectors) go under `home`.
"""

import inspect
from pathlib import Path

from corpus.errors import BadInput
from harness import runner
from harness.report import Report


def evaluate(retriever_or_factory, sets=(), k: int = 100, *, home, scope: str = "nt", translation: str = "web",
             stat_test: str = "student", options: dict | None = None, progress=None) -> Report:
    """Every set of `sets` (default: every committed non-dev set in scope) searched at depth `k` and scored.

    `retriever_or_factory`: a registry name ("bm25"), a retriever (`.name`, `.search(queries, k)`), or a factory
    called with the corpus (and with `home` and `on_progress` where its signature takes them) that returns one; a
    retriever class is such a factory.
    `options`: a registry name's options, as `bench run` takes them. `home`: the cache root (required: the library
    never reads the environment). `progress`: a `runner.RunProgress`, when you want to watch."""
    if isinstance(sets, str):
        sets = (sets,)
    if options and not isinstance(retriever_or_factory, str):
        raise BadInput("options go with a registry name; a retriever or factory of your own is built by you")
    name = _name(retriever_or_factory)
    cfg = runner.RunConfig(retrievers=(name,), sets=tuple(sets), scope=scope, translation=translation, k=k,
                           stat_test=stat_test, options={name: dict(options or {})})
    corpus, qsets = runner.prepare(cfg, home=Path(home))

    def build(rname: str, progress):
        if isinstance(retriever_or_factory, str):
            from retrievers.base import make

            return make(rname, corpus, home=Path(home), on_progress=progress, **(options or {}))
        if _is_retriever(retriever_or_factory):
            return retriever_or_factory
        made = _call_factory(retriever_or_factory, corpus, Path(home), progress)
        if not hasattr(made, "search"):
            raise BadInput(f"{name}: the factory returned {type(made).__name__}, not a retriever (no .search)")
        return made

    return runner.evaluate_retrievers(cfg, corpus, qsets, build, progress)


def _is_retriever(obj) -> bool:
    """A built retriever, not a class of them (a class is a factory: called with the corpus)."""
    return not isinstance(obj, type) and hasattr(obj, "search")


def _name(obj) -> str:
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "name", None)
    if isinstance(name, str) and (_is_retriever(obj) or isinstance(obj, type)):
        return name
    if callable(obj):
        return getattr(obj, "__name__", type(obj).__name__).replace("<lambda>", "factory")
    raise BadInput(f"evaluate() takes a retriever name, a retriever or a factory, not {type(obj).__name__}")


def _call_factory(factory, corpus, home: Path, on_progress):
    """factory(corpus, [home=...], [on_progress=...]): the keywords only where the factory's signature has them."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in (("home", home), ("on_progress", on_progress)) if takes_any or k in params}
    return factory(corpus, **kw)
