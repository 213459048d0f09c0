"""Which retrievers a command runs, and with which options: names (or `all`) from the registry, each
retriever-specific flag sent to the retrievers that take it."""

from corpus.errors import BadInput


def retriever_names() -> list[str]:
    from retrievers.base import names

    return names()


def retriever_options(retrievers, **given) -> dict:
    """Each retriever-specific flag goes to the retrievers whose options (in the registry) have that name."""
    from retrievers.base import option_names

    out = {r: {} for r in retrievers}
    for opt, val in given.items():
        if val is None:
            continue
        targets = [r for r in retrievers if opt in option_names(r)]
        if not targets:
            takers = [r for r in retriever_names() if opt in option_names(r)]
            raise BadInput(f"--{opt} applies to {' or '.join(takers)}, which this command does not run")
        for r in targets:
            out[r][opt] = val
    return out


def expand_retrievers(chosen: list[str]) -> tuple[str, ...]:
    from retrievers.base import ALL

    known = retriever_names()
    out = []
    for r in chosen:
        if r == "all":
            out += ALL
        elif r not in known:
            raise BadInput(f"unknown retriever {r!r}; choose from: {', '.join(known)}, all")
        else:
            out.append(r)
    return tuple(dict.fromkeys(out))
