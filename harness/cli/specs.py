"""Which retrievers a command runs, and with which options.

`-r SPEC` (repeatable): a registered name, an installed entry point, `package.module:factory`, or `all` (the
built-ins of `retrievers.base.ALL`, then every installed entry point). `-o key=value` (repeatable) goes to every
retriever of the command that takes `key`; `-o SPEC/key=value` to that one only (a spec never holds a `/`, a value
may). The older flags (`--checkpoint`, `--dense`, `--fusion`, `--dsn`) are shorthands routed the same way.
"""

from corpus.errors import BadInput

RETRIEVER_HELP = "Retriever (repeatable): {names}, all, or package.module:factory."
OPTION_HELP = "Retriever option key=value (repeatable), or SPEC/key=value for one retriever only; e.g. -o k1=1.2."


def retriever_help() -> str:
    """The `--retriever` help with every name it takes, installed entry points included."""
    from retrievers.base import listed

    return RETRIEVER_HELP.format(names=", ".join(listed()))


def retriever_names() -> tuple[str, ...]:
    from retrievers.base import listed

    return listed()


def expand_retrievers(chosen: list[str]) -> tuple[str, ...]:
    """The specs as given, `all` expanded, duplicates dropped; each resolved once here so a spec that names nothing
    is one error before any corpus is loaded."""
    from retrievers.base import expand_all, resolve

    out = []
    for r in chosen:
        if r == "all":
            out += expand_all()
        else:
            resolve(r)
            out.append(r)
    return tuple(dict.fromkeys(out))


def parse_options(pairs: list[str], retrievers) -> dict[str, dict[str, str]]:
    """`-o` values -> {spec: {key: value}}; a key no chosen retriever takes is BadInput naming what they take."""
    from retrievers.base import option_names

    out: dict[str, dict[str, str]] = {r: {} for r in retrievers}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise BadInput(f"-o {pair!r}: give key=value (or SPEC/key=value)")
        spec, _, key = key.rpartition("/")
        key = key.strip()
        if spec:
            if spec not in out:
                raise BadInput(f"-o {pair!r}: {spec!r} is not one of this command's retrievers "
                               f"({', '.join(retrievers)})")
            targets = [spec]  # an unknown key is refused by the registry, naming what the retriever takes
        else:
            targets = [r for r in retrievers if key in option_names(r)]
            if not targets:
                takes = "; ".join(f"{r} takes {', '.join(option_names(r)) or 'no options'}" for r in retrievers)
                raise BadInput(f"-o {key}: no retriever of this command takes it ({takes})")
        for r in targets:
            if key in out[r] and out[r][key] != value:
                raise BadInput(f"-o {key} is given twice for {r}: {out[r][key]!r} and {value!r}")
            out[r][key] = value
    return out


def retriever_options(retrievers, pairs: list[str] = (), **given) -> dict:
    """Every retriever's options: the `-o` pairs, then each retriever-specific flag sent to the retrievers whose
    options (in the registry) have that name."""
    from retrievers.base import option_names

    out = parse_options(list(pairs), retrievers)
    for opt, val in given.items():
        if val is None:
            continue
        targets = [r for r in retrievers if opt in option_names(r)]
        if not targets:
            from retrievers.base import names

            takers = [r for r in names() if opt in option_names(r)]
            raise BadInput(f"--{opt} applies to {' or '.join(takers)}, which this command does not run")
        for r in targets:
            if opt in out[r] and str(out[r][opt]) != str(val):
                raise BadInput(f"--{opt} {val!r} and -o {opt}={out[r][opt]!r} disagree for {r}")
            out[r][opt] = val
    return out
