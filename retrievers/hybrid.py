"""Hybrid: BM25 and a dense retriever, each run to `depth`, fused as `ranx.fuse` does (wsum over min-max in numpy, any
other method through ranx itself).

Fusion parameters come from `reports/fusion/weights.json`, tuned by `bench tune-fusion` with
`ranx.optimize_fusion` on dev splits only; the file records what they were tuned on and when. Without an entry for
the (dense, method) pair the method's untuned default is used, and the config says so.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus.errors import BadInput, at
from corpus.paths import REPO
from retrievers import base
from retrievers.base import positive_int, strictly_decreasing
from retrievers.encoder import checkpoint_identity

# Data, not code: `bench tune-fusion` rewrites it, so it lives with the committed results, outside the package.
WEIGHTS_FILE = REPO / "reports" / "fusion" / "weights.json"
DENSE = ("encoder", "minilm")
# ranx methods that need no training run; the probabilistic ones (probfuse, segfuse, ...) do.
METHODS = ("wsum", "rrf", "sum", "mnz", "wmnz", "max", "min", "med", "anz", "gmnz", "isr", "log_isr", "logn_isr",
           "rbc", "bordafuse", "w_bordafuse", "condorcet", "w_condorcet", "mixed")
DEFAULT_PARAMS = {"wsum": {"weights": [0.5, 0.5]}, "wmnz": {"weights": [0.5, 0.5]}, "rrf": {"k": 60},
                  "rbc": {"phi": 0.8}, "w_bordafuse": {"weights": [0.5, 0.5]},
                  "w_condorcet": {"weights": [0.5, 0.5]}, "mixed": {"weights": [0.5, 0.5]}}
NOTHING = "\0nothing"
NORM = {"rrf": None, "isr": None, "log_isr": None, "logn_isr": None, "rbc": None, "bordafuse": None,
        "w_bordafuse": None, "condorcet": None, "w_condorcet": None}  # rank-based methods take no score norm


@dataclass(frozen=True)
class HybridOptions:
    dense: str = "encoder"  # encoder | minilm
    fusion: str = "wsum"  # a ranx method that needs no training run (METHODS)
    checkpoint: str | None = None  # the encoder's checkpoint folder (dense=encoder only)
    depth: int = 100  # how deep each part is run before fusing
    sparse: str = "bm25"


@dataclass(frozen=True)
class HybridConfig:
    dense: str = "encoder"
    sparse: str = "bm25"
    fusion: str = "wsum"
    norm: str | None = "min-max"
    params: dict = field(default_factory=dict)
    params_source: str = ""
    depth: int = 100
    checkpoint: str | None = None


def read_weights(path: Path = WEIGHTS_FILE) -> dict:
    if not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise at(path, None, f"not valid JSON ({e})") from None
    for dense, methods in data.items():
        if dense not in DENSE:
            raise at(path, None, f"fusion weights for {dense!r}, which is not a dense retriever "
                                 f"({', '.join(DENSE)})")
        for method, entry in methods.items():
            if method not in METHODS:
                raise at(path, None, f"{dense}: unknown fusion method {method!r}")
            w = entry.get("params", {}).get("weights")
            if w is not None and (len(w) != 2 or not all(isinstance(x, (int, float)) for x in w)):
                raise at(path, None, f"{dense}/{method}: weights must be two numbers (sparse, dense), got {w!r}")
    return data


def resolve_params(dense: str, fusion: str, checkpoint_sha: str | None, path: Path = WEIGHTS_FILE):
    entry = read_weights(path).get(dense, {}).get(fusion)
    if entry is None:
        return dict(DEFAULT_PARAMS.get(fusion, {})), f"default for {fusion} (not tuned)"
    src = f"tuned on {', '.join(entry['tuned_on'])} by {entry['metric']} on {entry['date'][:10]}"
    if dense == "encoder" and entry.get("checkpoint_sha256") not in (None, checkpoint_sha):
        src += " for another checkpoint"
    return dict(entry["params"]), src


class Hybrid:
    """Fusion is a function of runs: `search` takes the parts' runs from `held` (runs the caller already has, keyed by
    `base.run_key`) and searches a part only for what is missing; the parts themselves are built on first need."""

    name = "hybrid"

    def __init__(self, corpus, options: HybridOptions, home: Path, on_progress=None):
        if options.dense not in DENSE:
            raise BadInput(f"hybrid: --dense must be one of {', '.join(DENSE)}, got {options.dense!r}")
        if options.fusion not in METHODS:
            raise BadInput(f"hybrid: --fusion must be one of {', '.join(METHODS)}, got {options.fusion!r}")
        positive_int(options.depth, "hybrid: depth")
        self._corpus = corpus
        with_checkpoint = options.checkpoint and options.dense == "encoder"
        given = {options.sparse: {}, options.dense: {"checkpoint": options.checkpoint} if with_checkpoint else {}}
        self.part_options = {n: base.config_from_options(base.options_class(n), o, n) for n, o in given.items()}
        checkpoint, sha = None, None
        if options.dense == "encoder":
            path, sha = checkpoint_identity(options.checkpoint)
            checkpoint = str(path)
        self.dense_sha256 = sha
        params, source = resolve_params(options.dense, options.fusion, sha)
        self.config = HybridConfig(dense=options.dense, sparse=options.sparse, fusion=options.fusion,
                                   norm=NORM.get(options.fusion, "min-max"), params=params, params_source=source,
                                   depth=int(options.depth), checkpoint=checkpoint)
        self._parts: dict = {}
        self._home, self._on_progress = home, on_progress  # handed to the parts when they are built

    def part(self, name: str):
        """The part retriever called `name`, built on first need (a runner that holds its runs never builds it)."""
        if name not in self._parts:
            self._parts[name] = base.make_from(name, self._corpus, self.part_options[name], home=self._home,
                                               on_progress=self._on_progress)
        return self._parts[name]

    def parts(self, queries: dict[str, str], k: int, held: dict | None = None) -> tuple[dict, dict]:
        depth = max(k, self.config.depth)
        out = []
        for name in (self.config.sparse, self.config.dense):
            run = (held or {}).get(base.run_key(name, self.part_options[name], depth))
            if run is None or run.keys() != queries.keys():
                run = self.part(name).search(queries, depth)
            out.append(run)
        return out[0], out[1]

    def search(self, queries: dict[str, str], k: int, held: dict | None = None) -> dict[str, dict[str, float]]:
        sparse, dense = self.parts(queries, k, held)
        return fuse(sparse, dense, self.config, k)

    def search_explained(self, queries: dict[str, str], k: int) -> tuple[dict, dict]:
        """(the fused run, and for each query {docid: {side: (score, rank)}} for every verse either side found), from
        one retrieval, so a person can see why a verse ranked where it did."""
        sparse, dense = self.parts(queries, k)
        explained = {q: {} for q in queries}
        for side, run in ((self.config.sparse, sparse), (self.config.dense, dense)):
            for q, docs in run.items():
                for rank, (d, s) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1]), 1):
                    explained[q].setdefault(d, {})[side] = (s, rank)
        return fuse(sparse, dense, self.config, k), explained


def fuse(sparse: dict, dense: dict, cfg: HybridConfig, k: int) -> dict[str, dict[str, float]]:
    """The two runs fused by `cfg`, each query cut to `k` and made strictly decreasing (ties: see `_tie_key`)."""
    qids = [q for q in sparse if sparse[q] or dense.get(q)]
    if cfg.fusion == "wsum" and cfg.norm == "min-max" and (cfg.params or {}).get("weights"):
        fused = {q: wsum_min_max(sparse.get(q) or {}, dense.get(q) or {}, cfg.params["weights"]) for q in qids}
    else:
        fused = ranx_fuse(sparse, dense, cfg, qids) if qids else {}
    return rank_fused(sparse, dense, fused, cfg, k)


def rank_fused(sparse: dict, dense: dict, fused: dict, cfg: HybridConfig, k: int) -> dict[str, dict[str, float]]:
    """Fused scores {qid: {docid: score}} in rank order, cut to k; every query of `sparse` gets an entry."""
    out = {q: {} for q in sparse}
    weights = (cfg.params or {}).get("weights") or [1.0, 1.0]
    for q, scores in fused.items():
        sides = (sparse.get(q) or {}, dense.get(q) or {})
        ranks = [{d: r for r, d in enumerate(sorted(side, key=lambda d: -side[d]), 1)} for side in sides]
        key = _tie_key(weights, ranks)
        out[q] = strictly_decreasing(sorted(((d, v) for d, v in scores.items() if d != NOTHING), key=key)[:k])
    return out


def _tie_key(weights, ranks):
    def key(kv):
        # Min-max maps each run's last verse to 0, the score of a verse the run never returned. At equal fused
        # score, a verse returned by the more heavily weighted run goes first, then the better-ranked one.
        # (Seen: with weights (1, 0), BM25's 4th and last hit sank below 96 dense-only verses.)
        d, v = kv
        present = sum(w for w, r in zip(weights, ranks) if d in r)
        return (-v, -present, min(r.get(d, math.inf) for r in ranks), d)

    return key


def wsum_min_max(sparse: dict, dense: dict, weights) -> dict[str, float]:
    """ranx's `wsum` over `min-max` normalised runs, for one query, in numpy: ranx compiles its fusion with numba on
    first use in every process (8.5 s here; numba does not cache those functions), which cost more than the search.
    Same arithmetic in the same order as ranx: (s - min) / max(max - min, 1e-9), then w0 * s0 + w1 * s1, with 0 for a
    verse a run did not return; tests hold it to ranx.fuse within 1e-9 on real runs."""
    docs = list(dict.fromkeys([*sparse, *dense]))
    total = np.zeros(len(docs))
    for w, side in zip(weights, (sparse, dense)):
        if not side:
            continue
        scores = np.fromiter(side.values(), dtype=np.float64, count=len(side))
        lo = scores.min()
        normed = dict(zip(side, ((scores - lo) / max(scores.max() - lo, 1e-9)).tolist()))
        total += w * np.array([normed.get(d, 0.0) for d in docs])
    return dict(zip(docs, total.tolist()))


def ranx_fuse(sparse: dict, dense: dict, cfg: HybridConfig, qids: list[str]) -> dict[str, dict[str, float]]:
    """Any other ranx method, through `ranx.fuse` (and its numba compile)."""
    import ranx  # here, not at the top: importing ranx starts numba (seconds); only the other methods need it

    # ranx refuses a run with an empty query (or no queries). A side with nothing for a query gets a placeholder verse
    # scored 0: normalisation is per query and per run, so it changes no real verse's fused score, and is dropped.
    runs = [ranx.Run({q: (side.get(q) or {NOTHING: 0.0}) for q in qids}, name=n)
            for side, n in ((sparse, "sparse"), (dense, "dense"))]
    fused = ranx.fuse(runs, norm=cfg.norm, method=cfg.fusion, params=cfg.params or None).to_dict()
    return {q: fused.get(q, {}) for q in qids}


def make(corpus, options: HybridOptions, *, home: Path, on_progress=None) -> Hybrid:
    return Hybrid(corpus, options, home, on_progress)
